"""Placement grids: one unplaced item as the reference, asked against a member of each known
cluster it may belong to (closest first) and against its nearest neighbours.

One answer places the item in at most one cluster and cannot-links it to the others; when it is a
new kind, the neighbours that match it start a new cluster. Used by ``uncertainty`` (items the
clusters disagree about) and by ``active`` (items with evidence of being a new kind)."""

from __future__ import annotations

import numpy as np

from pal.core.oracle.base import OracleContext
from pal.core.oracle.common import GridBuilder, SampleView, typical_exemplar


def most_contested(view: SampleView, rng: np.random.Generator) -> int:
    """Sample index of the unplaced item with the smallest best-vs-second margin (>= 2 allowed
    anchors), ties broken at random; -1 when there is none."""
    margin = view.margin()
    ok = view.unresolved & (view.second >= 0) & np.isfinite(margin)
    if not ok.any():
        return -1
    m = np.where(ok, margin, np.inf)
    best = np.flatnonzero(m <= m.min() + 1e-6)
    return int(rng.choice(best))


def contest_grid(ctx: OracleContext, view: SampleView, i: int, anchor_slots: int | None = None) -> GridBuilder:
    """Reference: sampled item ``i``. Candidates: the typical member of each of its best allowed anchors
    (at most ``anchor_slots``; builder kind False), then its nearest neighbours whose relation to
    it is unknown (kind True)."""
    space = view.space
    slots = ctx.n_candidates if anchor_slots is None else anchor_slots
    ref = int(view.ids[i])
    ref_vec = space.vec(view.rows[i : i + 1])[0]
    builder = GridBuilder(ctx.graph, space, ref, ctx.n_candidates, ctx.busy)
    scores = view.scores[i]
    for a in np.argsort(-scores, kind="stable").tolist():
        if not np.isfinite(scores[a]) or builder.full or len(builder.items) >= slots:
            break
        # The cluster's most typical member, not the one most like the reference (a stray). Cluster
        # representatives are cannot-linked to each other by design: relaxed pass.
        row = typical_exemplar(view, a, ctx.graph)
        builder.offer(int(space.ids_of(np.asarray([row]))[0]), row, False, strict=False)
    if not builder.full:
        rows, _ = space.search(ref_vec[None, :], 4 * ctx.n_candidates + 1, view.block)
        near = rows[0][rows[0] != view.rows[i]]
        builder.offer_rows(near, True)
    if not builder.full:
        # The nearest neighbours are often members of clusters it is already cannot-linked to:
        # take the closest unplaced items of the sample instead.
        loose = np.flatnonzero(view.unresolved)
        loose = loose[loose != i]
        order = np.argsort(-(space.vec(view.rows[loose]) @ ref_vec), kind="stable")
        builder.offer_rows(view.rows[loose[order]], True)
        builder.offer_rows(near, True, strict=False)
    return builder
