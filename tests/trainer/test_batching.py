from __future__ import annotations

import numpy as np
import pytest
import torch

from pal.core.edges import EdgeKind, EdgeRecord
from pal.core.replica import GraphReplica
from trainer.batching import (
    AUGMENTATION,
    HUMAN_NEGATIVE,
    HUMAN_POSITIVE,
    MixSettings,
    PairSampler,
    new_replica,
    relation,
    replica_from_state,
    replica_state,
    snapshot,
)

IDS = np.arange(10, 30, dtype=np.int64)  # item ids of table rows 0..19


def ans(edge_id: int, src: int, dst: int, sign: int, weight: float = 1.0) -> EdgeRecord:
    return EdgeRecord(edge_id, src, dst, sign, weight)


def ret(edge_id: int, retracts: int) -> EdgeRecord:
    return EdgeRecord(edge_id, 0, 0, 0, 0.0, EdgeKind.RETRACT, retracts)


def store_of(*rows: EdgeRecord) -> GraphReplica:
    store = new_replica()
    store.apply(rows)
    return store


# --- snapshot and the batch graph ------------------------------------------------------------


def test_snapshot_chain_of_positives_is_one_component() -> None:
    snap = snapshot(store_of(ans(1, 10, 11, 1), ans(2, 11, 12, 1), ans(3, 14, 15, 1)), IDS)
    assert sorted(sorted(c.tolist()) for c in snap.components) == [[0, 1, 2], [4, 5]]


def test_snapshot_edge_to_unknown_item_is_skipped_and_counted() -> None:
    snap = snapshot(store_of(ans(1, 10, 99, 1), ans(2, 10, 11, 1)), IDS)
    assert snap.unknown_items == 1 and snap.positives.tolist() == [[0, 1]]


def test_relation_closure_pair_is_positive() -> None:
    snap = snapshot(store_of(ans(1, 10, 11, 1), ans(2, 11, 12, 1)), IDS)
    assert relation(snap, np.array([0]), np.array([2])).item() == 1.0


