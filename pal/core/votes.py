"""Vote aggregation: the live edges of a graph and the net vote of every pair they touch.

Each live edge votes on its unordered pair with ``sign * weight * reliability(annotator)``. A
pair's *net* vote is the sum over its live edges, added in edge-id order so that the float is the
same however the edges arrived. ``net > 0``: a positive pair; ``net < 0``: a negative pair; a tie:
no relation. A pair whose winning side holds less than ``min_agreement`` of its vote weight
(default 3/4: a 2-1 split of three annotators) is *split*: no relation either, so that a single
wrong mark among redundant answers never joins or separates two items (with 20% wrong marks and
three answers per grid, a 2-1 majority is wrong one time in five, a unanimous one one time in 65).

The book keeps, besides the nets, the adjacency of positive and negative pairs (what clustering
reads) and the *contested* pairs (live edges that disagree, or a net of 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pal.core.edges import EPS, EdgeRecord, Pair, pair_key, sign_of

# Share of a pair's vote weight its winning side needs for the pair to count (see the docstring).
MIN_AGREEMENT = 0.75


class VoteBook:
    """Live edges by id and the vote of every pair. Not thread-safe: the graph holds its lock."""

    def __init__(self, annotator_weights: Mapping[int, float] | None = None, min_agreement: float = MIN_AGREEMENT
                 ) -> None:
        if not 0.5 <= min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be in [0.5, 1], got {min_agreement!r}")
        self.min_agreement = min_agreement
        self.annotator_weight: dict[int, float] = dict(annotator_weights or {})
        self.clear()

    def clear(self) -> None:
        """Forget every edge (annotator weights are kept)."""
        self.edges: dict[int, EdgeRecord] = {}
        self.retracted: set[int] = set()
        self.by_annotator: dict[int, set[int]] = {}
        self.pair_edges: dict[Pair, list[int]] = {}
        self.net: dict[Pair, float] = {}
        self.pos_adj: dict[int, set[int]] = {}
        self.neg_adj: dict[int, set[int]] = {}
        self.contested: set[Pair] = set()

    # ------------------------------------------------------------ edges in and out

    def add(self, rec: EdgeRecord, *, keep_order: bool = True) -> Pair | None:
        """Record a live edge; returns its pair, or None when the id was seen (or retracted) before.
        ``keep_order=False`` (bulk loading) leaves the pair's id list unsorted."""
        if rec.id in self.edges or rec.id in self.retracted:
            return None
        self.edges[rec.id] = rec
        if rec.annotator_id is not None:
            self.by_annotator.setdefault(rec.annotator_id, set()).add(rec.id)
        key = pair_key(rec.src, rec.dst)
        ids = self.pair_edges.setdefault(key, [])
        ids.append(rec.id)
        if keep_order and len(ids) > 1 and ids[-2] > ids[-1]:
            ids.sort()
        return key

    def remove(self, edge_id: int) -> Pair | None:
        """Withdraw an edge for good; returns its pair, or None when it was not live."""
        self.retracted.add(edge_id)
        rec = self.edges.pop(edge_id, None)
        if rec is None:
            return None
        if rec.annotator_id is not None:
            self.by_annotator[rec.annotator_id].discard(edge_id)
        key = pair_key(rec.src, rec.dst)
        ids = self.pair_edges[key]
        ids.remove(edge_id)
        if not ids:
            del self.pair_edges[key]
        return key

    def set_weight(self, annotator: int, weight: float) -> list[Pair] | None:
        """Change an annotator's reliability; returns the pairs to re-vote (sorted), or None when
        the weight did not change."""
        if not weight >= 0:
            raise ValueError(f"annotator weight must be >= 0, got {weight!r}")
        if self.annotator_weight.get(annotator, 1.0) == weight:
            return None
        self.annotator_weight[annotator] = weight
        ids = self.by_annotator.get(annotator, ())
        return sorted({pair_key(self.edges[i].src, self.edges[i].dst) for i in ids})

    # ------------------------------------------------------------ votes

    def weight_of(self, e: EdgeRecord) -> float:
        """The edge's vote: its weight times its annotator's reliability."""
        if e.annotator_id is None:
            return e.weight
        return e.weight * self.annotator_weight.get(e.annotator_id, 1.0)

    def totals(self, key: Pair) -> tuple[float, float]:
        """``(net, mass)``: the signed and the total weight of the pair's live edges."""
        # Summed in edge-id order: the same floats whatever order the edges came in.
        net = mass = 0.0
        for i in self.pair_edges.get(key, ()):
            e = self.edges[i]
            w = self.weight_of(e)
            net += e.sign * w
            mass += w
        return net, mass

    def counted_net(self, key: Pair) -> float:
        """The pair's net vote, 0.0 when it is tied or split (see ``min_agreement``)."""
        net, mass = self.totals(key)
        # Winning share = (mass + |net|) / (2 mass).
        if mass + abs(net) < 2.0 * self.min_agreement * mass - EPS:
            return 0.0
        return net

    def revote(self, key: Pair) -> tuple[float, float]:
        """Recompute the pair's net from its live edges; returns ``(old, new)`` and keeps the
        contested set and the adjacency of positive and negative pairs in step."""
        u, v = key
        old = self.net.get(key, 0.0)
        new = self.counted_net(key)
        if key in self.pair_edges:
            self.net[key] = new
        else:
            self.net.pop(key, None)
        self._set_contested(key, new)
        s_old, s_new = sign_of(old), sign_of(new)
        if s_old != s_new:
            if s_old:
                _unlink(self.pos_adj if s_old > 0 else self.neg_adj, u, v)
            if s_new:
                _link(self.pos_adj if s_new > 0 else self.neg_adj, u, v)
        return old, new

    def revote_all(self) -> None:
        """Every pair's net from scratch, after a bulk load (adjacency assumed empty)."""
        for key, ids in self.pair_edges.items():
            ids.sort()
            net = self.counted_net(key)
            self.net[key] = net
            self._set_contested(key, net)
            s = sign_of(net)
            if s:
                _link(self.pos_adj if s > 0 else self.neg_adj, *key)

    def _set_contested(self, key: Pair, net: float) -> None:
        ids = self.pair_edges.get(key, ())
        signs = {self.edges[i].sign for i in ids}
        if ids and (len(signs) > 1 or sign_of(net) == 0):
            self.contested.add(key)
        else:
            self.contested.discard(key)

    # ------------------------------------------------------------ reads

    def items_with_edges(self) -> set[int]:
        out: set[int] = set()
        for a, b in self.pair_edges:
            out.add(a)
            out.add(b)
        return out

    def neighbours(self, item: int) -> dict[int, float]:
        """``{other: net vote}`` over the pairs with a non-zero majority that touch ``item``."""
        out: dict[int, float] = {}
        for adj in (self.pos_adj, self.neg_adj):
            for y in adj.get(item, ()):
                out[y] = self.net[pair_key(item, y)]
        return out

    def live(self, edges: Iterable[int]) -> list[EdgeRecord]:
        return [self.edges[i] for i in edges]


def _link(adj: dict[int, set[int]], u: int, v: int) -> None:
    adj.setdefault(u, set()).add(v)
    adj.setdefault(v, set()).add(u)


def _unlink(adj: dict[int, set[int]], u: int, v: int) -> None:
    for a, b in ((u, v), (v, u)):
        s = adj.get(a)
        if s is not None:
            s.discard(b)
            if not s:
                del adj[a]
