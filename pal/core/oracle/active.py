"""The default oracle: grow the thinnest known cluster with items that belong to no cluster yet.

The paper's active loop ("pick the class with the fewest items resolved against it; ask 'same as
c?' for unknown items predicted as c; positives join c, negatives get cannot-links to all of c"),
made to work without knowing the classes in advance:

1. *Anchors* are the known clusters plus orphans (unplaced items cannot-linked to every known
   cluster: evidence of a kind that has no cluster yet; they act as clusters of one).
2. A sample of items is scored against every anchor (best cosine to a few sampled members);
   each unplaced item is *predicted* to its best allowed anchor (cannot-links rule anchors out).
3. The anchor with the lowest coverage, ``size / (size + predicted unplaced items)``, is grown:
   the grid mixes *likely* picks (unplaced items predicted to it, drawn at random over its whole
   predicted region, as the paper does, rather than its nearest neighbours, which mostly confirm
   what the embedding already knows) and *boundary* picks (unplaced items for which it is the
   close runner-up: each answer either places the item or separates two clusters the embedding
   confuses), plus at most one *merge probe* (a member of another anchor whose relation to this
   one is unknown and that looks alike: one click merges or separates two whole clusters).
   The split between likely and boundary picks aims at ``ctx.target_match_share`` using the
   observed match rates of each kind.
4. *Placement grids* come first when an unplaced item is cannot-linked to at least half of the
   known clusters (a *suspect*), and, one task in three while they keep finding new clusters, for
   the most novel unplaced item of the denser half of the sample (*discovery*): the item is the
   reference, shown with a member of each of its nearest allowed clusters and with its own
   nearest neighbours, so one answer places it or starts a new cluster ("same as class c?" for
   several c at once). Discovery stops after three grids in a row that found nothing new.
   Before discovery, a *fragment check* (``fragments``): a cluster cannot-linked to at least half
   of the others but never compared with some of them, or never compared with one of its two
   most alike clusters, is asked against those (one kind split over two clusters, which the
   exported labels would count wrong as a whole).
5. Without any anchor (a fresh project) a random item is the reference and the grid is its
   nearest neighbours, near ones for matches, farther ones for outliers.

The reference of a growing grid is the cluster's most typical sampled member, never the one most
like the candidates (see :func:`~pal.core.oracle.common.pick_reference`).

Measured: concentric-circles toy (``toy``, 100 draws) below the paper's active curve at every
checkpoint. Fashion-MNIST 10k with a fixed PCA-64 embedding: ``research/oracle_experiments*.md``
(``python -m research.oracle_experiments``); through the whole system, with the trainer:
``research/label_efficiency.md``. With 20% wrong marks the remedy is redundancy (three answers per
grid: the graph counts a pair only when 3/4 of its votes agree) plus a few known labels (three
per class, ``services.known_labels``); the fragment check and the export's use of split votes
(``pal.core.graph.KnowledgeGraph.cluster_assignment``) recover much of the rest.

Every candidate has an unknown relation to the reference at issue time (see ``common``).
"""

from __future__ import annotations

import numpy as np

from pal.core.oracle.base import NoTaskAvailable, OracleContext, TaskSpec
from pal.core.oracle.common import (
    SAMPLE_SIZE,
    GridBuilder,
    SampleView,
    build_view,
    cache_of,
    finish_task,
    gold_anchor,
    gold_for,
    pick_reference,
    random_unimplied,
    selecting,
    want_gold,
)
from pal.core.oracle.fragments import fragment_check, fragment_grid
from pal.core.oracle.neighbours import top_k
from pal.core.oracle.placement import contest_grid


def likely_count(ctx: OracleContext, n: int) -> int:
    """How many of ``n`` picks should be "likely" ones to reach the target match share, given the
    observed match rates of likely and boundary picks."""
    p_likely, p_boundary = cache_of(ctx).match_rates.rates()
    t = float(np.clip(ctx.target_match_share, 0.0, 1.0))
    # Too little contrast between the two kinds to steer by: take the share literally.
    spread = p_likely - p_boundary
    k = round(n * t) if spread < 0.1 else round(n * (t - p_boundary) / spread)
    return int(np.clip(k, 1, n))


