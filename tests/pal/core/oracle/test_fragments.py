"""Fragment checks: a kind split over two clusters gets its two halves asked against each other."""

from __future__ import annotations

import numpy as np
import pytest

from pal.core.graph import KnowledgeGraph
from pal.core.oracle import OracleCache, OracleContext, fragments, get_oracle
from pal.core.oracle.common import build_view, cache_of, space_for
from pal.core.oracle.fragments import MAX_CHECKS, fragment_check
from tests.pal.core.oracle.helpers import Project, clustered_project


def _split_kind(seed: int = 0) -> tuple[Project, KnowledgeGraph, list[list[int]]]:
    """Five clusters of four items: kinds 0, 1, 2, 3, and a second cluster of kind 0 (a fragment).
    Every pair of clusters is cannot-linked except the two halves of kind 0."""
    project = clustered_project(np.random.default_rng(seed), n=200, classes=4, noise=0.3)
    ids = project.item_ids
    groups = [ids[project.labels == k][:4].tolist() for k in range(4)]
    groups.append(ids[project.labels == 0][4:8].tolist())
    graph = KnowledgeGraph()
    edge = 0
    for group in groups:
        for other in group[1:]:
            edge += 1
            graph.add_edge(edge, group[0], other, 1)
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            if {i, j} != {0, 4}:
                edge += 1
                graph.add_edge(edge, groups[i][0], groups[j][0], -1)
    return project, graph, groups


def _context(project: Project, graph: KnowledgeGraph, cache: OracleCache, seed: int = 1) -> OracleContext:
    return OracleContext(n_candidates=8, item_ids=project.item_ids, graph=graph, rng=np.random.default_rng(seed),
                         embedding=project.embedding, embedding_version=1, cache=cache)


def test_active_asks_the_two_halves_of_a_kind_against_each_other_and_merges_them() -> None:
    project, graph, groups = _split_kind()
    ctx = _context(project, graph, OracleCache())
    task = get_oracle("active").select(ctx)
    halves = {graph.find(groups[0][0]), graph.find(groups[4][0])}
    assert graph.find(task.reference) in halves
    across = [c for c in task.candidates if graph.find(c) in halves - {graph.find(task.reference)}]
    assert len(across) == 1
    # Every candidate of another cluster is one the reference's cluster is not cannot-linked to.
    for c in task.candidates:
        assert graph.relation(task.reference, c) == 0
    graph.add_edge(10_000, task.reference, across[0], 1)  # "same kind"
    assert graph.find(groups[0][0]) == graph.find(groups[4][0])


def test_no_check_once_every_pair_of_clusters_is_resolved() -> None:
    project, graph, groups = _split_kind()
    graph.add_edge(10_000, groups[0][0], groups[4][0], -1)  # the "fragment" is another kind after all
    ctx = _context(project, graph, OracleCache())
    view = build_view(ctx, space_for(ctx), cache_of(ctx).anchors(graph, space_for(ctx), ctx.rng))
    assert fragment_check(view, ctx, {}) == (-1, [])


def test_a_pair_of_clusters_is_checked_at_most_max_checks_times() -> None:
    project, graph, groups = _split_kind()
    cache = OracleCache()
    ctx = _context(project, graph, cache)
    view = build_view(ctx, space_for(ctx), cache.anchors(graph, space_for(ctx), ctx.rng))
    anchor, others = fragment_check(view, ctx, {})
    assert anchor >= 0 and len(others) == 1
    key = frozenset((graph.find(groups[0][0]), graph.find(groups[4][0])))
    assert fragment_check(view, ctx, {key: MAX_CHECKS - 1})[0] >= 0
    assert fragment_check(view, ctx, {key: MAX_CHECKS}) == (-1, [])
    # The oracle counts the checks it issues, and a split vote sends it to another member.
    oracle = get_oracle("active")
    asked: list[tuple[int, int]] = []
    for round_ in range(MAX_CHECKS + 2):
        task = oracle.select(_context(project, graph, cache, seed=round_ + 2))
        halves = {graph.find(groups[0][0]), graph.find(groups[4][0])}
        across = [c for c in task.candidates
                  if graph.find(c) in halves and graph.find(c) != graph.find(task.reference)]
        if graph.find(task.reference) in halves and across:
            asked.append((task.reference, across[0]))
            for k, sign in enumerate((1, 1, -1)):  # a 2-1 split: the relation stays unknown
                graph.add_edge(20_000 + 10 * round_ + k, task.reference, across[0], sign, annotator=k + 1)
    assert len(asked) == MAX_CHECKS and cache.fragment_checks[key] == MAX_CHECKS
    assert len(set(asked)) == MAX_CHECKS  # never the same pair twice


def test_a_cluster_is_checked_against_its_nearest_clusters_even_when_no_link_is_known() -> None:
    project, graph, groups = _split_kind()
    fresh = KnowledgeGraph()  # the same clusters, and no cannot-link at all
    for e in graph.edges():
        if e.sign > 0:
            fresh.add_edge(e.id, e.src, e.dst, e.sign)
    ctx = _context(project, fresh, OracleCache())
    view = build_view(ctx, space_for(ctx), cache_of(ctx).anchors(fresh, space_for(ctx), ctx.rng))
    anchor, others = fragment_check(view, ctx, {})
    assert 1 <= len(others) <= 2  # its two nearest clusters at most, not all four
    # The most alike pair of clusters of unknown relation comes first: the two halves of kind 0.
    assert {int(view.anchor_roots[anchor]), int(view.anchor_roots[others[0]])} == {
        fresh.find(groups[0][0]), fresh.find(groups[4][0])}


def test_a_large_project_scans_a_random_share_of_its_clusters_per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fragments, "MAX_SCANNED", 2)
    project, graph, groups = _split_kind()
    halves = {graph.find(groups[0][0]), graph.find(groups[4][0])}
    found = 0
    for seed in range(12):
        ctx = _context(project, graph, OracleCache(), seed=seed)
        view = build_view(ctx, space_for(ctx), cache_of(ctx).anchors(graph, space_for(ctx), ctx.rng))
        anchor, others = fragment_check(view, ctx, {})
        if anchor >= 0:
            assert {int(view.anchor_roots[anchor]), int(view.anchor_roots[others[0]])} == halves
            found += 1
    assert 0 < found < 12  # only tasks that drew one of the two halves check them