def test_relation_same_item_is_positive_and_strangers_unknown() -> None:
    snap = snapshot(new_replica(), IDS)
    assert torch.equal(relation(snap, np.array([3, 4]), np.array([3, 5])), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_relation_cannot_link_spreads_to_whole_components() -> None:
    store = store_of(ans(1, 10, 11, 1), ans(2, 12, 13, 1), ans(3, 11, 12, -1))
    snap = snapshot(store, IDS)
    assert relation(snap, np.array([0, 1]), np.array([2, 3])).tolist() == [[-1.0, -1.0], [-1.0, -1.0]]


def test_relation_follows_the_graph_majority_vote() -> None:
    snap = snapshot(store_of(ans(1, 10, 11, 1, 3.0), ans(2, 11, 10, -1, 1.0)), IDS)
    assert relation(snap, np.array([0]), np.array([1])).item() == 1.0


def test_snapshot_outvoted_asserted_edge_is_not_sampled() -> None:
    snap = snapshot(store_of(ans(1, 10, 11, 1, 1.0), ans(2, 11, 10, -1, 3.0)), IDS)
    assert not snap.has_positives and snap.negatives.tolist() == [[1, 0]]


def test_snapshot_retracted_edge_leaves_the_graph() -> None:
    store = store_of(ans(1, 10, 11, 1), ret(2, 1))
    snap = snapshot(store, IDS)
    assert snap.components == [] and relation(snap, np.array([0]), np.array([1])).item() == 0.0


def test_snapshot_restored_store_gives_same_graph() -> None:
    store = store_of(ans(1, 10, 11, 1), ans(2, 11, 12, 1), ans(3, 12, 15, -1), ret(4, 2))
    again = replica_from_state(replica_state(store))
    rows = np.arange(20)
    assert torch.equal(relation(snapshot(store, IDS), rows, rows), relation(snapshot(again, IDS), rows, rows))


# --- sampling --------------------------------------------------------------------------------


def test_sampler_without_human_edges_gives_augmentation_graph() -> None:
    batch = PairSampler(20, 8, MixSettings(), seed=0).sample(snapshot(new_replica(), IDS), use_negatives=True)
    assert np.array_equal(batch.rows_a, batch.rows_b) and len(set(batch.rows_a.tolist())) == 8
    assert torch.equal(batch.graph, torch.eye(8)) and (batch.kinds == AUGMENTATION).all()


def test_sampler_mixes_human_pairs_at_the_set_fraction() -> None:
    snap = snapshot(store_of(ans(1, 10, 11, 1), ans(2, 12, 13, -1)), IDS)
    batch = PairSampler(20, 16, MixSettings(human_fraction=0.25), seed=0).sample(snap, use_negatives=False)
    assert (batch.kinds == HUMAN_POSITIVE).sum() == 4 and (batch.kinds == AUGMENTATION).sum() == 12


def test_sampler_draws_negatives_only_for_contrastive_losses() -> None:
    snap = snapshot(store_of(ans(1, 10, 11, 1), ans(2, 12, 13, -1)), IDS)
    sampler = PairSampler(20, 16, MixSettings(human_fraction=0.5, negative_fraction=0.5), seed=0)
    assert (sampler.sample(snap, use_negatives=False).kinds == HUMAN_NEGATIVE).sum() == 0
    contrastive = sampler.sample(snap, use_negatives=True, within_branch=True)
    assert (contrastive.kinds == HUMAN_NEGATIVE).sum() == 4
    negative_rows = np.flatnonzero(contrastive.kinds == HUMAN_NEGATIVE)
    assert (contrastive.graph[negative_rows, negative_rows] == -1).all()


def test_sampler_positive_pairs_are_related_in_the_batch_graph() -> None:
    snap = snapshot(store_of(ans(1, 10, 11, 1), ans(2, 11, 12, 1), ans(3, 15, 16, 1)), IDS)
    batch = PairSampler(20, 32, MixSettings(human_fraction=1.0), seed=1).sample(snap, use_negatives=False)
    assert (batch.graph.diagonal() == 1).all()


def test_sampler_closure_draws_pairs_never_asserted() -> None:
    snap = snapshot(store_of(ans(1, 10, 11, 1), ans(2, 11, 12, 1)), IDS)
    sampler = PairSampler(20, 64, MixSettings(human_fraction=1.0, closure_fraction=1.0), seed=2)
    pairs = {tuple(sorted(p)) for p in zip(*_rows(sampler.sample(snap, use_negatives=False)), strict=True)}
    assert (0, 2) in pairs and pairs <= {(0, 1), (1, 2), (0, 2)}


def test_sampler_within_branch_graphs_only_when_asked() -> None:
    snap = snapshot(new_replica(), IDS)
    sampler = PairSampler(20, 4, MixSettings(), seed=0)
    assert sampler.sample(snap, use_negatives=False).graph_aa is None
    assert sampler.sample(snap, use_negatives=True, within_branch=True).graph_aa is not None


def test_sampler_same_seed_same_batch() -> None:
    snap = snapshot(store_of(ans(1, 10, 11, 1)), IDS)
    one = PairSampler(20, 8, MixSettings(), seed=5).sample(snap, use_negatives=False)
    two = PairSampler(20, 8, MixSettings(), seed=5).sample(snap, use_negatives=False)
    assert np.array_equal(one.rows_a, two.rows_a) and np.array_equal(one.rows_b, two.rows_b)


def test_sampler_rejects_batch_of_one() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        PairSampler(20, 1, MixSettings())


def _rows(batch: object) -> tuple[list[int], list[int]]:
    return batch.rows_a.tolist(), batch.rows_b.tolist()  # type: ignore[attr-defined]


def test_sampler_draws_a_heavy_edge_no_more_often_than_an_answer() -> None:
    # A known label's edge (weight 5) decides its pair's vote but is not drawn five times as often.
    snap = snapshot(store_of(ans(1, 10, 11, 1, 5.0), ans(2, 12, 13, 1), ans(3, 14, 15, 1)), IDS)
    sampler = PairSampler(20, 30, MixSettings(human_fraction=1.0, closure_fraction=0.0), seed=3)
    drawn = [tuple(sorted(p)) for _ in range(100)
             for p in zip(*_rows(sampler.sample(snap, use_negatives=False)), strict=True)]
    heavy = sum(p == (0, 1) for p in drawn) / len(drawn)
    assert 0.28 < heavy < 0.39  # about a third, not 5/7
