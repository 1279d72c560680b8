"""Cutting a conflicted positive group into clusters: weighted majority between the "same"
evidence of positive paths and the "different" evidence of negative pairs inside the group.

Pure functions over the group's items, the adjacency of its positive pairs and the pairs' net
votes; scipy's max-flow does the cutting (imported lazily: most graphs never need it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np

from pal.core.edges import EPS, Pair, pair_key

# Min cuts run on integer capacities: weights are scaled by this and rounded (at least 1).
_FLOW_SCALE = 1000


def split_conflicted(
    group: list[int],
    pos_adj: Mapping[int, set[int]],
    inner_neg: list[Pair],
    net: Mapping[Pair, float],
    triggers: list[Pair] | None = None,
) -> list[list[int]]:
    """Partition a positive group that holds negative pairs (weighted majority between the
    "same" evidence of positive paths and the "different" evidence of negative pairs).

    For each inner negative pair (a, b), strongest first (ties by pair), whose ends still share a
    part, two cuts of the part's positive pairs are tried: the minimum cut between a and b, and
    the minimum cut between every inner negative's end on a's side and every end on b's side
    (sides by hop distance to a and to b; this finds a weak bridge between two clusters that
    several negatives contradict). The cut that separates the most negative weight net of the
    positive weight it cuts is applied when that gain is positive; otherwise the pair stays
    inside, outweighed. Parts are finally split into their positive components (a cluster is
    connected by positive pairs). Deterministic: it depends on the pairs and their votes only.
    ``triggers``: only these negative pairs start a cut (the local update of a large group); the
    sums and sides still count every inner negative pair."""
    label = dict.fromkeys(group, 0)
    parts: list[list[int]] = [list(group)]
    order = sorted(inner_neg if triggers is None else triggers, key=lambda p: (net[p], p))  # most negative first
    for a, b in order:
        pa = label[a]
        if label[b] != pa:
            continue
        part = parts[pa]
        negs = [p for p in inner_neg if label[p[0]] == pa and label[p[1]] == pa]
        best_gain, best_side = EPS, None
        for sources, sinks in _cut_terminals(part, pos_adj, negs, a, b):
            cut_weight, side = _min_cut(part, pos_adj, net, sources, sinks)
            separated = sum(-net[p] for p in negs if (p[0] in side) != (p[1] in side))
            if separated - cut_weight > best_gain:
                best_gain, best_side = separated - cut_weight, side
        if best_side is not None:
            parts[pa] = [x for x in part if x in best_side]
            parts.append([x for x in part if x not in best_side])
            for x in parts[-1]:
                label[x] = len(parts) - 1
    out = [comp for part in parts for comp in positive_components(part, pos_adj)]
    out.sort(key=lambda c: c[0])
    return out


def _cut_terminals(
    part: list[int], pos_adj: Mapping[int, set[int]], negs: list[Pair], a: int, b: int
) -> list[tuple[set[int], set[int]]]:
    da, db = _hops(part, pos_adj, a), _hops(part, pos_adj, b)
    far = len(part) + 1
    sources, sinks = {a}, {b}
    for x, y in negs:
        ax, ay, bx, by = da.get(x, far), da.get(y, far), db.get(x, far), db.get(y, far)
        if ax + by < ay + bx:
            sources.add(x)
            sinks.add(y)
        elif ay + bx < ax + by:
            sources.add(y)
            sinks.add(x)
    both = sources & sinks
    sources -= both - {a}
    sinks -= both - {b}
    if sources == {a} and sinks == {b}:
        return [({a}, {b})]
    return [({a}, {b}), (sources, sinks)]


def _hops(part: list[int], pos_adj: Mapping[int, set[int]], start: int) -> dict[int, int]:
    inside = set(part)
    dist = {start: 0}
    todo = deque([start])
    while todo:
        x = todo.popleft()
        for y in pos_adj.get(x, ()):
            if y in inside and y not in dist:
                dist[y] = dist[x] + 1
                todo.append(y)
    return dist


def _min_cut(
    part: list[int], pos_adj: Mapping[int, set[int]], net: Mapping[Pair, float], sources: set[int], sinks: set[int]
) -> tuple[float, set[int]]:
    """Minimum cut of the part's positive pairs separating ``sources`` from ``sinks``:
    ``(cut weight, items on the sources' side)`` (the smallest such side: unique)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    index = {x: i for i, x in enumerate(part)}
    m = len(part)
    rows, cols, caps = [], [], []
    for x in part:
        for y in pos_adj.get(x, ()):
            j = index.get(y)
            if j is not None:
                rows.append(index[x])
                cols.append(j)
                caps.append(max(1, round(net[pair_key(x, y)] * _FLOW_SCALE)))
    # Super source m and super sink m + 1, tied to the terminals by uncuttable arcs.
    big = int(min(sum(caps) + 1, np.iinfo(np.int32).max))
    for x in sources:
        rows.append(m)
        cols.append(index[x])
        caps.append(big)
    for x in sinks:
        rows.append(index[x])
        cols.append(m + 1)
        caps.append(big)
    cap = csr_matrix((np.asarray(caps, np.int64), (rows, cols)), shape=(m + 2, m + 2)).astype(np.int32)
    flow = maximum_flow(cap, m, m + 1, method="dinic")
    residual = cap - flow.flow
    residual.data = (residual.data > 0).astype(np.int32)
    residual.eliminate_zeros()
    reach = breadth_first_order(residual, m, directed=True, return_predecessors=False)
    side = {part[i] for i in reach.tolist() if i < m}
    return flow.flow_value / _FLOW_SCALE, side


def positive_components(part: list[int], pos_adj: Mapping[int, set[int]]) -> list[list[int]]:
    inside = set(part)
    seen: set[int] = set()
    out = []
    for s in part:
        if s in seen:
            continue
        comp = []
        stack = [s]
        seen.add(s)
        while stack:
            x = stack.pop()
            comp.append(x)
            for y in pos_adj.get(x, ()):
                if y in inside and y not in seen:
                    seen.add(y)
                    stack.append(y)
        comp.sort()
        out.append(comp)
    return out


