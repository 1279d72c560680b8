"""Control (gold) pairs: pairs whose answer is known, mixed into ordinary-looking tasks.

Two sources, best first:
- seed labels (``ctx.seed_labels``: ``{item id: label}``): same label -> match;
- the graph: pairs implied by *trusted* pairs only (every vote agrees, net weight at least
  ``gold_min_votes``, and the resolved graph agrees). Pairs two trusted hops away are preferred
  to a trusted pair itself, so that a control does not simply repeat a question already seen.

A control pair is the one place where an oracle asks a pair whose relation is already known.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np

from pal.core.oracle.base import OracleContext
from pal.core.oracle.cache import OracleCache


def _seed_labels(ctx: OracleContext) -> Mapping[int, Hashable] | None:
    return ctx.seed_labels or None


def _min_votes(ctx: OracleContext) -> float:
    return ctx.gold_min_votes


def _is_item(ctx: OracleContext, item: int) -> bool:
    i = int(np.searchsorted(ctx.item_ids, item))
    return i < len(ctx.item_ids) and int(ctx.item_ids[i]) == item


def gold_reference(ctx: OracleContext, cache: OracleCache, preferred: list[int]) -> int | None:
    """A reference item that has control pairs: one of ``preferred`` when possible."""
    labels = _seed_labels(ctx)
    if labels is not None:
        index = cache.seed_index(labels)
        for item in preferred:
            if item in labels and (len(index) > 1 or len(index[labels[item]]) > 1):
                return item
        keys = list(index)
        if len(keys) > 1 or (keys and len(index[keys[0]]) > 1):
            members = index[keys[int(ctx.rng.integers(len(keys)))]]
            item = int(members[int(ctx.rng.integers(len(members)))])
            if _is_item(ctx, item):
                return item
    pairs = cache.trusted_pairs(ctx.graph, _min_votes(ctx))
    if not pairs:
        return None
    pref = set(preferred)
    for _ in range(8):
        a, b, _sign = pairs[int(ctx.rng.integers(len(pairs)))]
        if ctx.graph.is_pair_trusted(a, b, _min_votes(ctx)):
            end = a if (a in pref or ctx.rng.random() < 0.5) else b
            if _is_item(ctx, end):
                return end
    return None


def gold_pairs(
    ctx: OracleContext, cache: OracleCache, reference: int, exclude: set[int], max_pairs: int
) -> dict[int, bool]:
    """Up to ``max_pairs`` control candidates for ``reference``: ``{item: True if it matches}``,
    at most one match and one non-match."""
    found: dict[bool, list[int]] = {True: [], False: []}
    labels = _seed_labels(ctx)
    if labels is not None and reference in labels:
        index = cache.seed_index(labels)
        own = labels[reference]
        same = index.get(own, np.zeros(0, np.int64))
        others = [lab for lab in index if lab != own]
        for _ in range(4):
            if len(same) > 1:
                x = int(same[int(ctx.rng.integers(len(same)))])
                if x != reference and x not in exclude and _is_item(ctx, x):
                    found[True].append(x)
            if others:
                pool = index[others[int(ctx.rng.integers(len(others)))]]
                x = int(pool[int(ctx.rng.integers(len(pool)))])
                if x not in exclude and _is_item(ctx, x):
                    found[False].append(x)
    if not found[True] or not found[False]:
        _graph_gold(ctx, reference, exclude, found)
    out: dict[int, bool] = {}
    kinds = [True, False]
    ctx.rng.shuffle(kinds)
    for kind in kinds:
        if len(out) < max_pairs and found[kind]:
            out[found[kind][0]] = kind
    return out


def _graph_gold(ctx: OracleContext, reference: int, exclude: set[int], found: dict[bool, list[int]]) -> None:
    g = ctx.graph
    min_votes = _min_votes(ctx)
    direct: dict[bool, list[int]] = {True: [], False: []}
    two_hop: dict[bool, list[int]] = {True: [], False: []}
    for y, net in g.neighbours(reference).items():
        if not g.is_pair_trusted(reference, y, min_votes):
            continue
        direct[net > 0].append(y)
        if net <= 0:
            continue
        for z, net2 in g.neighbours(y).items():
            if z == reference or not g.is_pair_trusted(y, z, min_votes):
                continue
            two_hop[net2 > 0].append(z)
    for kind in (True, False):
        if found[kind]:
            continue
        for pool in (two_hop[kind], direct[kind]):
            ok = [
                z
                for z in pool
                if z not in exclude and g.relation(reference, z) == (1 if kind else -1) and _is_item(ctx, z)
            ]
            if ok:
                found[kind].append(ok[int(ctx.rng.integers(len(ok)))])
                break
