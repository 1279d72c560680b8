"""Knowledge graph: what the human answers imply, kept up to date one edge at a time.

One object composes the two halves of the model and answers every query under one lock:

- :class:`~pal.core.votes.VoteBook`: live edges and each pair's net vote (weighted by annotator
  reliability; a pair whose votes disagree too much counts as unknown);
- :class:`~pal.core.clusters.Clusters`: components of the positive pairs, cut where negative
  pairs inside outweigh the positive paths, and cannot-links between clusters.

Edges that the resolved graph disagrees with are *contradictions*: kept, never deleted, and
flagged with a reason. Labels for export come from :mod:`pal.core.labels`.

For raw groups of at most ``exact_limit`` items the state is a function of the set of live edges
and the annotator weights only: the same whatever order the edges arrive in. Larger conflicted
groups are kept up to date locally, which depends on the arrival order:
:meth:`KnowledgeGraph.rebuild_from` replays edges in id order (what any consumer of the edge feed
reaches), :meth:`KnowledgeGraph.settle` recomputes the order-free partition.

Cost
----
- ``add_edge`` outside conflicted groups: a few dict operations plus a union (amortised
  near-constant; link maps are merged small-into-large).
- Inside a conflicted group of at most ``exact_limit`` items: the group is marked dirty and
  recomputed from its own edges on the next query (one max-flow per inner negative pair).
- Inside a larger one: O(1) for positives between clusters and negatives between clusters; a
  negative inside a cluster, or a positive lost inside it, costs O(size of that cluster) plus two
  max-flows over it. Nothing is ever rebuilt globally (except by ``settle``).
- Memory: a handful of dict entries per live edge and per item that has an edge; items without
  edges cost nothing, so sparse database ids and millions of items are fine.

Thread safety: every public method holds ``self.lock`` (re-entrant). A caller that needs several
queries to see one state (the oracle choosing a whole task) holds the lock around them.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from pal.core.clusters import Clusters
from pal.core.edges import EPS, Contradiction, EdgeKind, EdgeRecord, Pair, pair_key, sign_of
from pal.core.labels import cluster_labels
from pal.core.votes import MIN_AGREEMENT, VoteBook

P = ParamSpec("P")
R = TypeVar("R")
EdgeLike = EdgeRecord | Sequence[Any]


def _locked(method: Callable[Concatenate[KnowledgeGraph, P], R]) -> Callable[Concatenate[KnowledgeGraph, P], R]:
    @functools.wraps(method)
    def wrapper(self: KnowledgeGraph, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


def as_record(e: EdgeLike) -> EdgeRecord:
    """An :class:`EdgeRecord`, or ``(id, src, dst, sign[, weight[, annotator_id]])`` made into one."""
    if isinstance(e, EdgeRecord):
        return e
    edge_id, src, dst, sign, *rest = e
    weight = float(rest[0]) if rest else 1.0
    annotator = rest[1] if len(rest) > 1 else None
    return EdgeRecord(int(edge_id), int(src), int(dst), int(sign), weight, annotator_id=annotator)


class KnowledgeGraph:
    """Union-find over positive pairs, cannot-links between clusters, contradictions resolved by
    weighted majority. Item ids are arbitrary Python ints; an item never mentioned by an edge is a
    singleton cluster of its own."""

    def __init__(
        self,
        annotator_weights: Mapping[int, float] | None = None,
        exact_limit: int = 512,
        min_agreement: float = MIN_AGREEMENT,
    ) -> None:
        self.lock = threading.RLock()
        self.votes = VoteBook(annotator_weights, min_agreement)
        self.clusters = Clusters(self.votes, exact_limit)
        # Bumped on every change; caches keyed on it (oracle pools, anchor tables) stay valid
        # exactly as long as the graph does not move.
        self.version = 0
        self._flagged: tuple[int, list[Contradiction]] | None = None

    @property
    def min_agreement(self) -> float:
        return self.votes.min_agreement

    @property
    def exact_limit(self) -> int:
        return self.clusters.exact_limit

    # ------------------------------------------------------------------ feed

    @_locked
    def add_edge(
        self, edge_id: int, src: int, dst: int, sign: int, weight: float = 1.0, annotator: int | None = None
    ) -> None:
        """Record one answer edge. Re-delivering an edge id already seen (or retracted) is a no-op,
        so consuming the edge feed twice is harmless."""
        self.add_record(EdgeRecord(int(edge_id), int(src), int(dst), int(sign), float(weight), annotator_id=annotator))

    @_locked
    def add_record(self, rec: EdgeRecord) -> None:
        """:meth:`add_edge` for a record (its kind is kept; a ``retract`` record is refused)."""
        if rec.id in self.votes.edges or rec.id in self.votes.retracted:
            return
        if rec.kind is EdgeKind.RETRACT:
            raise ValueError(f"edge {rec.id} is a retraction, not a relation: use retract({rec.retracts_id})")
        if rec.sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {rec.sign!r} (edge {rec.id})")
        if rec.src == rec.dst:
            raise ValueError(f"edge {rec.id} joins item {rec.src} to itself")
        if not rec.weight > 0:
            raise ValueError(f"weight must be positive, got {rec.weight!r} (edge {rec.id})")
        key = self.votes.add(rec)
        assert key is not None
        self.version += 1
        self._revote(key)

    def add_edges(self, edges: Iterable[EdgeLike]) -> None:
        """Add many edges: :class:`EdgeRecord` or ``(edge_id, src, dst, sign[, weight[, annotator]])``."""
        with self.lock:
            for e in edges:
                self.add_record(as_record(e))

    @_locked
    def retract(self, edge_id: int) -> None:
        """Withdraw an edge (an annotator's undo). Unknown or already retracted ids are a no-op."""
        key = self.votes.remove(edge_id)
        if key is None:
            return
        self.version += 1
        self._revote(key)

    @_locked
    def set_annotator_weight(self, annotator: int, weight: float) -> None:
        """Reliability of an annotator (e.g. their accuracy on gold pairs); multiplies their edges."""
        keys = self.votes.set_weight(annotator, weight)
        if keys is None:
            return
        self.version += 1
        for key in keys:
            self._revote(key)

    def annotator_weight(self, annotator: int) -> float:
        return self.votes.annotator_weight.get(annotator, 1.0)

    @_locked
    def rebuild_from(self, edges: Iterable[EdgeLike], exact: bool = False) -> None:
        """Forget everything and load ``edges`` (annotator weights are kept).

        By default the edges are replayed in edge-id order through :meth:`add_edge`: the state a
        fresh consumer of the edge feed reaches (the same as the incremental one wherever groups
        are resolved exactly). ``exact=True`` loads them in bulk and resolves every group exactly,
        as :meth:`settle` does."""
        records = [as_record(e) for e in edges]
        self.votes.clear()
        self.clusters.clear()
        self.version = 0
        self._flagged = None
        if not exact:
            for rec in sorted(records, key=lambda r: r.id):
                self.add_record(rec)
            return
        for rec in records:
            self.votes.add(rec, keep_order=False)
        self.votes.revote_all()
        self.clusters.dirty = set(self.votes.pos_adj) | set(self.votes.neg_adj)
        self.version += 1

    @classmethod
    def from_edges(cls, edges: Iterable[EdgeLike], exact: bool = False) -> KnowledgeGraph:
        g = cls()
        g.rebuild_from(edges, exact=exact)
        return g

    def _revote(self, key: Pair) -> None:
        self.clusters.before_revote(key)
        old, new = self.votes.revote(key)
        self.clusters.after_revote(key, old, new)

    def _resolved(self) -> Clusters:
        self.clusters.resolve()
        return self.clusters

    # ------------------------------------------------------------ cluster queries

    @_locked
    def find(self, item: int) -> int:
        """Root of the item's cluster (the item itself when it is a singleton)."""
        return self._resolved().find(item)

    @_locked
    def relation(self, a: int, b: int) -> int:
        """+1: implied same (one cluster); -1: implied different (a cannot-link between their
        clusters); 0: unknown."""
        c = self._resolved()
        if a == b:
            return 1
        ra, rb = c.find(a), c.find(b)
        if ra == rb:
            return 1
        links = c.cl.get(ra)
        return -1 if links is not None and rb in links else 0

    @_locked
    def relations(self, ref: int, items: Iterable[int]) -> np.ndarray:
        """``relation(ref, x)`` for each x, as an int8 array (one lock and one resolve for all)."""
        c = self._resolved()
        r = c.find(ref)
        links = c.cl.get(r, {})
        out = []
        for x in items:
            rx = c.find(int(x))
            out.append(1 if rx == r else (-1 if rx in links else 0))
        return np.asarray(out, dtype=np.int8)

    @_locked
    def members(self, root: int) -> list[int]:
        """Items of the cluster whose root is ``root`` (any member's id is accepted)."""
        c = self._resolved()
        r = c.find(root)
        return list(c.members.get(r, [r]))

    @_locked
    def component_size(self, item: int) -> int:
        c = self._resolved()
        return len(c.members.get(c.find(item), (item,)))

    @_locked
    def components(self, min_size: int = 2) -> dict[int, list[int]]:
        """Known clusters: ``{root: members}`` for clusters of at least ``min_size`` items
        (``min_size <= 1`` also lists every item that has an edge but no positive pair)."""
        c = self._resolved()
        out = {r: list(m) for r, m in c.members.items() if len(m) >= min_size}
        if min_size <= 1:
            for x in self.votes.items_with_edges():
                if x not in c.parent:
                    out[x] = [x]
        return out

    @_locked
    def cluster_sizes(self) -> dict[int, int]:
        """``{root: size}`` of the known clusters (size >= 2), without copying member lists."""
        return {r: len(m) for r, m in self._resolved().members.items()}

    @_locked
    def sample_members(self, root: int, k: int, rng: np.random.Generator) -> list[int]:
        """Up to ``k`` distinct members of ``root``'s cluster, drawn uniformly."""
        c = self._resolved()
        r = c.find(root)
        m = c.members.get(r)
        if m is None:
            return [r]
        if len(m) <= k:
            return list(m)
        return [m[i] for i in rng.choice(len(m), size=k, replace=False).tolist()]

    @_locked
    def roots_of(self, items: Iterable[int]) -> list[int]:
        """``find`` for many items under one lock."""
        c = self._resolved()
        return [c.find(int(x)) for x in items]

    @_locked
    def cannot_links(self) -> dict[Pair, float]:
        """``{(root_a, root_b): weight}`` with ``root_a < root_b``: clusters implied different."""
        return {(a, b): w for a, links in self._resolved().cl.items() for b, w in links.items() if a < b}

    @_locked
    def cannot_linked(self, item: int) -> dict[int, float]:
        """Roots of the clusters implied different from ``item``'s cluster, with weights."""
        c = self._resolved()
        return dict(c.cl.get(c.find(item), {}))

    @_locked
    def cannot_linked_many(self, items: Iterable[int]) -> list[dict[int, float] | None]:
        """:meth:`cannot_linked` for many items under one lock (None where there is none)."""
        c = self._resolved()
        out: list[dict[int, float] | None] = []
        for x in items:
            links = c.cl.get(c.find(int(x)))
            out.append(dict(links) if links else None)
        return out

    @_locked
    def settle(self) -> None:
        """Recompute every cluster exactly (the order-free partition), including the large
        conflicted groups that are otherwise kept up to date locally. Cost: the whole graph, one
        max-flow per negative pair inside a conflicted group. For determinism, not quality: on a
        large noisy group the local state is usually the better clustering (5000 items, 10 kinds,
        5% wrong answers: 94% purity locally against 69% after ``settle``)."""
        self.clusters.dirty.update(self.votes.items_with_edges())
        self.clusters.resolve()
        self.version += 1

    # ------------------------------------------------------------ pair and edge queries

    @_locked
    def trusted_pairs(self, min_votes: float = 2.0) -> list[tuple[int, int, int]]:
        """``(a, b, sign)`` for the pairs :meth:`is_pair_trusted` accepts (a scan of all pairs)."""
        c = self._resolved()
        out = []
        for key, net in self.votes.net.items():
            if abs(net) < min_votes - EPS or key in self.votes.contested:
                continue
            s = sign_of(net)
            if (c.find(key[0]) == c.find(key[1])) == (s > 0):
                out.append((key[0], key[1], s))
        return out

    @_locked
    def is_pair_trusted(self, a: int, b: int, min_votes: float = 2.0) -> bool:
        """The pair was asked, every live edge on it agrees, their net reaches ``min_votes`` and the
        resolved graph agrees with it: a safe control (gold) pair."""
        self.clusters.resolve()
        key = pair_key(a, b)
        net = self.votes.net.get(key, 0.0)
        if abs(net) < min_votes - EPS or key in self.votes.contested:
            return False
        return self.relation(a, b) == sign_of(net)

    @_locked
    def pair_votes(self, a: int, b: int) -> float:
        """Net weighted vote on the pair (positive: same); 0.0 when never asked, tied or split."""
        return self.votes.net.get(pair_key(a, b), 0.0)

    @_locked
    def pair_asked(self, a: int, b: int) -> bool:
        """The pair has live edges (answered, whatever their votes say)."""
        return pair_key(a, b) in self.votes.pair_edges

    @_locked
    def neighbours(self, item: int) -> dict[int, float]:
        """``{other: net vote}`` over the pairs with a non-zero majority that touch ``item``."""
        return self.votes.neighbours(item)

    @_locked
    def edge(self, edge_id: int) -> EdgeRecord | None:
        return self.votes.edges.get(edge_id)

    @_locked
    def edges(self) -> list[EdgeRecord]:
        """Live edges in id order."""
        return [self.votes.edges[i] for i in sorted(self.votes.edges)]

    @_locked
    def items_with_edges(self) -> list[int]:
        return sorted(self.votes.items_with_edges())

    def __len__(self) -> int:
        return len(self.votes.edges)

    @_locked
    def contradictions(self) -> list[Contradiction]:
        """Edges the resolved graph disagrees with (kept, never deleted), sorted by edge id. A scan
        of all pairs, cached until the graph changes."""
        c = self._resolved()
        if self._flagged is not None and self._flagged[0] == self.version:
            return list(self._flagged[1])
        votes = self.votes
        out: list[Contradiction] = []
        for key in votes.contested:
            s = sign_of(votes.net[key])
            if s == 0:
                raw = sum(votes.edges[i].sign * votes.weight_of(votes.edges[i]) for i in votes.pair_edges[key])
                reason = "tied" if abs(raw) <= EPS else "split"
            for i in votes.pair_edges[key]:
                e = votes.edges[i]
                if s == 0:
                    out.append(Contradiction(i, e.src, e.dst, e.sign, reason))
                elif e.sign != s:
                    out.append(Contradiction(i, e.src, e.dst, e.sign, "outvoted"))
        for key, net in votes.net.items():
            s = sign_of(net)
            if s == 0 or (c.find(key[0]) == c.find(key[1])) == (s > 0):
                continue
            for i in votes.pair_edges[key]:
                e = votes.edges[i]
                if e.sign == s:
                    out.append(Contradiction(i, e.src, e.dst, e.sign, "overruled"))
        out.sort(key=lambda x: x.edge_id)
        self._flagged = (self.version, out)
        return list(out)

    @_locked
    def stats(self) -> dict[str, Any]:
        c = self._resolved()
        votes = self.votes
        sizes = sorted((len(m) for m in c.members.values()), reverse=True)
        n_pos = sum(1 for e in votes.edges.values() if e.sign > 0)
        contradicted = self.contradictions()
        return {
            "edges": len(votes.edges),
            "positive_edges": n_pos,
            "negative_edges": len(votes.edges) - n_pos,
            "retracted_edges": len(votes.retracted),
            "pairs": len(votes.pair_edges),
            "items_with_edges": len(votes.items_with_edges()),
            "known_clusters": len(sizes),
            "items_in_clusters": sum(sizes),
            "largest_clusters": sizes[:10],
            "cannot_links": sum(len(v) for v in c.cl.values()) // 2,
            "contradictions": len(contradicted),
            "outvoted_edges": sum(1 for x in contradicted if x.reason != "overruled"),
            "overruled_edges": sum(1 for x in contradicted if x.reason == "overruled"),
            "contested_pairs": len(votes.contested),
            "conflicted_groups": len(c.rconflicted),
        }

    # ------------------------------------------------------------ export

    @_locked
    def cluster_assignment(
        self, item_ids: np.ndarray, embedding: np.ndarray | None = None, k: int = 10, block: int = 4096
    ) -> tuple[np.ndarray, np.ndarray]:
        """Labels for export: ``(labels int64 (N,), confidence float32 (N,))``.

        Known clusters (size >= 2) get labels 0..C-1, largest first; their members' confidence is
        the weighted share of their edges that the resolved graph agrees with. An item in no
        cluster whose split pairs lean to one cluster only takes its label (see
        :func:`pal.core.labels.attach_leaners`). Other items, when ``embedding`` ((N, D), rows
        aligned with ``item_ids``) is given, take the similarity-weighted vote of their ``k``
        nearest labelled items (cosine), skipping clusters they are cannot-linked to; confidence is
        the winning share of that vote times the neighbours' mean confidence. Without an embedding
        they get label -1 and confidence 0."""
        return cluster_labels(self.votes, self._resolved(), item_ids, embedding, k, block)

    # ------------------------------------------------------------ equality (tests)

    @_locked
    def canonical(self) -> tuple[Any, ...]:
        """Summary of everything the graph implies (clusters, cannot-links, flagged edges, live
        edges), free of roots and order: two graphs fed the same live edges in any order have
        equal forms wherever groups are resolved exactly (always after :meth:`settle`)."""
        c = self._resolved()
        parts = frozenset(frozenset(m) for m in c.members.values())
        links = frozenset(
            (frozenset({frozenset(c.members.get(a, [a])), frozenset(c.members.get(b, [b]))}), round(w, 6))
            for a, bs in c.cl.items()
            for b, w in bs.items()
            if a < b
        )
        flagged = frozenset((x.edge_id, x.reason) for x in self.contradictions())
        return parts, links, flagged, frozenset(self.votes.edges)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KnowledgeGraph):
            return NotImplemented
        return self.canonical() == other.canonical()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"KnowledgeGraph(edges={len(self.votes.edges)}, version={self.version})"