class ActiveOracle:
    name = "active"

    def __init__(self, sample_size: int = SAMPLE_SIZE, blas_threads: int | None = 1) -> None:
        self.sample_size = sample_size
        # Selections are small matmuls: one BLAS thread is faster (see ``blas``); None: leave as is.
        self.blas_threads = blas_threads

    def select(self, ctx: OracleContext) -> TaskSpec:
        graph = ctx.graph
        with selecting(ctx, self.blas_threads) as space:
            if space is None:
                return random_unimplied(ctx)
            cache = cache_of(ctx)
            cache.match_rates.update(graph)
            view = build_view(ctx, space, cache.anchors(graph, space, ctx.rng), self.sample_size)
            anchor = choose_anchor(view, ctx.rng)
            gold_ref: int | None = None
            if want_gold(ctx):
                picked = gold_anchor(ctx, view, anchor)
                if picked is not None:
                    gold_ref, anchor = picked
            cache.discovery.update(graph)
            cache.discovery.tick()
            placing = fragment = -1
            others: list[int] = []
            if gold_ref is None:
                placing = choose_suspect(ctx, view)
                if placing < 0:
                    fragment, others = fragment_check(view, ctx, cache.fragment_checks)
                if placing < 0 and fragment < 0 and cache.discovery.open and view.n_anchors > 0:
                    placing = choose_novel(view)
            if placing >= 0:
                builder = contest_grid(ctx, view, placing, anchor_slots=ctx.n_candidates // 2)
                ref = int(view.ids[placing])
            elif fragment >= 0:
                builder, ref = fragment_grid(ctx, view, fragment, others, cache.fragment_checks)
            elif anchor >= 0:
                builder, ref = grow(ctx, view, anchor, ref=gold_ref)
            else:
                builder, ref = discover(ctx, view, ref=gold_ref)
            if not builder.items:
                if gold_ref is not None:
                    raise NoTaskAvailable(f"no candidate with an unknown relation to item {gold_ref}")
                return random_unimplied(ctx)
            gold = gold_for(ctx, ref, builder.items) if gold_ref is not None else None
            likely = [c for c, k in zip(builder.items, builder.kinds, strict=True) if k]
            boundary = [c for c, k in zip(builder.items, builder.kinds, strict=True) if not k]
            if placing >= 0:
                cache.discovery.record(ref, boundary, likely)
            else:
                cache.match_rates.record(ref, likely, boundary)
            return finish_task(ctx, ref, builder, gold)


def choose_novel(view: SampleView) -> int:
    """Sample index of the unplaced item least like every anchor, among the denser half of the
    sample (a lone odd image is not a new kind), or -1. Discovery: the paper's loop starts with
    one item per class; a project without labels has to find them with grids."""
    loose = np.flatnonzero(view.unresolved)
    if len(loose) < 2:
        return -1
    vecs = view.space.vec(view.rows[loose])
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    k = min(8, len(loose) - 1)
    density = np.partition(sims, len(loose) - k, axis=1)[:, -k:].mean(axis=1)
    scores = view.scores[loose]
    novelty = np.where(np.isfinite(scores), scores, -np.inf).max(axis=1)
    dense = density >= np.median(density)
    pick = np.flatnonzero(dense)[int(np.argmin(novelty[dense]))]
    return int(loose[pick])


def choose_suspect(ctx: OracleContext, view: SampleView) -> int:
    """Sample index of the unplaced item with the strongest evidence of belonging to no known
    cluster: cannot-linked to at least half of them (all of them: an orphan); -1 if none.

    Such an item is placed with one grid: a member of each cluster it may still belong to, and
    its nearest neighbours, which join it in a new cluster when it is a new kind. An item already
    asked about this way (as many edges as a grid) is not retried: it may be a kind of one."""
    n_clusters = view.clusters.n
    placeable = view.unresolved | np.isin(view.rows, view.orphan_rows)
    if ctx.busy:
        placeable &= ~np.isin(view.ids, np.fromiter(ctx.busy, dtype=np.int64, count=len(ctx.busy)))
    share = view.banned / max(n_clusters, 1)
    ok = placeable & (view.banned > 0) & (share >= 0.5)
    order = np.flatnonzero(ok)
    if not len(order):
        return -1
    order = order[np.lexsort((ctx.rng.random(len(order)), -view.banned[order], -share[order]))]
    for i in order[:16].tolist():
        if len(ctx.graph.neighbours(int(view.ids[i]))) < view.banned[i] + ctx.n_candidates:
            return int(i)
    return -1


def choose_anchor(view: SampleView, rng: np.random.Generator) -> int:
    """The anchor whose knowledge is thinnest: lowest ``size / (size + predicted unplaced)``,
    among anchors that still have unplaced items to ask about; -1 when there is none."""
    if view.n_anchors == 0 or not view.unresolved.any():
        return -1
    predicted = view.predicted_counts()
    eligible = predicted > 0
    if not eligible.any():
        # No item is predicted to any anchor: fall back to anchors that are at least allowed.
        eligible = (np.isfinite(view.scores) & view.unresolved[:, None]).any(axis=0)
        if not eligible.any():
            return -1
    coverage = view.anchor_sizes / (view.anchor_sizes + predicted)
    coverage = np.where(eligible, coverage, np.inf)
    best = np.flatnonzero(coverage == coverage.min())
    return int(rng.choice(best))


def grow(ctx: OracleContext, view: SampleView, anchor: int, ref: int | None = None) -> tuple[GridBuilder, int]:
    """Grid for one anchor: likely picks, boundary picks, a merge probe; then the reference."""
    n = ctx.n_candidates
    rng = ctx.rng
    space = view.space
    anchor_item = int(view.anchor_roots[anchor])
    builder = GridBuilder(ctx.graph, space, ref if ref is not None else anchor_item, n, ctx.busy)
    unresolved = view.unresolved
    scores = view.scores[:, anchor]
    allowed = unresolved & np.isfinite(scores)
    predicted = allowed & (view.best == anchor)
    n_likely = likely_count(ctx, n - 1 if n > 2 else n)

    # Likely: uniform over the predicted region (the paper's choice), so that matches extend the
    # cluster where the embedding has not been confirmed yet.
    # (Measured on the concentric-circles toy: uniform beats the highest-scoring items, and an
    # even mix of both, at every checkpoint.)
    likely_rows = view.rows[predicted]
    likely_rows = likely_rows[rng.permutation(len(likely_rows))]
    if len(likely_rows) < 2 * n:
        likely_rows = np.concatenate([likely_rows, _searched(ctx, view, anchor)])
    builder.offer_rows(likely_rows, True, limit=n_likely)

    # Merge probe: another anchor, relation unknown, as similar as the likely picks.
    _offer_merge_probe(ctx, view, anchor, builder)

    # Boundary: items for which this anchor is the runner-up, closest contest first.
    contest = allowed & ~predicted & (view.best >= 0)
    idx = np.flatnonzero(contest)
    if len(idx):
        gap = view.scores[idx, view.best[idx]] - scores[idx]
        builder.offer_rows(view.rows[idx[np.argsort(gap, kind="stable")]], False)
    # Fill: more likely picks, then anything allowed, then relax the pairwise rule.
    builder.offer_rows(likely_rows, True)
    rest = np.flatnonzero(allowed)
    builder.offer_rows(view.rows[rest[np.argsort(-scores[rest], kind="stable")]], False)
    if not builder.full:
        builder.offer_rows(likely_rows, True, strict=False)
        builder.offer_rows(view.rows[rest], False, strict=False)
    if ref is None:
        ref = pick_reference(view, anchor, builder)
    return builder, ref


def _searched(ctx: OracleContext, view: SampleView, anchor: int) -> np.ndarray:
    """Rows near the anchor's exemplars in the current block, for when the sample holds too few
    items predicted to it (a rare kind in a large project). One query, the exemplars' mean
    direction: one pass over the block."""
    centre = view.space.vec(view.anchor_exemplars(anchor)).mean(axis=0, keepdims=True)
    rows, _ = view.space.search(centre, 8 * ctx.n_candidates, view.block)
    return rows[0][ctx.rng.permutation(rows.shape[1])]


def _offer_merge_probe(ctx: OracleContext, view: SampleView, anchor: int, builder: GridBuilder) -> None:
    if view.n_anchors < 2 or builder.full:
        return
    space = view.space
    mine = space.vec(view.anchor_exemplars(anchor))  # (E, D)
    # Similarity of this anchor to every other: best exemplar pair (clusters), or to the orphan.
    sims = np.concatenate([view.clusters.scores(mine).max(axis=0), (mine @ space.vec(view.orphan_rows).T).max(axis=0)])
    sims[anchor] = -np.inf
    likely_vecs = builder.candidate_vectors()
    floor = float(np.min(likely_vecs @ mine.T)) if len(likely_vecs) else -np.inf
    anchor_item = int(view.anchor_roots[anchor])
    for a in top_k(sims[None, :], 3)[0].tolist():
        if sims[a] < floor:
            break
        if ctx.graph.relation(anchor_item, int(view.anchor_roots[a])) != 0:
            continue
        ex = view.anchor_exemplars(a)
        row = int(ex[int(np.argmax((space.vec(ex) @ mine.T).max(axis=1)))])
        if builder.offer(int(space.ids_of(np.asarray([row]))[0]), row, True):
            return


def discover(ctx: OracleContext, view: SampleView, ref: int | None = None) -> tuple[GridBuilder, int]:
    """A fresh reference and its neighbourhood: nearest neighbours as likely matches, farther
    ones as likely outliers."""
    n = ctx.n_candidates
    space = view.space
    if ref is None:
        pool = view.rows[view.unresolved] if view.unresolved.any() else view.rows
        ref_row = int(pool[int(ctx.rng.integers(len(pool)))])
        ref = int(space.ids_of(np.asarray([ref_row]))[0])
    else:
        ref_row = int(space.rows_of([ref])[0])
    builder = GridBuilder(ctx.graph, space, ref, n, ctx.busy)
    rows, _ = space.search(space.vec(np.asarray([ref_row])), 8 * n + 1, view.block)
    ranked = rows[0][rows[0] != ref_row]
    n_likely = likely_count(ctx, n)
    builder.offer_rows(ranked[: 2 * n], True, limit=n_likely)
    far = ranked[2 * n :]
    builder.offer_rows(far[ctx.rng.permutation(len(far))], False)
    builder.offer_rows(ranked, True)
    if not builder.full:
        builder.offer_rows(ranked, True, strict=False)
    return builder, ref
