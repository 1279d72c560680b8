"""Knowledge graph: what the human answers imply, kept up to date one edge at a time.

Shared by the server (the oracle asks "is this pair already implied?") and the trainer (it samples
closure pairs), so this module needs numpy only (scipy is imported lazily, for min cuts).

Model
-----
- Each answer edge votes on an unordered pair with ``sign * weight * reliability(annotator)``.
  A pair's *net* vote is the sum over its live edges, added in edge-id order so that the float
  is the same however the edges arrived. ``net > 0``: a positive pair; ``net < 0``: a negative
  pair; a tie: no relation. A pair whose winning side holds less than ``min_agreement`` of its
  vote weight (default 3/4: a 2-1 split of three annotators) is *split*: no relation either, so
  that a single wrong mark among redundant answers never joins or separates two items (with
  20% wrong marks and three answers per grid, a 2-1 majority is wrong one time in five, a
  unanimous one one time in 65). Edges on the losing side of their pair are flagged
  ``"outvoted"`` (``"tied"`` on a tie, ``"split"`` on a split pair).
- *Raw groups* are the connected components of the positive pairs. A raw group with no negative
  pair inside it is one known cluster (a component of the union-find). A raw group with negative
  pairs inside is *conflicted*: it is cut into clusters by :func:`_split_conflicted`, which, for each
  inner negative pair from strongest to weakest, cuts the group along a minimum cut between its
  two ends when the positive weight cut is smaller than the negative weight that the cut separates
  (weighted majority between the "same" evidence of the paths and the "different" evidence).
  Edges that the resulting partition contradicts are flagged ``"overruled"``.
- Negative pairs between two clusters make a *cannot-link* between them (weight: the sum of
  their nets).

For raw groups of at most ``exact_limit`` items everything above is a function of the set of
live edges and the annotator weights only: the same whatever order the edges arrive in.

Larger conflicted groups (a noisy project glues whole classes together through a few false
matches) are kept up to date *locally* instead, the same weighted majority applied at the cluster
level as edges arrive: a positive pair between two clusters merges them when the positive weight
between them exceeds the negative weight; a negative pair inside a cluster cuts the cluster along
the best minimum cut when that cut separates more negative weight than the positive weight it
cuts; a positive pair lost inside a cluster splits it into its positive components. That state
depends on the arrival order: :meth:`KnowledgeGraph.rebuild_from` replays edges in id order (what
any consumer of the edge feed reaches), :meth:`KnowledgeGraph.settle` recomputes the order-free
partition when determinism matters more than cost.

Cost
----
- ``add_edge`` outside conflicted groups: a few dict operations plus a union (amortised
  near-constant; link maps are merged small-into-large).
- Inside a conflicted group of at most ``exact_limit`` items: the group is marked dirty and
  recomputed from its own edges on the next query (one max-flow per inner negative pair).
- Inside a larger one: O(1) for positives between clusters and negatives between clusters; a
  negative inside a cluster, or a positive lost inside it, costs O(size of that cluster) plus
  two max-flows over it. Nothing is ever rebuilt globally (except by ``settle``).
- Memory: a handful of dict entries per live edge and per item that has an edge; items without
  edges cost nothing, so sparse database ids and millions of items are fine.

Thread safety: every public method holds ``self.lock`` (re-entrant). A caller that needs several
queries to see one state (the oracle choosing a whole task) holds the lock around them.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

EPS = 1e-9
# Share of a pair's vote weight its winning side needs for the pair to count (see the docstring).
MIN_AGREEMENT = 0.75
# Min cuts run on integer capacities: weights are scaled by this and rounded (at least 1).
_FLOW_SCALE = 1000

Pair = tuple[int, int]
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class EdgeRecord:
    """One live answer edge, as the graph holds it."""

    edge_id: int
    src: int
    dst: int
    sign: int
    weight: float = 1.0
    annotator: int | None = None


@dataclass(frozen=True)
class Contradiction:
    """An edge that the resolved graph disagrees with. ``reason``: ``"outvoted"`` (other answers to
    the same pair outweigh it), ``"tied"`` (the pair's votes cancel out), ``"split"`` (the
    pair's votes disagree too much for the pair to count, see ``MIN_AGREEMENT``) or ``"overruled"`` (its pair's
    majority is contradicted by the closure of stronger evidence)."""

    edge_id: int
    src: int
    dst: int
    sign: int
    reason: str


def _pair(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)


def _sign(x: float) -> int:
    return 1 if x > EPS else (-1 if x < -EPS else 0)


def _locked(method: Callable[Concatenate[KnowledgeGraph, P], R]) -> Callable[Concatenate[KnowledgeGraph, P], R]:
    @functools.wraps(method)
    def wrapper(self: KnowledgeGraph, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


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
        if not 0.5 <= min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be in [0.5, 1], got {min_agreement!r}")
        self.lock = threading.RLock()
        self._annotator_weight: dict[int, float] = dict(annotator_weights or {})
        self.min_agreement = min_agreement
        # Conflicted groups up to this many items are resolved exactly (order-free); larger ones
        # locally, as edges arrive (see the module docstring).
        self.exact_limit = exact_limit
        self._reset()

    def _reset(self) -> None:
        # Bumped on every change; caches keyed on it (oracle pools, sampling tables) stay valid
        # exactly as long as the graph does not move.
        self.version = 0
        self._edges: dict[int, EdgeRecord] = {}
        self._retracted: set[int] = set()
        self._by_annotator: dict[int, set[int]] = {}
        self._pair_edges: dict[Pair, list[int]] = {}
        self._net: dict[Pair, float] = {}
        self._pos_adj: dict[int, set[int]] = {}
        self._neg_adj: dict[int, set[int]] = {}
        self._contested: set[Pair] = set()  # pairs whose live edges disagree
        # Clusters: union-find with sizes and member lists at roots of size >= 2.
        self._parent: dict[int, int] = {}
        self._members: dict[int, list[int]] = {}
        # Cannot-links between cluster roots, symmetric: _cl[a][b] == _cl[b][a] > 0 (negative
        # weight between the clusters); _pb the same for positive weight between different
        # clusters (overruled positive pairs, which may tip the balance later).
        self._cl: dict[int, dict[int, float]] = {}
        self._pb: dict[int, dict[int, float]] = {}
        # Raw groups (components of positive pairs): their own union-find and the conflicted ones.
        self._rparent: dict[int, int] = {}
        self._rsize: dict[int, int] = {}
        self._rconflicted: set[int] = set()
        self._dirty: set[int] = set()
        self._samplers: tuple[int, Any] | None = None
        self._flagged: tuple[int, list[Contradiction]] | None = None

    # ------------------------------------------------------------------ feed

    @_locked
    def add_edge(
        self, edge_id: int, src: int, dst: int, sign: int, weight: float = 1.0, annotator: int | None = None
    ) -> None:
        """Record one answer edge. Re-delivering an edge id already seen (or retracted) is a no-op,
        so consuming the edge feed twice is harmless."""
        if edge_id in self._edges or edge_id in self._retracted:
            return
        if sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {sign!r} (edge {edge_id})")
        if src == dst:
            raise ValueError(f"edge {edge_id} joins item {src} to itself")
        if not weight > 0:
            raise ValueError(f"weight must be positive, got {weight!r} (edge {edge_id})")
        rec = EdgeRecord(int(edge_id), int(src), int(dst), int(sign), float(weight), annotator)
        self._edges[rec.edge_id] = rec
        if annotator is not None:
            self._by_annotator.setdefault(annotator, set()).add(rec.edge_id)
        key = _pair(rec.src, rec.dst)
        ids = self._pair_edges.setdefault(key, [])
        ids.append(rec.edge_id)
        if len(ids) > 1 and ids[-2] > ids[-1]:
            ids.sort()
        self.version += 1
        self._update_pair(key)

    def add_edges(self, edges: Iterable[EdgeRecord | Sequence[Any]]) -> None:
        """Add many edges: :class:`EdgeRecord` or ``(edge_id, src, dst, sign[, weight[, annotator]])``."""
        with self.lock:
            for e in edges:
                if isinstance(e, EdgeRecord):
                    self.add_edge(e.edge_id, e.src, e.dst, e.sign, e.weight, e.annotator)
                else:
                    self.add_edge(*e)

    @_locked
    def retract(self, edge_id: int) -> None:
        """Withdraw an edge (an annotator's undo). Unknown or already retracted ids are a no-op."""
        self._retracted.add(edge_id)
        rec = self._edges.pop(edge_id, None)
        if rec is None:
            return
        if rec.annotator is not None:
            self._by_annotator[rec.annotator].discard(edge_id)
        key = _pair(rec.src, rec.dst)
        ids = self._pair_edges[key]
        ids.remove(edge_id)
        if not ids:
            del self._pair_edges[key]
        self.version += 1
        self._update_pair(key)

    @_locked
    def set_annotator_weight(self, annotator: int, weight: float) -> None:
        """Reliability of an annotator (e.g. their accuracy on gold pairs); multiplies their edges."""
        if not weight >= 0:
            raise ValueError(f"annotator weight must be >= 0, got {weight!r}")
        if self._annotator_weight.get(annotator, 1.0) == weight:
            return
        self._annotator_weight[annotator] = weight
        self.version += 1
        keys = {_pair(self._edges[i].src, self._edges[i].dst) for i in self._by_annotator.get(annotator, ())}
        for key in sorted(keys):
            self._update_pair(key)

    @_locked
    def rebuild_from(self, edges: Iterable[EdgeRecord | Sequence[Any]], exact: bool = False) -> None:
        """Forget everything and load ``edges`` (annotator weights are kept).

        By default the edges are replayed in edge-id order through :meth:`add_edge`: the state a
        fresh consumer of the edge feed reaches (the same as the incremental one wherever groups
        are resolved exactly). ``exact=True`` loads them in bulk and resolves every group exactly,
        as :meth:`settle` does."""
        records = [e if isinstance(e, EdgeRecord) else EdgeRecord(*e) for e in edges]
        self._reset()
        if not exact:
            for rec in sorted(records, key=lambda r: r.edge_id):
                self.add_edge(rec.edge_id, rec.src, rec.dst, rec.sign, rec.weight, rec.annotator)
            return
        for rec in records:
            if rec.edge_id in self._edges:
                continue
            self._edges[rec.edge_id] = rec
            if rec.annotator is not None:
                self._by_annotator.setdefault(rec.annotator, set()).add(rec.edge_id)
            self._pair_edges.setdefault(_pair(rec.src, rec.dst), []).append(rec.edge_id)
        for key, ids in self._pair_edges.items():
            ids.sort()
            net = self._pair_net(key)
            self._net[key] = net
            self._set_contested(key, net)
            s = _sign(net)
            if s:
                adj = self._pos_adj if s > 0 else self._neg_adj
                adj.setdefault(key[0], set()).add(key[1])
                adj.setdefault(key[1], set()).add(key[0])
        self._dirty = set(self._pos_adj) | set(self._neg_adj)
        self.version += 1

    @classmethod
    def from_edges(cls, edges: Iterable[EdgeRecord | Sequence[Any]], exact: bool = False) -> KnowledgeGraph:
        g = cls()
        g.rebuild_from(edges, exact=exact)
        return g

    # ------------------------------------------------------------ queries

    @_locked
    def find(self, item: int) -> int:
        """Root of the item's cluster (the item itself when it is a singleton)."""
        self._resolve()
        return self._find(item)

    component_of = find

    @_locked
    def relation(self, a: int, b: int) -> int:
        """+1: implied same (one cluster); -1: implied different (a cannot-link between their
        clusters); 0: unknown."""
        self._resolve()
        if a == b:
            return 1
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return 1
        links = self._cl.get(ra)
        return -1 if links is not None and rb in links else 0

    @_locked
    def relations(self, ref: int, items: Iterable[int]) -> np.ndarray:
        """``relation(ref, x)`` for each x, as an int8 array (one lock and one resolve for all)."""
        self._resolve()
        r = self._find(ref)
        links = self._cl.get(r, {})
        out = []
        for x in items:
            rx = self._find(int(x))
            out.append(1 if rx == r else (-1 if rx in links else 0))
        return np.asarray(out, dtype=np.int8)

    @_locked
    def members(self, root: int) -> list[int]:
        """Items of the cluster whose root is ``root`` (any member's id is accepted)."""
        self._resolve()
        r = self._find(root)
        return list(self._members.get(r, [r]))

    @_locked
    def component_size(self, item: int) -> int:
        self._resolve()
        return len(self._members.get(self._find(item), (item,)))

    @_locked
    def components(self, min_size: int = 2) -> dict[int, list[int]]:
        """Known clusters: ``{root: members}`` for clusters of at least ``min_size`` items
        (``min_size <= 1`` also lists every item that has an edge but no positive pair)."""
        self._resolve()
        out = {r: list(m) for r, m in self._members.items() if len(m) >= min_size}
        if min_size <= 1:
            for x in self._items_with_edges():
                if x not in self._parent:
                    out[x] = [x]
        return out

    @_locked
    def cluster_sizes(self) -> dict[int, int]:
        """``{root: size}`` of the known clusters (size >= 2), without copying member lists."""
        self._resolve()
        return {r: len(m) for r, m in self._members.items()}

    @_locked
    def sample_members(self, root: int, k: int, rng: np.random.Generator) -> list[int]:
        """Up to ``k`` distinct members of ``root``'s cluster, drawn uniformly."""
        self._resolve()
        r = self._find(root)
        m = self._members.get(r)
        if m is None:
            return [r]
        if len(m) <= k:
            return list(m)
        return [m[i] for i in rng.choice(len(m), size=k, replace=False).tolist()]

    @_locked
    def roots_of(self, items: Iterable[int]) -> list[int]:
        """``find`` for many items under one lock."""
        self._resolve()
        return [self._find(int(x)) for x in items]

    @_locked
    def trusted_pairs(self, min_votes: float = 2.0) -> list[tuple[int, int, int]]:
        """``(a, b, sign)`` for the pairs :meth:`is_pair_trusted` accepts (a scan of all pairs)."""
        self._resolve()
        out = []
        for key, net in self._net.items():
            if abs(net) < min_votes - EPS or key in self._contested:
                continue
            s = _sign(net)
            if (self._find(key[0]) == self._find(key[1])) == (s > 0):
                out.append((key[0], key[1], s))
        return out

    @_locked
    def cannot_links(self) -> dict[Pair, float]:
        """``{(root_a, root_b): weight}`` with ``root_a < root_b``: clusters implied different."""
        self._resolve()
        return {(a, b): w for a, links in self._cl.items() for b, w in links.items() if a < b}

    @_locked
    def cannot_linked(self, item: int) -> dict[int, float]:
        """Roots of the clusters implied different from ``item``'s cluster, with weights."""
        self._resolve()
        return dict(self._cl.get(self._find(item), {}))

    @_locked
    def cannot_linked_many(self, items: Iterable[int]) -> list[dict[int, float] | None]:
        """:meth:`cannot_linked` for many items under one lock (None where there is none)."""
        self._resolve()
        cl = self._cl
        out: list[dict[int, float] | None] = []
        for x in items:
            links = cl.get(self._find(int(x)))
            out.append(dict(links) if links else None)
        return out

    @_locked
    def contradictions(self) -> list[Contradiction]:
        """Edges the resolved graph disagrees with (kept, never deleted), sorted by edge id. A scan
        of all pairs, cached until the graph changes."""
        self._resolve()
        if self._flagged is not None and self._flagged[0] == self.version:
            return list(self._flagged[1])
        out: list[Contradiction] = []
        for key in self._contested:
            s = _sign(self._net[key])
            if s == 0:
                raw = sum(self._edges[i].sign * self._eff_weight(self._edges[i]) for i in self._pair_edges[key])
                reason = "tied" if abs(raw) <= EPS else "split"
            for i in self._pair_edges[key]:
                e = self._edges[i]
                if s == 0:
                    out.append(Contradiction(i, e.src, e.dst, e.sign, reason))
                elif e.sign != s:
                    out.append(Contradiction(i, e.src, e.dst, e.sign, "outvoted"))
        for key, net in self._net.items():
            s = _sign(net)
            if s == 0 or (self._find(key[0]) == self._find(key[1])) == (s > 0):
                continue
            for i in self._pair_edges[key]:
                e = self._edges[i]
                if e.sign == s:
                    out.append(Contradiction(i, e.src, e.dst, e.sign, "overruled"))
        out.sort(key=lambda c: c.edge_id)
        self._flagged = (self.version, out)
        return list(out)

    @_locked
    def settle(self) -> None:
        """Recompute every cluster exactly (the order-free partition), including the large
        conflicted groups that are otherwise kept up to date locally. Cost: the whole graph,
        one max-flow per negative pair inside a conflicted group. For determinism, not quality:
        on a large noisy group the local state is usually the better clustering (5000 items,
        10 kinds, 5% wrong answers: 94% purity locally against 69% after ``settle``)."""
        self._dirty.update(self._items_with_edges())
        self._resolve()
        self.version += 1

    @_locked
    def pair_votes(self, a: int, b: int) -> float:
        """Net weighted vote on the pair (positive: same); 0.0 when never asked, tied or split."""
        return self._net.get(_pair(a, b), 0.0)

    @_locked
    def pair_asked(self, a: int, b: int) -> bool:
        """The pair has live edges (answered, whatever their votes say)."""
        return _pair(a, b) in self._pair_edges

    @_locked
    def neighbours(self, item: int) -> dict[int, float]:
        """``{other: net vote}`` over the pairs with a non-zero majority that touch ``item``."""
        out: dict[int, float] = {}
        for adj in (self._pos_adj, self._neg_adj):
            for y in adj.get(item, ()):
                out[y] = self._net[_pair(item, y)]
        return out

    @_locked
    def is_pair_trusted(self, a: int, b: int, min_votes: float = 2.0) -> bool:
        """The pair was asked, every live edge on it agrees, their net reaches ``min_votes`` and the
        resolved graph agrees with it: a safe control (gold) pair."""
        self._resolve()
        key = _pair(a, b)
        net = self._net.get(key, 0.0)
        if abs(net) < min_votes - EPS or key in self._contested:
            return False
        return self.relation(a, b) == _sign(net)

    @_locked
    def edge(self, edge_id: int) -> EdgeRecord | None:
        return self._edges.get(edge_id)

    @_locked
    def edges(self) -> list[EdgeRecord]:
        """Live edges in id order."""
        return [self._edges[i] for i in sorted(self._edges)]

    @_locked
    def items_with_edges(self) -> list[int]:
        return sorted(self._items_with_edges())

    @_locked
    def in_conflicted_group(self, item: int) -> bool:
        """The item's positive group holds contradictions (its cluster is the result of a cut)."""
        self._resolve()
        return self._rfind(item) in self._rconflicted

    def __len__(self) -> int:
        return len(self._edges)

    @_locked
    def stats(self) -> dict[str, Any]:
        self._resolve()
        sizes = sorted((len(m) for m in self._members.values()), reverse=True)
        n_pos = sum(1 for e in self._edges.values() if e.sign > 0)
        contradicted = self.contradictions()
        return {
            "edges": len(self._edges),
            "positive_edges": n_pos,
            "negative_edges": len(self._edges) - n_pos,
            "retracted_edges": len(self._retracted),
            "pairs": len(self._pair_edges),
            "items_with_edges": len(self._items_with_edges()),
            "known_clusters": len(sizes),
            "items_in_clusters": sum(sizes),
            "largest_clusters": sizes[:10],
            "cannot_links": sum(len(v) for v in self._cl.values()) // 2,
            "contradictions": len(contradicted),
            "outvoted_edges": sum(1 for c in contradicted if c.reason != "overruled"),
            "overruled_edges": sum(1 for c in contradicted if c.reason == "overruled"),
            "contested_pairs": len(self._contested),
            "conflicted_groups": len(self._rconflicted),
        }

    # ------------------------------------------------------------ export / trainer helpers

    @_locked
    def cluster_assignment(
        self, item_ids: np.ndarray, embedding: np.ndarray | None = None, k: int = 10, block: int = 4096
    ) -> tuple[np.ndarray, np.ndarray]:
        """Labels for export: ``(labels int64 (N,), confidence float32 (N,))``.

        Known clusters (size >= 2) get labels 0..C-1, largest first; their members' confidence is
        the weighted share of their edges that the resolved graph agrees with. An item in no
        cluster whose split pairs lean to one cluster only takes its label (see
        :meth:`_attach_leaners`). Other items, when ``embedding`` ((N, D), rows aligned with
        ``item_ids``) is given, take the similarity-weighted vote of their ``k`` nearest labelled
        items (cosine), skipping clusters they are cannot-linked to; confidence is the winning share
        of that vote times the neighbours' mean confidence. Without an embedding they get label -1
        and confidence 0."""
        self._resolve()
        ids = np.asarray(item_ids, dtype=np.int64)
        n = len(ids)
        labels = np.full(n, -1, dtype=np.int64)
        conf = np.zeros(n, dtype=np.float32)
        roots = np.fromiter((self._find(int(x)) for x in ids), dtype=np.int64, count=n)
        present = set(roots.tolist())
        clusters = sorted(
            ((r, m) for r, m in self._members.items() if r in present), key=lambda rm: (-len(rm[1]), min(rm[1]))
        )
        label_of_root = {r: c for c, (r, _) in enumerate(clusters)}
        agree = self._agreement()
        for i, (x, r) in enumerate(zip(ids.tolist(), roots.tolist(), strict=True)):
            c = label_of_root.get(r)
            if c is not None:
                labels[i] = c
                conf[i] = agree.get(x, 1.0)
        self._attach_leaners(ids, roots, labels, conf, label_of_root)
        if embedding is None or not label_of_root:
            return labels, conf
        emb = np.asarray(embedding, dtype=np.float32)
        if emb.shape[0] != n:
            raise ValueError(f"embedding has {emb.shape[0]} rows for {n} item ids")
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        known = np.flatnonzero(labels >= 0)
        unknown = np.flatnonzero(labels < 0)
        kk = min(k, len(known))
        known_t = np.ascontiguousarray(emb[known].T)
        label_roots = np.asarray([r for r, _ in clusters], dtype=np.int64)
        for s in range(0, len(unknown), block):
            rows = unknown[s : s + block]
            sims = emb[rows] @ known_t  # (b, n_known)
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            top_sims = np.take_along_axis(sims, top, axis=1)
            for j, row in enumerate(rows.tolist()):
                banned = self._cl.get(int(roots[row]), {})
                votes: dict[int, float] = {}
                conf_sum = 0.0
                for nb, sim in zip(known[top[j]].tolist(), top_sims[j].tolist(), strict=True):
                    lab = int(labels[nb])
                    if int(label_roots[lab]) in banned:
                        continue
                    w = max(sim, 0.0) + 1e-6
                    votes[lab] = votes.get(lab, 0.0) + w
                    conf_sum += w * float(conf[nb])
                if not votes:
                    continue
                total = sum(votes.values())
                best = max(votes, key=lambda lab_: (votes[lab_], -lab_))
                labels[row] = best
                conf[row] = votes[best] / total * (conf_sum / total)
        return labels, conf

    def _attach_leaners(
        self, ids: np.ndarray, roots: np.ndarray, labels: np.ndarray, conf: np.ndarray, label_of_root: dict[int, int]
    ) -> None:
        """Label the items in no cluster whose split pairs lean "same" towards one cluster only.

        A split pair (see ``min_agreement``) joins nothing: with 20% wrong marks nearly half of
        the pairs asked three times are split, and the clusters hold about half the items they
        would without errors. Yet a 2-1 "same" is right about four times in five (it is 4 times
        likelier from a pair of one kind than from two kinds). So an item outside every cluster whose
        positive-leaning split pairs all go to members of one cluster (not cannot-linked to it)
        takes that cluster's label, as a leaf: it joins nothing to anything, and its confidence
        is the pair's winning share. Leaves then vote, like members, for the items left."""
        row_of = {x: i for i, x in enumerate(ids.tolist()) if labels[i] < 0}
        if not row_of:
            return
        leaning: dict[int, dict[int, float]] = {}  # row -> {label: winning share}
        for key in self._contested:
            if self._net.get(key, 0.0) != 0.0:
                continue
            net, mass = self._vote_totals(key)
            if net <= EPS:
                continue
            a, b = key
            for loose, other in ((a, b), (b, a)):
                row = row_of.get(loose)
                label = label_of_root.get(self._find(other))
                if row is not None and label is not None:
                    share = (mass + net) / (2.0 * mass)
                    votes = leaning.setdefault(row, {})
                    votes[label] = max(votes.get(label, 0.0), share)
        for row, votes in leaning.items():
            if len(votes) != 1:
                continue
            (label, share), = votes.items()
            if label in {label_of_root.get(r) for r in self._cl.get(int(roots[row]), {})}:
                continue
            labels[row] = label
            conf[row] = share

    @_locked
    def sample_closure_pairs(self, rng: np.random.Generator, n: int, sign: int) -> np.ndarray:
        """``n`` pairs (int64 (n, 2)) implied by the closure: ``sign=+1`` two members of one cluster
        (clusters drawn with probability proportional to their number of pairs), ``sign=-1`` one
        member of each side of a cannot-link (drawn proportionally to |A| * |B|). Empty (0, 2) when
        the graph implies no such pair."""
        self._resolve()
        if self._samplers is None or self._samplers[0] != self.version:
            self._samplers = (self.version, self._build_samplers())
        pos, neg = self._samplers[1]
        if sign > 0:
            groups, p = pos
            if not groups:
                return np.zeros((0, 2), dtype=np.int64)
            out = np.empty((n, 2), dtype=np.int64)
            for i, g in enumerate(rng.choice(len(groups), size=n, p=p)):
                out[i] = rng.choice(groups[g], size=2, replace=False)
            return out
        links, p = neg
        if not links:
            return np.zeros((0, 2), dtype=np.int64)
        out = np.empty((n, 2), dtype=np.int64)
        for i, li in enumerate(rng.choice(len(links), size=n, p=p)):
            a, b = links[li]
            out[i, 0] = rng.choice(a)
            out[i, 1] = rng.choice(b)
        return out

    def _build_samplers(self) -> tuple[tuple[list[np.ndarray], np.ndarray], tuple[list[Any], np.ndarray]]:
        groups = [np.asarray(m, dtype=np.int64) for m in self._members.values()]
        w = np.asarray([len(g) * (len(g) - 1) / 2 for g in groups], dtype=np.float64)
        pos = (groups, w / w.sum() if len(w) else w)
        links = []
        wl = []
        for a, bs in self._cl.items():
            for b in bs:
                if a < b:
                    ma = np.asarray(self._members.get(a, [a]), dtype=np.int64)
                    mb = np.asarray(self._members.get(b, [b]), dtype=np.int64)
                    links.append((ma, mb))
                    wl.append(len(ma) * len(mb))
        wn = np.asarray(wl, dtype=np.float64)
        return pos, (links, wn / wn.sum() if len(wn) else wn)

    # ------------------------------------------------------------ equality (tests)

    @_locked
    def canonical(self) -> tuple[Any, ...]:
        """Summary of everything the graph implies (clusters, cannot-links, flagged edges, live
        edges), free of roots and order: two graphs fed the same live edges in any order have
        equal forms wherever groups are resolved exactly (always after :meth:`settle`)."""
        self._resolve()
        parts = frozenset(frozenset(m) for m in self._members.values())
        links = frozenset(
            (frozenset({frozenset(self._members.get(a, [a])), frozenset(self._members.get(b, [b]))}), round(w, 6))
            for a, bs in self._cl.items()
            for b, w in bs.items()
            if a < b
        )
        flagged = frozenset((c.edge_id, c.reason) for c in self.contradictions())
        return parts, links, flagged, frozenset(self._edges)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KnowledgeGraph):
            return NotImplemented
        return self.canonical() == other.canonical()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"KnowledgeGraph(edges={len(self._edges)}, version={self.version})"

    # ------------------------------------------------------------ internals: pairs

    def _eff_weight(self, e: EdgeRecord) -> float:
        if e.annotator is None:
            return e.weight
        return e.weight * self._annotator_weight.get(e.annotator, 1.0)

    def _vote_totals(self, key: Pair) -> tuple[float, float]:
        """``(net, mass)``: the signed and the total weight of the pair's live edges."""
        # Summed in edge-id order: the same floats whatever order the edges came in.
        net = mass = 0.0
        for i in self._pair_edges.get(key, ()):
            e = self._edges[i]
            w = self._eff_weight(e)
            net += e.sign * w
            mass += w
        return net, mass

    def _pair_net(self, key: Pair) -> float:
        """The pair's net vote, 0.0 when it is tied or split (see ``min_agreement``)."""
        net, mass = self._vote_totals(key)
        # Winning share = (mass + |net|) / (2 mass).
        if mass + abs(net) < 2.0 * self.min_agreement * mass - EPS:
            return 0.0
        return net

    def _set_contested(self, key: Pair, net: float) -> None:
        ids = self._pair_edges.get(key, ())
        signs = {self._edges[i].sign for i in ids}
        if ids and (len(signs) > 1 or _sign(net) == 0):
            self._contested.add(key)
        else:
            self._contested.discard(key)

    def _update_pair(self, key: Pair) -> None:
        """Recompute one pair's net vote and apply the change to the clusters."""
        u, v = key
        if self._dirty and not self._is_small(u, v):
            # Bring the pending small groups up to date (with this pair's old vote) before a
            # large group is touched: the local update needs a consistent structure.
            self._resolve()
        old = self._net.get(key, 0.0)
        new = self._pair_net(key)
        if key in self._pair_edges:
            self._net[key] = new
        else:
            self._net.pop(key, None)
        self._set_contested(key, new)
        s_old, s_new = _sign(old), _sign(new)
        if s_old != s_new:
            if s_old > 0:
                self._unlink(self._pos_adj, u, v)
            elif s_old < 0:
                self._unlink(self._neg_adj, u, v)
            if s_new > 0:
                self._pos_adj.setdefault(u, set()).add(v)
                self._pos_adj.setdefault(v, set()).add(u)
            elif s_new < 0:
                self._neg_adj.setdefault(u, set()).add(v)
                self._neg_adj.setdefault(v, set()).add(u)
        if s_old == 0 and s_new == 0:
            return
        exact = self._is_small(u, v)
        if self._dirty and exact:
            # Some small groups are stale: let the next resolve recompute this pair's groups too
            # rather than reasoning about a half-updated structure.
            self._dirty.update(key)
            return
        ru, rv = self._rfind(u), self._rfind(v)
        if ru != rv and s_new <= 0:
            # Negative (or no) evidence between two positive groups: a cannot-link update only.
            self._add_link(self._cl, self._find(u), self._find(v), max(-new, 0.0) - max(-old, 0.0))
            return
        if ru != rv and s_old < 0:
            self._add_link(self._cl, self._find(u), self._find(v), old)  # old < 0: removes it
            old = 0.0
        if s_new > 0 and ru not in self._rconflicted and rv not in self._rconflicted:
            fu, fv = self._find(u), self._find(v)
            if fu == fv and s_old >= 0:
                return  # a positive pair inside a consistent cluster
            if fu != fv and fv not in self._cl.get(fu, {}):
                # A positive pair joining two clusters without any contradiction: a plain union.
                if ru != rv:
                    self._runion(ru, rv)
                self._union(fu, fv)
                return
        if exact:
            self._dirty.update(key)
        else:
            self._apply_locally(u, v, old, new)

    def _is_small(self, u: int, v: int) -> bool:
        """The raw group(s) of u and v (sizes are upper bounds) are resolved exactly."""
        ru, rv = self._rfind(u), self._rfind(v)
        return self._rsize.get(ru, 1) + (self._rsize.get(rv, 1) if ru != rv else 0) <= self.exact_limit

    def _apply_locally(self, u: int, v: int, old: float, new: float) -> None:
        """Weighted majority at the cluster level, for a pair inside or next to a large conflicted
        group (the state stays consistent: no dirty groups are pending)."""
        ru, rv = self._rfind(u), self._rfind(v)
        if new > EPS and ru != rv:
            self._runion(ru, rv)
            ru = self._rfind(u)
        x, y = self._find(u), self._find(v)
        if x != y:
            # The pair's evidence moves between the two clusters' link maps.
            self._add_link(self._pb, x, y, max(new, 0.0) - max(old, 0.0))
            self._add_link(self._cl, x, y, max(-new, 0.0) - max(-old, 0.0))
            if self._pb.get(x, {}).get(y, 0.0) > self._cl.get(x, {}).get(y, 0.0) + EPS:
                if y in self._cl.get(x, {}):
                    self._rconflicted.add(ru)
                self._union(x, y)
            return
        if old > EPS and new <= EPS:
            # A positive pair lost inside a cluster: it may fall apart.
            parts = _positive_components(self._members[x], self._pos_adj)
            if len(parts) > 1:
                self._replace_cluster(x, parts)
                x = self._find(u)
                if x != self._find(v):
                    return
        if new < -EPS:
            self._rconflicted.add(ru)
            members = self._members[x]
            inside = set(members)
            inner = sorted({_pair(a, b) for a in members for b in self._neg_adj.get(a, ()) if b in inside})
            parts = _split_conflicted(members, self._pos_adj, inner, self._net, triggers=[_pair(u, v)])
            if len(parts) > 1:
                self._replace_cluster(x, parts)

    def _replace_cluster(self, root: int, parts: list[list[int]]) -> None:
        """Split cluster ``root`` into ``parts`` and rebuild the link maps of its members."""
        members = self._members.pop(root)
        for maps in (self._cl, self._pb):
            for t in maps.pop(root, {}):
                lt = maps[t]
                lt.pop(root, None)
                if not lt:
                    del maps[t]
        for x in members:
            self._parent.pop(x, None)
        for part in parts:
            if len(part) > 1:
                self._set_cluster(part)
        self._link_items(set(members))

    def _link_items(self, items: set[int]) -> None:
        """Add the link-map entries of every pair with an end in ``items`` (whose old entries
        are gone) that joins two different clusters."""
        for x in items:
            rx = self._find(x)
            for maps, adj, sign in ((self._pb, self._pos_adj, 1.0), (self._cl, self._neg_adj, -1.0)):
                for y in adj.get(x, ()):
                    if y in items and y < x:
                        continue
                    ry = self._find(y)
                    if ry != rx:
                        self._add_link(maps, rx, ry, sign * self._net[_pair(x, y)])

    @staticmethod
    def _unlink(adj: dict[int, set[int]], u: int, v: int) -> None:
        for a, b in ((u, v), (v, u)):
            s = adj.get(a)
            if s is not None:
                s.discard(b)
                if not s:
                    del adj[a]

    def _items_with_edges(self) -> set[int]:
        out: set[int] = set()
        for a, b in self._pair_edges:
            out.add(a)
            out.add(b)
        return out

    # ------------------------------------------------------------ internals: union-finds

    def _find(self, x: int) -> int:
        parent = self._parent
        root = x
        while True:
            p = parent.get(root, root)
            if p == root:
                break
            root = p
        while x != root:  # path compression
            nxt = parent[x]
            parent[x] = root
            x = nxt
        return root

    def _rfind(self, x: int) -> int:
        parent = self._rparent
        root = x
        while True:
            p = parent.get(root, root)
            if p == root:
                break
            root = p
        while x != root:
            nxt = parent[x]
            parent[x] = root
            x = nxt
        return root

    def _runion(self, a: int, b: int) -> None:
        sa, sb = self._rsize.get(a, 1), self._rsize.get(b, 1)
        if sa < sb:
            a, b = b, a
        self._rparent[b] = a
        self._rparent.setdefault(a, a)
        self._rsize[a] = sa + sb
        self._rsize.pop(b, None)
        if b in self._rconflicted:
            self._rconflicted.discard(b)
            self._rconflicted.add(a)

    def _union(self, a: int, b: int) -> None:
        """Merge clusters with roots a != b; links between them become internal (dropped)."""
        ma = self._members.get(a)
        mb = self._members.get(b)
        if (len(ma) if ma else 1) < (len(mb) if mb else 1):
            a, b, ma, mb = b, a, mb, ma
        self._parent[b] = a
        self._parent.setdefault(a, a)
        if ma is None:
            ma = self._members[a] = [a]
        ma.extend(mb if mb is not None else [b])
        self._members.pop(b, None)
        for maps in (self._cl, self._pb):
            links_b = maps.pop(b, None)
            if not links_b:
                continue
            links_a = maps.setdefault(a, {})
            for t, w in links_b.items():
                lt = maps[t]
                del lt[b]
                if t == a:
                    continue
                lt[a] = lt.get(a, 0.0) + w
                links_a[t] = links_a.get(t, 0.0) + w
            links_a.pop(b, None)
            if not links_a:
                del maps[a]

    @staticmethod
    def _add_link(maps: dict[int, dict[int, float]], a: int, b: int, w: float) -> None:
        """Add ``w`` (may be negative, to remove weight) to the link between roots a and b."""
        if w == 0.0 or a == b:
            return
        for x, y in ((a, b), (b, a)):
            links = maps.setdefault(x, {})
            nw = links.get(y, 0.0) + w
            if nw > EPS:
                links[y] = nw
            else:
                links.pop(y, None)
                if not links:
                    del maps[x]

    # ------------------------------------------------------------ internals: lazy resolution

    def _resolve(self) -> None:
        """Recompute exactly every raw group that touches a dirty item, from its own pairs."""
        if not self._dirty:
            return
        seeds = self._dirty
        self._dirty = set()
        items: set[int] = set()
        groups: list[list[int]] = []
        for s in sorted(seeds):
            if s in items:
                continue
            group = self._positive_component(s)
            items.update(group)
            groups.append(group)
        # Drop the old state of these items: cluster roots, link maps, raw groups.
        old_roots = {self._find(x) for x in items}
        old_raw = {self._rfind(x) for x in items}
        for maps in (self._cl, self._pb):
            for r in old_roots:
                for t in maps.pop(r, {}):
                    if t not in old_roots:
                        lt = maps[t]
                        lt.pop(r, None)
                        if not lt:
                            del maps[t]
        for r in old_roots:
            self._members.pop(r, None)
        for r in old_raw:
            self._rconflicted.discard(r)
            self._rsize.pop(r, None)
        for x in items:
            self._parent.pop(x, None)
            self._rparent.pop(x, None)
        # Rebuild each group.
        for group in groups:
            if len(group) == 1:
                continue
            root = group[0]
            for x in group:
                self._rparent[x] = root
            self._rsize[root] = len(group)
            members = set(group)
            inner_neg = sorted({_pair(x, y) for x in group for y in self._neg_adj.get(x, ()) if y in members})
            if not inner_neg:
                self._set_cluster(group)
                continue
            self._rconflicted.add(root)
            for part in _split_conflicted(group, self._pos_adj, inner_neg, self._net):
                if len(part) > 1:
                    self._set_cluster(part)
        self._link_items(items)

    def _set_cluster(self, part: list[int]) -> None:
        root = part[0]
        for x in part:
            self._parent[x] = root
        self._members[root] = list(part)

    def _positive_component(self, start: int) -> list[int]:
        seen = {start}
        stack = [start]
        out = []
        while stack:
            x = stack.pop()
            out.append(x)
            for y in self._pos_adj.get(x, ()):
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        out.sort()
        return out

    def _agreement(self) -> dict[int, float]:
        """Per item with edges: weighted share of its live edges that the resolved graph agrees with."""
        agree: dict[int, float] = {}
        total: dict[int, float] = {}
        for e in self._edges.values():
            w = self._eff_weight(e)
            same = self._find(e.src) == self._find(e.dst)
            ok = same if e.sign > 0 else not same
            for x in (e.src, e.dst):
                total[x] = total.get(x, 0.0) + w
                if ok:
                    agree[x] = agree.get(x, 0.0) + w
        return {x: agree.get(x, 0.0) / t if t > 0 else 1.0 for x, t in total.items()}


def _split_conflicted(
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
    out = [comp for part in parts for comp in _positive_components(part, pos_adj)]
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
                caps.append(max(1, round(net[_pair(x, y)] * _FLOW_SCALE)))
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


def _positive_components(part: list[int], pos_adj: Mapping[int, set[int]]) -> list[list[int]]:
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


def iter_edge_records(rows: Iterable[Mapping[str, Any]]) -> Iterator[EdgeRecord]:
    """Edge rows (dicts with id, src, dst, sign, weight, annotator_id) to :class:`EdgeRecord`s."""
    for r in rows:
        yield EdgeRecord(
            int(r["id"]),
            int(r["src"]),
            int(r["dst"]),
            int(r["sign"]),
            float(r.get("weight", 1.0)),
            r.get("annotator_id"),
        )
