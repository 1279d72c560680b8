"""KnowledgeGraph: closure, cannot-links, contradictions, retraction, incremental == rebuild."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pal.core import clusters as clusters_module
from pal.core.edges import EdgeRecord
from pal.core.graph import KnowledgeGraph


def _graph(*edges: tuple[int, int, int]) -> KnowledgeGraph:
    g = KnowledgeGraph()
    for i, (a, b, s) in enumerate(edges, start=1):
        g.add_edge(i, a, b, s)
    return g


def _reference_relation(edges: list[tuple[int, int, int]], a: int, b: int) -> int:
    """Closure by brute force for a consistent edge set: BFS over + edges, then any - edge
    between the two + components."""

    def component(x: int) -> set[int]:
        seen, todo = {x}, deque([x])
        while todo:
            u = todo.popleft()
            for p, q, s in edges:
                if s > 0 and u in (p, q):
                    v = q if u == p else p
                    if v not in seen:
                        seen.add(v)
                        todo.append(v)
        return seen

    ca, cb = component(a), component(b)
    if b in ca:
        return 1
    if any(s < 0 and ((p in ca and q in cb) or (p in cb and q in ca)) for p, q, s in edges):
        return -1
    return 0


# ---------------------------------------------------------------- closure and cannot-links


def test_relation_positive_chain_is_implied_same() -> None:
    g = _graph((1, 2, 1), (2, 3, 1))
    assert g.relation(1, 3) == 1


def test_relation_negative_edge_separates_whole_components() -> None:
    g = _graph((1, 2, 1), (3, 4, 1), (2, 3, -1))
    assert g.relation(1, 4) == -1


def test_relation_unconnected_items_is_unknown() -> None:
    g = _graph((1, 2, 1), (3, 4, 1))
    assert g.relation(1, 3) == 0


def test_relation_item_never_seen_is_unknown_to_others() -> None:
    g = _graph((1, 2, 1))
    assert g.relation(1, 999) == 0 and g.relation(999, 999) == 1


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 3), min_size=3, max_size=12),
    picks=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=30),
)
def test_relation_equals_brute_force_closure_on_consistent_edges(
    labels: list[int], picks: list[tuple[int, int]]
) -> None:
    n = len(labels)
    edges = [(a % n, b % n, 1 if labels[a % n] == labels[b % n] else -1) for a, b in picks if a % n != b % n]
    g = _graph(*edges)
    for a in range(n):
        for b in range(n):
            if a != b:
                assert g.relation(a, b) == _reference_relation(edges, a, b), (a, b, edges)


def test_cannot_links_lists_component_pairs_with_weights() -> None:
    g = _graph((1, 2, 1), (3, 4, 1), (1, 3, -1), (2, 4, -1))
    links = g.cannot_links()
    assert list(links.values()) == [2.0] and {frozenset(g.members(r)) for r in next(iter(links))} == {
        frozenset({1, 2}),
        frozenset({3, 4}),
    }


def test_components_lists_known_clusters_only() -> None:
    g = _graph((1, 2, 1), (2, 3, 1), (4, 5, -1))
    assert sorted(map(sorted, g.components().values())) == [[1, 2, 3]]


def test_find_handles_sparse_large_ids() -> None:
    big = 2**40
    g = _graph((big, 7, 1), (7, big + 13, 1))
    assert g.find(big) == g.find(big + 13) and g.component_size(7) == 3


# ---------------------------------------------------------------- contradictions


def test_contradiction_single_negative_inside_component_is_overruled() -> None:
    g = _graph((1, 2, 1), (2, 3, 1), (1, 3, -1))
    flagged = g.contradictions()
    assert g.relation(1, 3) == 1 and [(c.edge_id, c.reason) for c in flagged] == [(3, "overruled")]


def test_contradiction_weak_bridge_is_cut_by_stronger_negatives() -> None:
    # Two clusters {1,2,3} and {4,5,6} bridged by one + edge, with three - edges across.
    g = _graph((1, 2, 1), (1, 3, 1), (4, 5, 1), (4, 6, 1), (1, 4, 1), (2, 5, -1), (3, 6, -1), (2, 6, -1))
    assert g.relation(2, 5) == -1 and g.relation(1, 4) == -1
    assert [(c.edge_id, c.reason) for c in g.contradictions()] == [(5, "overruled")]


def test_contradiction_disagreeing_votes_resolved_by_majority() -> None:
    g = _graph((1, 2, 1), (1, 2, 1), (1, 2, 1), (1, 2, -1))
    assert g.relation(1, 2) == 1 and [(c.edge_id, c.reason) for c in g.contradictions()] == [(4, "outvoted")]


def test_split_votes_leave_pair_unknown_until_agreement_is_reached() -> None:
    g = _graph((1, 2, 1), (1, 2, 1), (1, 2, -1))  # 2 against 1: 2/3 < 3/4 of the weight
    assert g.relation(1, 2) == 0 and g.pair_votes(1, 2) == 0.0 and g.pair_asked(1, 2)
    assert [(c.edge_id, c.reason) for c in g.contradictions()] == [(1, "split"), (2, "split"), (3, "split")]
    assert g.components() == {}
    g.add_edge(4, 1, 2, 1)  # 3 against 1: exactly 3/4
    assert g.relation(1, 2) == 1 and [(c.edge_id, c.reason) for c in g.contradictions()] == [(3, "outvoted")]


def test_plain_majority_when_min_agreement_is_one_half() -> None:
    g = KnowledgeGraph(min_agreement=0.5)
    g.add_edges([(1, 1, 2, 1), (2, 1, 2, 1), (3, 1, 2, -1)])
    assert g.relation(1, 2) == 1 and not g.pair_asked(1, 3)
    with pytest.raises(ValueError, match="min_agreement"):
        KnowledgeGraph(min_agreement=0.4)


def test_contradiction_tied_votes_leave_pair_unknown() -> None:
    g = _graph((1, 2, 1), (1, 2, -1))
    assert g.relation(1, 2) == 0 and {c.reason for c in g.contradictions()} == {"tied"}


def test_contradiction_edges_are_kept_not_deleted() -> None:
    g = _graph((1, 2, 1), (2, 3, 1), (1, 3, -1))
    assert g.edge(3) is not None and g.stats()["negative_edges"] == 1


def test_annotator_weight_decides_majority() -> None:
    g = KnowledgeGraph(min_agreement=0.5)
    g.add_edge(1, 1, 2, 1, annotator=10)
    g.add_edge(2, 1, 2, -1, annotator=20)
    g.add_edge(3, 1, 2, -1, annotator=20)
    assert g.relation(1, 2) == -1
    g.set_annotator_weight(10, 3.0)
    assert g.relation(1, 2) == 1


# ---------------------------------------------------------------- retraction and feed


def test_retract_splits_component() -> None:
    g = _graph((1, 2, 1), (2, 3, 1))
    g.retract(2)
    assert g.relation(1, 2) == 1 and g.relation(1, 3) == 0


def test_retract_resolves_contradiction() -> None:
    g = _graph((1, 2, 1), (2, 3, 1), (1, 3, -1))
    g.retract(3)
    assert g.contradictions() == [] and g.relation(1, 3) == 1


def test_retract_then_redelivered_edge_is_ignored() -> None:
    g = _graph((1, 2, 1))
    g.retract(1)
    g.add_edge(1, 1, 2, 1)
    assert g.relation(1, 2) == 0


def test_add_edge_redelivered_id_is_a_no_op() -> None:
    g = _graph((1, 2, 1))
    g.add_edge(1, 1, 2, 1)
    assert g.pair_votes(1, 2) == 1.0 and len(g) == 1


def test_add_edge_consistent_stream_never_needs_lazy_rebuild() -> None:
    rng = random.Random(0)
    labels = [rng.randrange(5) for _ in range(300)]
    g = KnowledgeGraph()
    for i in range(2000):
        a, b = rng.sample(range(300), 2)
        g.add_edge(i, a, b, 1 if labels[a] == labels[b] else -1)
        assert not g.clusters.dirty  # the O(1) path handled it: nothing left for a rebuild


# ---------------------------------------------------------------- incremental == rebuild

_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.integers(0, 6),
            st.integers(0, 6),
            st.sampled_from([1, -1]),
            st.sampled_from([0.5, 1.0, 2.0]),
            st.sampled_from([None, 1, 2]),
        ),
        st.tuples(st.just("retract"), st.integers(0, 40)),
        st.tuples(st.just("weight"), st.sampled_from([1, 2]), st.sampled_from([0.0, 0.5, 1.0, 3.0])),
        st.tuples(st.just("query"), st.integers(0, 6), st.integers(0, 6)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops=_ops, seed=st.integers(0, 2**16))
def test_incremental_equals_rebuild_on_random_streams(ops: list[tuple], seed: int) -> None:
    g = KnowledgeGraph()
    weights: dict[int, float] = {}
    next_id = 0
    for op in ops:
        if op[0] == "add" and op[1] != op[2]:
            g.add_edge(next_id, op[1] * 1000, op[2] * 1000, op[3], op[4], op[5])
            next_id += 1
        elif op[0] == "retract":
            g.retract(op[1])
        elif op[0] == "weight":
            g.set_annotator_weight(op[1], op[2])
            weights[op[1]] = op[2]
        elif op[0] == "query":
            g.relation(op[1] * 1000, op[2] * 1000)  # forces the lazy resolution mid-stream
    live = g.edges()
    random.Random(seed).shuffle(live)
    rebuilt = KnowledgeGraph(annotator_weights=weights)
    rebuilt.rebuild_from(live)
    assert g == rebuilt
    for a in range(7):
        for b in range(7):
            assert g.relation(a * 1000, b * 1000) == rebuilt.relation(a * 1000, b * 1000)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_incremental_equals_rebuild_on_noisy_annotation_streams(seed: int) -> None:
    # Answers from a 3-class labelling with 15% flipped signs: conflicted groups get cut and
    # re-cut as edges arrive, are retracted and annotators are re-weighted.
    rng = random.Random(seed)
    labels = [rng.randrange(3) for _ in range(30)]
    g = KnowledgeGraph()
    next_id = 0
    for _ in range(150):
        r = rng.random()
        if r < 0.8:
            a, b = rng.sample(range(30), 2)
            sign = (1 if labels[a] == labels[b] else -1) * (-1 if rng.random() < 0.15 else 1)
            g.add_edge(next_id, a, b, sign, rng.choice([1.0, 2.0]), rng.choice([None, 1, 2]))
            next_id += 1
        elif r < 0.9:
            g.retract(rng.randrange(next_id + 1))
        elif r < 0.95:
            g.set_annotator_weight(rng.choice([1, 2]), rng.choice([0.5, 1.0, 2.0]))
        else:
            g.relation(rng.randrange(30), rng.randrange(30))
    live = g.edges()
    rng.shuffle(live)
    rebuilt = KnowledgeGraph(annotator_weights=dict(g.votes.annotator_weight))
    rebuilt.rebuild_from(live)
    assert g == rebuilt


def _noisy_stream(
    g: KnowledgeGraph, rng: random.Random, items: int, classes: int, answers: int, flip: float
) -> list[int]:
    """Grids answered with ``flip`` of the signs wrong: a reference, 4 of its kind, 3 random."""
    labels = [rng.randrange(classes) for _ in range(items)]
    by_kind = [[i for i in range(items) if labels[i] == k] for k in range(classes)]
    next_id = len(g) + 1
    for _ in range(answers):
        r = rng.randrange(items)
        for c in [rng.choice(by_kind[labels[r]]) for _ in range(4)] + [rng.randrange(items) for _ in range(3)]:
            if c != r:
                sign = (1 if labels[c] == labels[r] else -1) * (-1 if rng.random() < flip else 1)
                g.add_edge(next_id, r, c, sign)
                next_id += 1
    return labels


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), limit=st.sampled_from([0, 8]))
def test_local_updates_settle_to_the_rebuilt_partition(seed: int, limit: int) -> None:
    # Small exact_limit: conflicted groups are kept up to date locally (order-dependent), or
    # both ways at once; settle() must land on the order-free partition a rebuild computes.
    rng = random.Random(seed)
    g = KnowledgeGraph(exact_limit=limit)
    _noisy_stream(g, rng, items=40, classes=3, answers=30, flip=0.15)
    for e in rng.sample(g.edges(), 5):
        g.retract(e.id)
    g.settle()
    assert g == KnowledgeGraph.from_edges(g.edges(), exact=True)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), limit=st.sampled_from([0, 8]))
def test_local_updates_keep_cannot_links_equal_to_the_negatives_between_clusters(seed: int, limit: int) -> None:
    rng = random.Random(seed)
    g = KnowledgeGraph(exact_limit=limit)
    _noisy_stream(g, rng, items=40, classes=3, answers=25, flip=0.15)
    for e in rng.sample(g.edges(), 5):
        g.retract(e.id)
    expected: dict[frozenset[int], float] = {}
    for e in g.edges():
        a, b = g.find(e.src), g.find(e.dst)
        votes = g.pair_votes(e.src, e.dst)
        if a != b and votes < 0 and e.id == min(x.id for x in g.edges() if {x.src, x.dst} == {e.src, e.dst}):
            expected[frozenset((a, b))] = expected.get(frozenset((a, b)), 0.0) - votes
    got = {frozenset(k): w for k, w in g.cannot_links().items()}
    assert got.keys() == expected.keys() and all(abs(got[k] - expected[k]) < 1e-9 for k in got)


def test_local_updates_keep_noisy_clusters_pure() -> None:
    g = KnowledgeGraph(exact_limit=32)
    labels = _noisy_stream(g, random.Random(1), items=600, classes=4, answers=500, flip=0.05)
    comps = list(g.components().values())
    majority = sum(max(sum(1 for m in c if labels[m] == k) for k in range(4)) for c in comps)
    assert majority / sum(len(c) for c in comps) > 0.9


def test_local_updates_never_recompute_a_large_group(monkeypatch: Any) -> None:
    sizes: list[int] = []
    original = clusters_module._component_of

    def spy(start: int, pos_adj: dict[int, set[int]]) -> list[int]:
        out = original(start, pos_adj)
        sizes.append(len(out))
        return out

    monkeypatch.setattr(clusters_module, "_component_of", spy)
    g = KnowledgeGraph(exact_limit=32)
    _noisy_stream(g, random.Random(2), items=600, classes=4, answers=500, flip=0.05)
    g.relation(0, 1)
    assert max(sizes) <= 10 * 32 and len(g.items_with_edges()) > 500


def test_rebuild_replays_feed_order_for_locally_updated_groups() -> None:
    g = KnowledgeGraph(exact_limit=8)
    _noisy_stream(g, random.Random(3), items=200, classes=3, answers=120, flip=0.1)
    replayed = KnowledgeGraph(exact_limit=8)
    replayed.rebuild_from(list(reversed(g.edges())))  # any order in: replayed by edge id
    assert replayed == g


def test_rebuild_from_accepts_tuples_and_records() -> None:
    g = KnowledgeGraph.from_edges([(1, 1, 2, 1), EdgeRecord(2, 2, 3, 1)])
    assert g.relation(1, 3) == 1


# ---------------------------------------------------------------- stats, export, sampling


def test_stats_reports_edges_clusters_and_contradictions() -> None:
    g = _graph((1, 2, 1), (2, 3, 1), (4, 5, 1), (1, 3, -1), (1, 4, -1))
    s = g.stats()
    assert (
        s["positive_edges"],
        s["negative_edges"],
        s["known_clusters"],
        s["largest_clusters"],
        s["contradictions"],
    ) == (
        3,
        2,
        2,
        [3, 2],
        1,
    )


def test_cluster_assignment_known_components_first_largest_first() -> None:
    g = _graph((1, 2, 1), (2, 3, 1), (4, 5, 1))
    labels, conf = g.cluster_assignment(np.array([1, 2, 3, 4, 5, 6]))
    assert labels.tolist() == [0, 0, 0, 1, 1, -1] and conf.tolist() == [1, 1, 1, 1, 1, 0]


def test_cluster_assignment_propagates_by_nearest_known_neighbours() -> None:
    g = _graph((1, 2, 1), (3, 4, 1))
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.95, 0.05], [0.05, 0.95]], dtype=np.float32)
    labels, conf = g.cluster_assignment(np.array([1, 2, 3, 4, 5, 6]), emb, k=2)
    assert labels[4] == labels[0] and labels[5] == labels[2] and 0 < conf[4] <= 1


def test_cluster_assignment_skips_clusters_the_item_is_cannot_linked_to() -> None:
    g = _graph((1, 2, 1), (3, 4, 1), (5, 1, -1))
    emb = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 0]], dtype=np.float32)
    labels, _ = g.cluster_assignment(np.array([1, 2, 3, 4, 5]), emb, k=4)
    assert labels[4] == labels[2]


def test_cluster_assignment_labels_an_item_whose_split_pairs_lean_to_one_cluster() -> None:
    # 1-2 unanimous; 3 asked against 1 three times: 2 "same", 1 "different" (split, joins nothing).
    g = _graph((1, 2, 1), (1, 2, 1), (1, 2, 1), (3, 1, 1), (3, 1, 1), (3, 1, -1), (4, 5, 1))
    assert g.relation(1, 3) == 0
    labels, conf = g.cluster_assignment(np.array([1, 2, 3, 4, 5]))
    assert labels.tolist() == [0, 0, 0, 1, 1]
    assert conf[2] == pytest.approx(2 / 3)
    assert sorted(sorted(m) for m in g.components().values()) == [[1, 2], [4, 5]]  # a label, not a member


def test_cluster_assignment_leaves_items_leaning_to_two_clusters_or_leaning_apart() -> None:
    g = _graph(
        (1, 2, 1), (4, 5, 1),
        (3, 1, 1), (3, 1, 1), (3, 1, -1),  # 3 leans to {1, 2} ...
        (3, 4, 1), (3, 4, 1), (3, 4, -1),  # ... and to {4, 5}: no label
        (6, 1, -1), (6, 1, -1), (6, 1, 1),  # 6 leans away from {1, 2}
        (7, 1, 1), (7, 1, 1), (7, 1, -1), (7, 2, -1),  # 7 leans to {1, 2} but is cannot-linked to it
    )
    labels, _ = g.cluster_assignment(np.array([1, 2, 3, 4, 5, 6, 7]))
    assert labels[[0, 3]].tolist() == [0, 1] and labels[[2, 5, 6]].tolist() == [-1, -1, -1]


def test_cluster_assignment_lets_leaning_items_vote_for_the_rest() -> None:
    g = _graph((1, 2, 1), (3, 4, 1), (5, 1, 1), (5, 1, 1), (5, 1, -1))
    emb = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0.6, 0.8], [0.6, 0.8]], dtype=np.float32)
    labels, _ = g.cluster_assignment(np.array([1, 2, 3, 4, 5, 6]), emb, k=1)
    assert labels[4] == labels[0] and labels[5] == labels[0]  # 6's nearest labelled item is 5
