"""Pieces shared by the embedding-driven oracles: what a sample of items looks like relative to the
known clusters, and a grid builder that enforces the rules every grid follows.

Rules (each candidate, checked at issue time under the graph lock):
- its relation to the reference is unknown (``relation(ref, c) == 0``) -- controls excepted;
- one candidate per cluster, and, when possible, no two candidates whose relation is implied;
- no near-duplicates among candidates (cosine above the space's duplicate threshold).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from pal.core.graph import KnowledgeGraph
from pal.core.oracle.base import NoTaskAvailable, OracleContext, TaskSpec
from pal.core.oracle.blas import limit_blas_threads
from pal.core.oracle.cache import AnchorTable, OracleCache
from pal.core.oracle.gold import gold_pairs, gold_reference
from pal.core.oracle.neighbours import VectorSpace, top_k

SAMPLE_SIZE = 512
NEG_INF = np.float32(-np.inf)


def cache_of(ctx: OracleContext) -> OracleCache:
    """The project's cache: ``ctx.cache``, else a throwaway one kept for this call (correct, slower)."""
    if ctx.cache is None:
        ctx.cache = OracleCache()
    return ctx.cache


@contextmanager
def selecting(ctx: OracleContext, blas_threads: int | None) -> Iterator[VectorSpace | None]:
    """The frame of one selection: the graph held still, BLAS on ``blas_threads`` threads, and the
    space to choose in (None when there are no vectors yet)."""
    if ctx.n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {ctx.n_candidates}")
    with ctx.graph.lock, limit_blas_threads(blas_threads):
        yield space_for(ctx)


def space_for(ctx: OracleContext) -> VectorSpace | None:
    """The current embedding's space, else the cold-start pixel features', else None."""
    cache = cache_of(ctx)
    if ctx.embedding is not None:
        version = ctx.embedding_version
        if version is None:
            version = _fingerprint(ctx.embedding)
        return cache.prepare(ctx.item_ids, ctx.embedding, version, "embedding")
    if ctx.pixel_features is not None:
        return cache.prepare(ctx.item_ids, ctx.pixel_features, _fingerprint(ctx.pixel_features), "pixels")
    return None


