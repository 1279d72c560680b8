"""The passive baseline: reference and candidates uniformly at random.

It may ask pairs the graph already implies (that is what passive means); controls are mixed in at
``ctx.gold_rate`` like in every other strategy, so annotator accuracy is measured whatever the
strategy."""

from __future__ import annotations

from pal.core.oracle.base import OracleContext, TaskSpec
from pal.core.oracle.common import cache_of, want_gold
from pal.core.oracle.gold import gold_pairs, gold_reference


class RandomOracle:
    name = "random"

    def select(self, ctx: OracleContext) -> TaskSpec:
        n_items = len(ctx.item_ids)
        if n_items < 2:
            raise ValueError(f"a task needs at least 2 items, the project has {n_items}")
        k = min(ctx.n_candidates + 1, n_items)
        picked = ctx.rng.choice(n_items, size=k, replace=False)
        ids = [int(ctx.item_ids[i]) for i in picked]
        ref, cands = ids[0], ids[1:]
        if not want_gold(ctx) or len(cands) < 2:
            return TaskSpec(reference=ref, candidates=cands)
        with ctx.graph.lock:
            gold_ref = gold_reference(ctx, cache_of(ctx), [])
            if gold_ref is None:
                return TaskSpec(reference=ref, candidates=cands)
            cands = [c for c in ids if c != gold_ref][: len(cands)]
            gold = gold_pairs(ctx, cache_of(ctx), gold_ref, set(cands), 1 if len(cands) < 4 else 2)
        gold = dict(list(gold.items())[: len(cands) - 1])
        if not gold:
            return TaskSpec(reference=gold_ref, candidates=cands)
        mixed = cands[: len(cands) - len(gold)] + list(gold)
        order = ctx.rng.permutation(len(mixed))
        return TaskSpec(reference=gold_ref, candidates=[mixed[i] for i in order], gold=gold)
