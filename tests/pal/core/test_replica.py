"""GraphReplica: the one way feed rows become graph state, in the server, the trainer and benchmarks."""

from __future__ import annotations

import numpy as np
import pytest

from pal.core.edges import EdgeKind, EdgeRecord
from pal.core.replica import GraphReplica, align_rows
from server.services.project_state import ProjectState
from trainer.batching import new_replica, replica_from_state, replica_state


def ans(edge_id: int, src: int, dst: int, sign: int, weight: float = 1.0, who: int | None = None) -> EdgeRecord:
    return EdgeRecord(edge_id, src, dst, sign, weight, annotator_id=who)


def ret(edge_id: int, retracts: int | None) -> EdgeRecord:
    return EdgeRecord(edge_id, 0, 0, 0, 0.0, EdgeKind.RETRACT, retracts)


def replica_of(*rows: EdgeRecord, weigh: bool = True) -> GraphReplica:
    replica = GraphReplica(weigh_annotators=weigh)
    replica.apply(rows)
    return replica


def live_ids(replica: GraphReplica) -> list[int]:
    return [e.id for e in replica.graph.edges()]


def test_replica_answer_adds_edge() -> None:
    replica = replica_of(ans(1, 10, 11, 1))
    assert live_ids(replica) == [1] and replica.consumed == 1


def test_replica_repeated_row_is_not_counted_twice() -> None:
    replica = replica_of(ans(1, 10, 11, 1))
    assert replica.apply([ans(1, 10, 11, 1), ans(2, 11, 12, -1)]) == 1
    assert replica.consumed == 2


def test_replica_retract_withdraws_edge() -> None:
    replica = replica_of(ans(1, 10, 11, 1), ans(2, 11, 12, 1), ret(3, 1))
    assert live_ids(replica) == [2] and replica.consumed == 3


def test_replica_retract_before_answer_keeps_edge_withdrawn() -> None:
    assert live_ids(replica_of(ret(3, 1), ans(1, 10, 11, 1))) == []


def test_replica_retract_without_target_raises() -> None:
    with pytest.raises(ValueError, match="retracts_id"):
        replica_of(ret(3, None))


def test_replica_known_rows_assert_relations() -> None:
    replica = replica_of(EdgeRecord(3, 10, 11, 1, 5.0, EdgeKind.KNOWN))
    assert replica.graph.relation(10, 11) == 1 and replica.graph.edge(3).kind is EdgeKind.KNOWN  # type: ignore[union-attr]


def test_replica_self_pair_is_refused_naming_the_row() -> None:
    with pytest.raises(ValueError, match="edge 7 joins item 10 to itself"):
        replica_of(ans(7, 10, 10, 1))


def test_replica_without_annotator_weights_ignores_reliability() -> None:
    rows = (ans(1, 10, 11, 1, who=5), ans(2, 10, 11, -1, who=6), ans(3, 10, 11, -1, who=6), ans(4, 10, 11, -1, who=6))
    weighed, plain = replica_of(*rows), replica_of(*rows, weigh=False)
    for replica in (weighed, plain):
        replica.set_annotator_weight(6, 0.1)
    assert weighed.graph.pair_votes(10, 11) == pytest.approx(0.7)
    assert plain.graph.pair_votes(10, 11) == -2.0


def test_replica_state_dict_round_trips() -> None:
    replica = replica_of(ans(1, 10, 11, 1, 0.5, who=3), ans(2, 11, 12, -1), ret(3, 1), ret(4, 99),
                         EdgeRecord(5, 12, 13, 1, 5.0, EdgeKind.KNOWN))
    again = GraphReplica.from_state_dict(replica.state_dict())
    assert again.graph.edges() == replica.graph.edges() and again.seen == replica.seen
    assert again.graph == replica.graph
    assert again.apply([ans(1, 10, 11, 1)]) == 0


def test_replica_restored_keeps_retracted_edges_withdrawn() -> None:
    again = GraphReplica.from_state_dict(replica_of(ret(4, 9)).state_dict())
    again.apply([ans(9, 10, 11, 1)])
    assert live_ids(again) == []


def test_replica_empty_state_dict_round_trips() -> None:
    again = GraphReplica.from_state_dict(GraphReplica().state_dict())
    assert again.graph.edges() == [] and again.consumed == 0


def _noisy_feed(seed: int) -> list[EdgeRecord]:
    """Answers from three annotators on 40 items of 4 kinds, 15% wrong, some undone, a few known labels."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 4, size=40)
    rows: list[EdgeRecord] = []
    for n in range(1, 400):
        if n % 17 == 0 and rows:
            rows.append(ret(n, rows[int(rng.integers(len(rows)))].id))
            continue
        a, b = (int(x) for x in rng.choice(40, size=2, replace=False))
        same = (kinds[a] == kinds[b]) != (rng.random() < 0.15)
        if n % 50 == 0:
            rows.append(EdgeRecord(n, a, b, 1 if kinds[a] == kinds[b] else -1, 5.0, EdgeKind.KNOWN))
        else:
            rows.append(ans(n, a, b, 1 if same else -1, who=int(rng.integers(3))))
    return rows


def _picture(replica: GraphReplica) -> tuple[object, ...]:
    g = replica.graph
    parts = sorted(sorted(m) for m in g.components().values())
    links = sorted((sorted(g.members(a)), sorted(g.members(b)), round(w, 9)) for (a, b), w in g.cannot_links().items())
    votes = sorted((e.src, e.dst, g.pair_votes(e.src, e.dst)) for e in g.edges())
    return parts, links, votes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_server_and_trainer_paths_build_the_same_graph(seed: int) -> None:
    """The server's project state and the trainer read the same feed into the same state: the
    same clusters, cannot-links and pair weights (with every annotator at weight 1, as the trainer
    has them), also after a checkpoint round trip of the trainer's replica."""
    rows = _noisy_feed(seed)
    server = ProjectState(project_id=1)
    server.replica.apply(rows[:150])
    server.replica.apply(rows[150:])
    trainer = new_replica()
    for start in range(0, len(rows), 37):
        trainer.apply(rows[start : start + 37])
    restored = replica_from_state(replica_state(trainer))
    assert _picture(server.replica) == _picture(trainer) == _picture(restored)
    assert server.graph.stats() == trainer.graph.stats()


def test_align_rows_reorders_normalises_and_zero_fills() -> None:
    vectors = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32)
    out = align_rows(np.array([5, 7, 9]), np.array([9, 5]), vectors)
    assert out.tolist() == [[0.0, 1.0], [0.0, 0.0], [0.6000000238418579, 0.800000011920929]]