def _fingerprint(array: np.ndarray) -> tuple[object, ...]:
    """Identifies an array without a version id: the object, its shape and a checksum of a few
    rows (an id alone may be reused by a new array once the old one is freed)."""
    step = max(1, len(array) // 64)
    return ("array", id(array), array.shape, zlib.crc32(np.ascontiguousarray(array[::step]).tobytes()))


@dataclass
class SampleView:
    """A sample of items scored against every anchor.

    Anchors are the known clusters plus *orphans*: unplaced items that are cannot-linked to every
    known cluster (evidence of a kind nobody has a cluster for yet), which act as clusters of one."""

    space: VectorSpace
    clusters: AnchorTable
    block: tuple[np.ndarray, np.ndarray]
    rows: np.ndarray  # (s,) sampled rows
    ids: np.ndarray  # (s,) their item ids
    unresolved: np.ndarray  # (s,) bool: in no known cluster and not an orphan
    banned: np.ndarray  # (s,) number of known clusters each sampled item is cannot-linked to
    anchor_roots: np.ndarray  # (A + O,) root item id of each anchor
    anchor_sizes: np.ndarray  # (A + O,)
    orphan_rows: np.ndarray  # (O,) rows of the orphans
    scores: np.ndarray  # (s, A + O) best cosine to each anchor's exemplars; -inf where impossible
    best: np.ndarray  # (s,) index of the best allowed anchor, -1 if none
    second: np.ndarray  # (s,) runner-up, -1 if none
    scale: float  # project items per sampled item

    @property
    def n_anchors(self) -> int:
        return len(self.anchor_roots)

    def margin(self) -> np.ndarray:
        """best - second score (inf when there is no runner-up, -inf when no anchor is allowed)."""
        if self.scores.shape[1] == 0:
            return np.full(len(self.rows), NEG_INF, dtype=np.float32)
        idx = np.arange(len(self.rows))
        b = np.where(self.best >= 0, self.scores[idx, np.maximum(self.best, 0)], NEG_INF)
        s = np.where(self.second >= 0, self.scores[idx, np.maximum(self.second, 0)], NEG_INF)
        with np.errstate(invalid="ignore"):
            return np.where(self.second >= 0, b - s, np.where(self.best >= 0, np.inf, NEG_INF))

    def predicted_counts(self) -> np.ndarray:
        """Estimated number of unplaced project items whose best anchor is each anchor."""
        hits = self.best[self.unresolved & (self.best >= 0)]
        return np.bincount(hits, minlength=self.n_anchors).astype(np.float64) * self.scale

    def anchor_exemplars(self, a: int) -> np.ndarray:
        """Rows standing for anchor ``a`` (sampled members, or the orphan itself)."""
        n_clusters = self.clusters.n
        if a < n_clusters:
            return np.unique(self.clusters.ex_rows[a])
        return self.orphan_rows[a - n_clusters : a - n_clusters + 1]


def build_view(
    ctx: OracleContext, space: VectorSpace, clusters: AnchorTable, sample_size: int = SAMPLE_SIZE
) -> SampleView:
    graph = ctx.graph
    block = space.block()
    b_rows = block[0]
    rows = b_rows if len(b_rows) <= sample_size else b_rows[ctx.rng.choice(len(b_rows), sample_size, replace=False)]
    ids = space.ids_of(rows)
    roots = np.asarray(graph.roots_of(ids.tolist()), dtype=np.int64)
    cluster_index = {int(r): j for j, r in enumerate(clusters.roots.tolist())}
    unplaced = (roots == ids) & ~np.isin(ids, clusters.roots)
    banned: dict[int, dict[int, float]] = {}
    banned_count = np.zeros(len(rows), dtype=np.int64)
    orphans: list[int] = []
    loose = np.flatnonzero(unplaced)
    for i, links in zip(loose.tolist(), graph.cannot_linked_many(ids[loose].tolist()), strict=True):
        if links:
            banned[i] = links
            banned_count[i] = sum(1 for r in links if r in cluster_index)
            if banned_count[i] == clusters.n:
                orphans.append(i)
    vecs = space.vec(rows)  # (s, D)
    n_a = clusters.n
    c_scores = clusters.scores(vecs)  # (s, A)
    o_scores = vecs @ vecs[orphans].T if orphans else np.zeros((len(rows), 0), dtype=np.float32)
    scores = np.concatenate([c_scores, o_scores], axis=1).astype(np.float32)
    orphan_index = {int(ids[i]): n_a + k for k, i in enumerate(orphans)}
    unresolved = unplaced.copy()
    unresolved[orphans] = False
    if ctx.busy:
        # Items out with annotators are being resolved: not predicted, placed or counted again.
        unresolved &= ~np.isin(ids, np.fromiter(ctx.busy, dtype=np.int64, count=len(ctx.busy)))
    scores[~unresolved] = NEG_INF
    for i, links in banned.items():
        for r in links:
            j = cluster_index.get(r, orphan_index.get(r))
            if j is not None:
                scores[i, j] = NEG_INF
    best = np.full(len(rows), -1, dtype=np.int64)
    second = np.full(len(rows), -1, dtype=np.int64)
    if scores.shape[1]:
        order = top_k(scores, 2)  # (s, <=2): partition, not a full sort of every row
        top = np.take_along_axis(scores, order, axis=1)
        best = np.where(np.isfinite(top[:, 0]), order[:, 0], -1)
        if order.shape[1] > 1:
            second = np.where(np.isfinite(top[:, 1]), order[:, 1], -1)
    return SampleView(
        space=space,
        clusters=clusters,
        block=block,
        rows=rows,
        ids=ids,
        unresolved=unresolved,
        banned=banned_count,
        anchor_roots=np.concatenate([clusters.roots, ids[orphans]]).astype(np.int64),
        anchor_sizes=np.concatenate([clusters.sizes, np.ones(len(orphans), dtype=np.int64)]),
        orphan_rows=rows[orphans],
        scores=scores,
        best=best,
        second=second,
        scale=space.n / max(len(rows), 1),
    )


class GridBuilder:
    """Collects candidates for one reference cluster, enforcing the grid rules."""

    def __init__(self, graph: KnowledgeGraph, space: VectorSpace, anchor_item: int, n: int,
                 busy: frozenset[int] = frozenset()) -> None:
        self.graph = graph
        self.busy = busy  # items in grids out with annotators: offered on the relaxed pass only
        self.space = space
        self.anchor_item = anchor_item  # any member of the reference's cluster
        self.n = n
        self.items: list[int] = []
        self.kinds: list[bool] = []  # True: "likely" pick, False: "boundary" pick
        self._roots: set[int] = {graph.find(anchor_item)}
        self._vecs: list[np.ndarray] = []

    @property
    def full(self) -> bool:
        return len(self.items) >= self.n

    def offer(self, item: int, row: int, likely: bool, strict: bool = True) -> bool:
        if self.full:
            return False
        g = self.graph
        root = g.find(item)
        if root in self._roots or g.relation(self.anchor_item, item) != 0:
            return False
        if strict and item in self.busy:
            return False
        # Candidates implied relative to each other (a cannot-link between them) waste part of
        # the answer: allowed only on the relaxed pass.
        if strict and any(g.relation(item, other) != 0 for other in self.items):
            return False
        v = self.space.vec(np.asarray([row]))[0]
        if self._vecs and float(np.max(np.stack(self._vecs) @ v)) >= self.space.dup_threshold:
            return False
        self.items.append(item)
        self.kinds.append(likely)
        self._roots.add(root)
        self._vecs.append(v)
        return True

    def offer_rows(self, rows: np.ndarray, likely: bool, limit: int | None = None, strict: bool = True) -> int:
        added = 0
        ids = self.space.ids_of(np.asarray(rows, dtype=np.int64))
        for item, row in zip(ids.tolist(), np.asarray(rows).tolist(), strict=True):
            if self.full or (limit is not None and added >= limit):
                break
            added += self.offer(int(item), int(row), likely, strict)
        return added

    def candidate_vectors(self) -> np.ndarray:
        return np.stack(self._vecs) if self._vecs else np.zeros((0, self.space.dim), np.float32)


def pick_reference(view: SampleView, anchor: int, builder: GridBuilder) -> int:
    """The anchor's most typical confirmed exemplar (see :func:`typical_exemplar`)."""
    return int(view.space.ids_of(np.asarray([typical_exemplar(view, anchor, builder.graph)]))[0])


def typical_exemplar(view: SampleView, anchor: int, graph: KnowledgeGraph) -> int:
    """Row of the member that stands for a cluster wherever one is shown (as a reference or as a
    candidate): the most typical exemplar (highest mean cosine to the others) among those that
    more than one positive pair holds in the graph, else among all.

    Not the member most like the other items of the grid, nor a member a single answer put there:
    after a wrong answer a cluster holds a stray member of another kind, that stray is the member
    most like its own kind's items, and showing it would pull its whole kind into the cluster, one
    grid at a time (measured: with 20% wrong marks, one unanimous wrong answer let a cluster of
    T-shirts fill with trousers)."""
    ex = view.anchor_exemplars(anchor)
    if len(ex) == 1:
        return int(ex[0])
    ids = view.space.ids_of(ex)
    confirmed = np.asarray([sum(v > 0 for v in graph.neighbours(int(i)).values()) >= 2 for i in ids])
    if not confirmed.any():
        confirmed[:] = True
    vecs = view.space.vec(ex)
    sims = vecs @ vecs.T  # (E, E)
    np.fill_diagonal(sims, 0.0)
    typical = np.where(confirmed, sims.sum(axis=1), -np.inf)
    return int(ex[int(np.argmax(typical))])


def finish_task(ctx: OracleContext, reference: int, builder: GridBuilder, gold: dict[int, bool] | None) -> TaskSpec:
    """Check the rules one last time, mix in controls, shuffle (positions carry no signal)."""
    cands = [c for c in builder.items if c != reference and ctx.graph.relation(reference, c) == 0]
    if not cands:
        raise NoTaskAvailable(f"no candidate with an unknown relation to item {reference}")
    if gold:
        gold = {c: v for c, v in gold.items() if c != reference and c not in cands}
        # Controls replace the last picks (the least informative) so that a control task has
        # exactly as many candidates as any other; one ordinary candidate always stays.
        gold = dict(list(gold.items())[: len(cands) - 1])
        if gold:
            cands = cands[: len(cands) - len(gold)] + list(gold)
    order = ctx.rng.permutation(len(cands))
    return TaskSpec(reference=int(reference), candidates=[int(cands[i]) for i in order], gold=gold or None)


def want_gold(ctx: OracleContext) -> bool:
    return ctx.gold_rate > 0 and ctx.n_candidates >= 2 and ctx.rng.random() < ctx.gold_rate


def gold_for(ctx: OracleContext, reference: int, exclude: list[int]) -> dict[int, bool] | None:
    n_gold = 1 if ctx.n_candidates < 4 or ctx.rng.random() < 0.5 else 2
    pairs = gold_pairs(ctx, cache_of(ctx), reference, set(exclude) | {reference}, n_gold)
    return pairs or None


def gold_anchor(ctx: OracleContext, view: SampleView, preferred_anchor: int | None) -> tuple[int, int] | None:
    """``(reference, anchor index or -1)`` for a control task: a reference with control pairs,
    preferably a member of ``preferred_anchor``."""
    preferred: list[int] = []
    if preferred_anchor is not None and preferred_anchor >= 0:
        preferred = view.space.ids_of(view.anchor_exemplars(preferred_anchor)).tolist()
    ref = gold_reference(ctx, cache_of(ctx), preferred)
    if ref is None:
        return None
    root = ctx.graph.find(ref)
    hits = np.flatnonzero(view.anchor_roots == root)
    return ref, int(hits[0]) if len(hits) else -1


def random_unimplied(ctx: OracleContext, tries: int = 64) -> TaskSpec:
    """Uniform reference and candidates, skipping implied pairs (used when no vectors exist)."""
    ids = ctx.item_ids
    n_items = len(ids)
    if n_items < 2:
        raise NoTaskAvailable(f"a task needs at least 2 items, the project has {n_items}")
    g = ctx.graph
    for _ in range(tries):
        ref = int(ids[int(ctx.rng.integers(n_items))])
        picked = ctx.rng.choice(n_items, size=min(n_items, 8 * ctx.n_candidates + 8), replace=False)
        cands: list[int] = []
        roots = {g.find(ref)}
        for i in picked.tolist():
            c = int(ids[i])
            r = g.find(c)
            if r in roots or g.relation(ref, c) != 0:
                continue
            cands.append(c)
            roots.add(r)
            if len(cands) >= ctx.n_candidates:
                break
        if cands:
            order = ctx.rng.permutation(len(cands))
            return TaskSpec(reference=ref, candidates=[cands[i] for i in order])
    raise NoTaskAvailable("no pair with an unknown relation was found")
