"""Uncertainty sampling: place the items the known clusters disagree about.

The reference is an unplaced item whose nearest known clusters score almost alike (the smallest
margin between its best and second-best allowed anchors: its nearest labelled neighbours belong
to different clusters). The candidates are one member of each of its best allowed anchors, the
member most similar to the reference, closest anchor first: one answer says which cluster it
belongs to ("same as class c?" for several c at once) and cannot-links it to the others. When
fewer anchors are allowed than there are slots, the grid is completed with the reference's
nearest unplaced neighbours.

Because at most one anchor should match, such grids have about one match whatever the target
match share; with no contested item (or no anchors) the strategy defers to ``active``.
"""

from __future__ import annotations

from pal.core.oracle.active import ActiveOracle
from pal.core.oracle.base import OracleContext, TaskSpec
from pal.core.oracle.common import (
    SAMPLE_SIZE,
    build_view,
    cache_of,
    finish_task,
    gold_for,
    selecting,
    want_gold,
)
from pal.core.oracle.placement import contest_grid, most_contested


class UncertaintyOracle:
    name = "uncertainty"

    def __init__(self, sample_size: int = SAMPLE_SIZE, blas_threads: int | None = 1) -> None:
        self.sample_size = sample_size
        # Selections are small matmuls: one BLAS thread is faster (see ``blas``); None: leave as is.
        self.blas_threads = blas_threads
        self._fallback = ActiveOracle(sample_size, blas_threads)

    def select(self, ctx: OracleContext) -> TaskSpec:
        graph = ctx.graph
        with selecting(ctx, self.blas_threads) as space:
            if space is None:
                return self._fallback.select(ctx)
            cache = cache_of(ctx)
            view = build_view(ctx, space, cache.anchors(graph, space, ctx.rng), self.sample_size)
            i = most_contested(view, ctx.rng)
            if i < 0:
                return self._fallback.select(ctx)
            builder = contest_grid(ctx, view, i)
            if not builder.items:
                return self._fallback.select(ctx)
            ref = int(view.ids[i])
            gold = gold_for(ctx, ref, builder.items) if want_gold(ctx) else None
            return finish_task(ctx, ref, builder, gold)
