"""Fragment checks: two known clusters that may hold one kind.

A kind can end up split over two clusters: a few wrong "different" marks, or a placement grid on
an odd member, start a second cluster that then grows on its own. Nothing asks one against the
other afterwards: each is grown with its own likely items, and a merge probe only comes up while
a grid's likely picks look as alike as the other cluster. Exported labels count such a fragment
wrong as a whole (at most one cluster per kind is matched). Seen in the label-efficiency noise
runs before this check (20 % wrong marks, three answers per grid, three known labels per class,
seeds 0 to 3): two runs ended with an eleventh cluster, a Pullover fragment of 42 and 56 items
without a known label; in one of them no answer had ever compared it with the Pullover cluster.

Two signs of a fragment, either one enough: a cluster cannot-linked to at least half of the
other clusters (it has been placed against most kinds) whose relation to some others is still
unknown; or a cluster whose relation to one of its ``NEAREST`` most alike clusters is unknown
(with the first sign only, a third run, seed 0, ended with a cluster of 21 Ankle boots,
cannot-linked to one cluster only, next to the Ankle boot cluster). The check is a grid whose
reference is that cluster's typical member and whose candidates are the typical members of those
other clusters, most alike first (at most half the grid; the rest grows the cluster as usual).
One agreed "same" merges the two clusters; an agreed "different" cannot-links them. A split vote
leaves the relation unknown, so a pair of clusters is checked again (with members not yet asked
together) at most ``MAX_CHECKS`` times.

Not caught: a fragment cannot-linked to every other cluster, its own kind included (one wrong
"different" before it grew). Treating such weak links (one pair) as unknown was tried and dropped:
with one answer per grid every cannot-link is one pair, and the checks crowded out everything
else (exported-label accuracy fell by more than half in the fixed-embedding experiment).
"""

from __future__ import annotations

import numpy as np

from pal.core.oracle.base import OracleContext
from pal.core.oracle.common import GridBuilder, SampleView, typical_exemplar

MAX_CHECKS = 3
NEAREST = 2
MAX_SCANNED = 64


def fragment_check(view: SampleView, ctx: OracleContext, checks: dict[frozenset[int], int]) -> tuple[int, list[int]]:
    """``(anchor, others)``: the cluster to check and the clusters of unknown relation to it, most
    alike first; ``(-1, [])`` when no cluster shows the sign of a fragment."""
    graph = ctx.graph
    n = view.clusters.n
    if n < 3:
        return -1, []
    roots = view.clusters.roots.tolist()
    index = {r: j for j, r in enumerate(roots)}
    # Pairs already checked MAX_CHECKS times, per cluster: {index: [partner indices]}.
    spent: dict[int, list[int]] = {}
    for pair, times in checks.items():
        ends = [index[r] for r in pair if r in index]
        if times >= MAX_CHECKS and len(ends) == 2:
            spent.setdefault(ends[0], []).append(ends[1])
            spent.setdefault(ends[1], []).append(ends[0])
    # Each candidate costs a scan of every cluster: a large project checks a random share of them
    # per task (all of them over a few tasks), so a task costs O(MAX_SCANNED * clusters).
    scanned = range(n) if n <= MAX_SCANNED else sorted(ctx.rng.choice(n, MAX_SCANNED, replace=False).tolist())
    best: tuple[float, int, list[int]] = (-np.inf, -1, [])
    for a in scanned:
        linked = [index[r] for r in graph.cannot_linked(roots[a]) if r in index]
        closed = np.zeros(n, dtype=bool)
        closed[a] = True
        closed[linked] = True
        closed[spent.get(a, [])] = True
        others = np.flatnonzero(~closed).tolist()
        if not others:
            continue
        sims = view.clusters.scores(view.space.vec(view.anchor_exemplars(a))).max(axis=0)  # (A,)
        sims[a] = -np.inf
        nearest = set(np.argsort(-sims, kind="stable")[:NEAREST].tolist())
        if 2 * len(linked) < n - 1:
            others = [b for b in others if b in nearest]
            if not others:
                continue
        others.sort(key=lambda b: -float(sims[b]))
        if float(sims[others[0]]) > best[0]:
            best = (float(sims[others[0]]), a, others)
    return best[1], best[2]


def fragment_grid(
    ctx: OracleContext, view: SampleView, anchor: int, others: list[int], checks: dict[frozenset[int], int]
) -> tuple[GridBuilder, int]:
    """The check grid for ``anchor`` against ``others`` (see the module docstring); counts each
    pair of clusters it asks about in ``checks``."""
    graph, space = ctx.graph, view.space
    ref_row = typical_exemplar(view, anchor, graph)
    ref = int(space.ids_of(np.asarray([ref_row]))[0])
    builder = GridBuilder(graph, space, ref, ctx.n_candidates, ctx.busy)
    root = int(view.anchor_roots[anchor])
    for b in others[: max(1, ctx.n_candidates // 2)]:
        first = typical_exemplar(view, b, graph)
        rows = [first, *(int(r) for r in view.anchor_exemplars(b) if int(r) != first)]
        for row in rows:
            item = int(space.ids_of(np.asarray([row]))[0])
            # A member already asked against the reference (a split vote): try another one.
            if graph.pair_asked(ref, item):
                continue
            # Members of different clusters are usually cannot-linked to each other: relaxed pass.
            if builder.offer(item, row, False, strict=False):
                key = frozenset((root, int(view.anchor_roots[b])))
                checks[key] = checks.get(key, 0) + 1
                break
    # The rest grows the cluster: unplaced items predicted to it, then its nearest unplaced items.
    predicted = view.rows[view.unresolved & (view.best == anchor)]
    builder.offer_rows(predicted[ctx.rng.permutation(len(predicted))], True)
    if not builder.full:
        loose = np.flatnonzero(view.unresolved)
        order = np.argsort(-(space.vec(view.rows[loose]) @ space.vec(np.asarray([ref_row]))[0]), kind="stable")
        builder.offer_rows(view.rows[loose[order]], True)
    return builder, ref
