"""The offline oracle harness and the discovery prototype, on a small synthetic problem."""

from __future__ import annotations

import numpy as np
import pytest

from pal.core.graph import KnowledgeGraph
from pal.core.oracle import OracleCache, OracleContext, get_oracle
from pal.core.oracle.common import space_for
from research.oracle_experiments import DiscoveryFirst, RecheckLookalikes, VerifyWeak, pca_embedding, run_strategy

pytestmark = pytest.mark.research


def blobs(n: int = 400, classes: int = 5, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centers = rng.normal(size=(classes, dim)) * 3
    return (centers[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


def test_discovery_grid_candidates_have_unknown_relation_to_the_reference() -> None:
    emb, labels = blobs()
    ids = np.arange(1, len(labels) + 1, dtype=np.int64)
    graph, cache, oracle = KnowledgeGraph(), OracleCache(), DiscoveryFirst()
    edge = 0
    for t in range(12):
        ctx = OracleContext(n_candidates=8, item_ids=ids, graph=graph, rng=np.random.default_rng(t), embedding=emb,
                            embedding_version=1, cache=cache)
        spec = oracle.select(ctx)
        assert len(spec.candidates) == 8 and spec.reference not in spec.candidates
        assert all(graph.relation(spec.reference, c) == 0 for c in spec.candidates)
        for c in spec.candidates:
            edge += 1
            graph.add_edge(edge, spec.reference, c, 1 if labels[spec.reference - 1] == labels[c - 1] else -1)


def test_discovery_finds_every_class_of_separated_blobs_within_twenty_grids() -> None:
    emb, labels = blobs()
    result = run_strategy("discovery", emb, labels, np.arange(len(labels)), [20], error_rate=0.0, seed=0)
    assert result["points"][0]["clusters"] == 5


def test_pca_embedding_keeps_the_requested_dimensions() -> None:
    images = np.random.default_rng(0).integers(0, 255, size=(50, 8, 8), dtype=np.uint8)
    emb = pca_embedding(images, dim=6)
    assert emb.shape == (50, 6) and emb.dtype == np.float32
    # Components are uncorrelated and sorted by variance.
    var = emb.var(axis=0)
    assert np.all(np.diff(var) <= 1e-6)


def test_redundant_votes_count_as_answers_and_unanimous_equals_all_without_errors() -> None:
    emb, labels = blobs()
    train = np.arange(len(labels))
    runs = [run_strategy("active", emb, labels, train, [20], error_rate=0.0, seed=0, redundancy=3, aggregate=agg)
            for agg in ("all", "unanimous")]
    assert [r["points"][0]["answers"] for r in runs] == [21, 21]  # 7 grids of 3 answers
    assert runs[0]["points"] == runs[1]["points"]
    with pytest.raises(ValueError, match="aggregate"):
        run_strategy("active", emb, labels, train, [5], error_rate=0.0, seed=0, aggregate="median")


def test_verify_weak_reasks_single_vote_members_against_the_core() -> None:
    emb, _labels = blobs()
    ids = np.arange(1, len(emb) + 1, dtype=np.int64)
    graph = KnowledgeGraph()
    edge = 0
    for _ in range(3):  # 1 and 2: a core pair with three votes
        edge += 1
        graph.add_edge(edge, 1, 2, 1)
    for member in range(3, 12):  # nine members attached to the core by one vote each
        edge += 1
        graph.add_edge(edge, 1, member, 1)
    oracle = VerifyWeak(DiscoveryFirst(), every=1)
    ctx = OracleContext(n_candidates=8, item_ids=ids, graph=graph, rng=np.random.default_rng(0), embedding=emb,
                        embedding_version=1, cache=OracleCache())
    spec = oracle.select(ctx)
    assert spec.reference == 1 and spec.candidates == list(range(3, 11))
    # Asked once: the same pairs are not asked again, and one weak member left is too few for a grid.
    assert oracle._verification(graph, 8) is None


# RecheckLookalikes: items 1-6 form cluster A, 7-11 cluster B (one kind, kept apart by one wrong
# "different" pair), 12-16 cluster C (another kind); 17-40 are unplaced items of either kind.
A, B, C = list(range(1, 7)), list(range(7, 12)), list(range(12, 17))
IDS = np.arange(1, 41, dtype=np.int64)


def _two_kinds() -> np.ndarray:
    rng = np.random.default_rng(1)
    centres = np.zeros((2, 8), dtype=np.float32)
    centres[0, 0] = centres[1, 1] = 4.0
    kinds = np.array([0 if i in A or i in B else 1 if i in C else i % 2 for i in IDS.tolist()])
    return (centres[kinds] + 0.5 * rng.standard_normal((len(IDS), 8))).astype(np.float32)


def _fragmented(negative_pairs: int) -> KnowledgeGraph:
    g = KnowledgeGraph()
    edge = 0
    for cluster in (A, B, C):
        for m in cluster[1:]:
            edge += 1
            g.add_edge(edge, cluster[0], m, 1)
    for k in range(negative_pairs):
        edge += 1
        g.add_edge(edge, A[k], B[k], -1)
    for a in (A[0], B[0]):
        edge += 1
        g.add_edge(edge, a, C[0], -1)
    return g


def _recheck_ctx(g: KnowledgeGraph, n: int = 4) -> OracleContext:
    return OracleContext(n, IDS, g, np.random.default_rng(0), embedding=_two_kinds(), embedding_version=1,
                         cache=OracleCache())


def _no_recheck(oracle: RecheckLookalikes, ctx: OracleContext) -> bool:
    space = space_for(ctx)
    return space is not None and oracle._recheck(ctx, space) is None


def test_recheck_asks_look_alike_clusters_kept_apart_by_one_pair_and_the_answers_merge_them() -> None:
    g, oracle = _fragmented(negative_pairs=1), RecheckLookalikes(get_oracle("active"), every=1)
    task = oracle.select(_recheck_ctx(g))
    # The larger cluster gives the reference, the other a full grid.
    assert g.find(task.reference) == g.find(A[0]) and len(task.candidates) == 4 and set(task.candidates) <= set(B)
    for k, c in enumerate(task.candidates):
        g.add_edge(1000 + k, task.reference, c, 1)
    assert len(g.members(A[0])) == len(A) + len(B)


def test_recheck_answered_different_is_not_asked_again() -> None:
    g, oracle = _fragmented(negative_pairs=1), RecheckLookalikes(get_oracle("active"), every=1)
    task = oracle.select(_recheck_ctx(g))
    for k, c in enumerate(task.candidates):
        g.add_edge(1000 + k, task.reference, c, -1)
    assert g.find(A[0]) != g.find(B[0])
    assert _no_recheck(oracle, _recheck_ctx(g))


@pytest.mark.parametrize(("negative_pairs", "n"), [(2, 4), (1, 8)])
def test_no_recheck_for_two_pairs_apart_or_a_cluster_too_small_for_a_full_grid(negative_pairs: int, n: int) -> None:
    g, oracle = _fragmented(negative_pairs), RecheckLookalikes(get_oracle("active"), every=1)
    assert _no_recheck(oracle, _recheck_ctx(g, n))


def test_known_label_edges_follow_the_servers_rule() -> None:
    from pal.core.known_labels import KNOWN_LABEL_WEIGHT, PAIRS_PER_LABEL
    from research.oracle_experiments import known_label_edges, pick_known

    edges = known_label_edges({1: "a", 2: "a", 3: "b"})
    assert edges == [(1, 2, 1, KNOWN_LABEL_WEIGHT), (1, 3, -1, KNOWN_LABEL_WEIGHT), (2, 3, -1, KNOWN_LABEL_WEIGHT)]
    many = known_label_edges({i: "a" for i in range(1, 10)} | {10: "b"})
    assert sum(1 for e in many if 10 in e[:2]) == PAIRS_PER_LABEL  # linked to a few items per label, not all
    labels = np.repeat(np.arange(3), 5)
    known = pick_known(labels, np.arange(12), 2, seed=0)  # rows 12-14 are not training rows
    assert len(known) == 6 and all(labels[i - 1] == c and i - 1 < 12 for i, c in known.items())
