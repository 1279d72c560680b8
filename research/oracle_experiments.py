"""Oracle experiments without a server or a trainer: a fixed embedding, simulated answers, the
knowledge graph and the exported-label rule, so a strategy can be compared in seconds.

    python -m research.oracle_experiments --data demo/fashion-mnist-demo.npz --budgets 100,300,1000 --seeds 3

What is fixed: the items (the label-efficiency benchmark's subset), the embedding (PCA of the
pixels, 64 dimensions: about what the trainer's first SSL version gives on Fashion-MNIST, and the
same for every strategy), the grid size. What varies: the strategy. Each answer marks every
candidate from the hidden labels, flipped with ``--error-rate``, and goes straight into a
:class:`pal.core.graph.KnowledgeGraph`; at each budget the labels are what the export gives
(:meth:`~pal.core.graph.KnowledgeGraph.cluster_assignment` with the embedding) scored on the training
pool with :func:`pal.metrics.label_accuracy`. The embedding never improves here, so the numbers
isolate what the oracle's choice of grids is worth.

Strategies: the server's oracles by name (``random``, ``active``, ``uncertainty``); ``discovery``:
:class:`DiscoveryFirst`, a prototype that adds an explicit class-discovery phase in front of
``active``; and any of them with ``+confirm`` (:class:`ConfirmMerges`: check every merge of two
known clusters with one grid across them), ``+core`` (:class:`CoreReference`: never show a
member with a single positive vote as the reference) and/or ``+verify`` (:class:`VerifyWeak`:
re-ask weakly attached members against their cluster's core) and/or ``+recheck``
(:class:`RecheckLookalikes`: ask again, with one full grid, whether two look-alike clusters kept
apart by a single pair are one kind). See the docstrings.

``--known-per-class K`` gives K training items of each class as known labels before the first
grid, as the server does with ``POST /projects/{id}/known-labels``
(:func:`known_label_edges`: the same edges and weights).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pal import metrics
from pal.core.graph import KnowledgeGraph
from pal.core.known_labels import KNOWN_LABEL_WEIGHT, known_label_pairs
from pal.core.oracle import Oracle, OracleCache, OracleContext, TaskSpec, get_oracle
from pal.core.oracle.base import NoTaskAvailable
from pal.core.oracle.common import space_for
from pal.core.oracle.neighbours import VectorSpace
from research.behaviour import behaviour
from research.label_efficiency import load_dataset, machine

log = logging.getLogger("research.oracle_experiments")

ROOT = Path(__file__).resolve().parent.parent


def pca_embedding(images: np.ndarray, dim: int = 64) -> np.ndarray:
    """Rows of ``images`` projected on their top ``dim`` principal components (float32)."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    x -= x.mean(axis=0)
    _, vecs = np.linalg.eigh(x.T @ x)  # ascending eigenvalues
    return (x @ vecs[:, ::-1][:, :dim]).astype(np.float32)


class DiscoveryFirst:
    """Prototype: ``active`` with an explicit class-discovery phase first.

    A *discovery grid* takes as reference the most novel unplaced item (lowest best cosine to the
    exemplars of every known cluster, among items of at least median local density, so that a
    lone odd image is not chosen) and shows it with (a) one exemplar of each of the known clusters
    nearest to it, which places it or cannot-links it to them, and (b) its own nearest unplaced
    neighbours, which join it when it is a new kind. A discovery grid *succeeds* when the reference
    matches none of the exemplars and at least one neighbour: a new cluster, cannot-linked to its
    nearest old ones. After ``patience`` discovery grids in a row without success every grid comes
    from ``active``. The paper's loop seeds one item per class; this finds them with grids."""

    name = "discovery"

    def __init__(self, base: Oracle | None = None, patience: int = 3, sample: int = 2048, exemplars: int = 4) -> None:
        self.base = base or get_oracle("active")
        self.patience, self.sample, self.exemplars = patience, sample, exemplars
        self.failures = 0
        self.pending: list[tuple[int, list[int], list[int]]] = []  # (reference, exemplars, neighbours)

    def select(self, ctx: OracleContext) -> TaskSpec:
        self._score(ctx.graph)
        if ctx.embedding is None or self.failures >= self.patience or self.pending:
            return self.base.select(ctx)
        with ctx.graph.lock:
            return self._discover(ctx)

    def _score(self, graph: KnowledgeGraph) -> None:
        keep = []
        for ref, ex, nb in self.pending:
            if all(graph.pair_votes(ref, c) == 0 for c in ex + nb):
                keep.append((ref, ex, nb))  # not answered yet
                continue
            new_kind = all(graph.relation(ref, e) < 0 for e in ex) and any(graph.relation(ref, c) > 0 for c in nb)
            self.failures = 0 if new_kind else self.failures + 1
        self.pending = keep

    def _discover(self, ctx: OracleContext) -> TaskSpec:
        assert ctx.embedding is not None
        graph, rng, n = ctx.graph, ctx.rng, ctx.n_candidates
        emb = ctx.embedding / np.maximum(np.linalg.norm(ctx.embedding, axis=1, keepdims=True), 1e-12)
        ids = ctx.item_ids
        clusters = graph.components(min_size=2)
        placed = {m for members in clusters.values() for m in members}
        pool = np.flatnonzero(~np.isin(ids, list(placed)))
        sample = pool[rng.choice(len(pool), size=min(self.sample, len(pool)), replace=False)]
        sims = emb[sample] @ emb[sample].T  # (s, s)
        np.fill_diagonal(sims, -np.inf)
        k = min(8, len(sample) - 1)
        density = np.sort(sims, axis=1)[:, -k:].mean(axis=1)
        roots = list(clusters)
        ex_rows: list[np.ndarray] = []
        for root in roots:
            members = graph.sample_members(root, self.exemplars, rng)
            ex_rows.append(np.searchsorted(ids, members))
        if roots:
            ex = np.concatenate(ex_rows)
            owner = np.repeat(np.arange(len(roots)), [len(r) for r in ex_rows])
            novelty = (emb[sample] @ emb[ex].T).max(axis=1)
        else:
            novelty = np.zeros(len(sample), dtype=np.float32)
        dense = density >= np.median(density)
        order = np.flatnonzero(dense)[np.argsort(novelty[dense], kind="stable")]
        ref_row = int(sample[order[0]])
        ref = int(ids[ref_row])
        # (a) one exemplar of each of the nearest known clusters (at most half of the grid)
        exemplars: list[int] = []
        if roots:
            s = emb[ex] @ emb[ref_row]
            best_per_cluster = np.full(len(roots), -np.inf)
            np.maximum.at(best_per_cluster, owner, s)
            for c in np.argsort(-best_per_cluster)[: max(1, n // 2)].tolist():
                members = ex[owner == c]
                item = int(ids[members[np.argmax(emb[members] @ emb[ref_row])]])
                if graph.relation(ref, item) == 0:
                    exemplars.append(item)
        # (b) the reference's nearest unplaced neighbours
        near = pool[np.argsort(-(emb[pool] @ emb[ref_row]), kind="stable")]
        neighbours: list[int] = []
        for row in near.tolist():
            item = int(ids[row])
            if item != ref and graph.relation(ref, item) == 0:
                neighbours.append(item)
            if len(exemplars) + len(neighbours) >= n:
                break
        self.pending.append((ref, exemplars, neighbours))
        cands = exemplars + neighbours
        return TaskSpec(reference=ref, candidates=[cands[i] for i in rng.permutation(len(cands))])


class ConfirmMerges:
    """Prototype: check every merge of two known clusters once, with a grid across them.

    Under noise the costliest mistake is a false "same" between members of two big clusters: one
    click merges two classes, and the exported labels lose one of them. After each answer this
    wrapper compares the clusters with those it saw before; when a cluster now holds at least
    ``min_size`` members of each of two earlier clusters, the next grid shows a member of one as
    the reference and ``n`` members of the other as candidates (pairs the closure implies: like a
    control, a deliberate exception to "never ask what is implied"). A wrong merge then carries n
    "different" votes against one "same", and the graph's min cut splits it again; a right one is
    confirmed by n more votes."""

    def __init__(self, base: Oracle, min_size: int = 3) -> None:
        self.base, self.min_size = base, min_size
        self.name = f"{getattr(base, 'name', 'oracle')}+confirm"
        self.owner: dict[int, int] = {}  # item -> root of its cluster at the previous selection
        self.checked: set[tuple[int, int]] = set()

    def select(self, ctx: OracleContext) -> TaskSpec:
        with ctx.graph.lock:
            clusters = ctx.graph.components(min_size=2)
            check = self._merge_to_check(clusters)
            self.owner = {m: root for root, members in clusters.items() for m in members}
            if check is None:
                return self.base.select(ctx)
            a, b = check
            ref = int(a[int(ctx.rng.integers(len(a)))])
            cands = [int(x) for x in ctx.rng.choice(b, size=min(ctx.n_candidates, len(b)), replace=False)]
            return TaskSpec(reference=ref, candidates=cands)

    def _merge_to_check(self, clusters: dict[int, list[int]]) -> tuple[np.ndarray, np.ndarray] | None:
        for members in clusters.values():
            parts: dict[int, list[int]] = {}
            for m in members:
                old = self.owner.get(m)
                if old is not None:
                    parts.setdefault(old, []).append(m)
            big = sorted((p for p in parts.items() if len(p[1]) >= self.min_size), key=lambda p: -len(p[1]))
            if len(big) >= 2:
                (ra, a), (rb, b) = big[0], big[1]
                key = (min(ra, rb), max(ra, rb))
                if key not in self.checked:
                    self.checked.add(key)
                    return np.asarray(a), np.asarray(b)
        return None


class CoreReference:
    """Prototype: never show a probationary member of a cluster as the reference.

    Under noise most wrong members come from one false "same" click on an item asked once: it
    joins the cluster with a single positive vote and nothing ever contradicts it. If it later
    becomes the reference of that cluster's grids, annotators truthfully match *its* kind, and a
    whole other class is absorbed (errors propagate through the reference). This wrapper keeps the
    base oracle's grid but, when its reference has fewer than ``min_positive`` positive neighbours,
    swaps in the cluster member with the most positive neighbours among those most similar to the
    candidates. The question is the same ("same kind as this cluster?"), since a candidate's known
    relation to any member of the cluster is the same."""

    def __init__(self, base: Oracle, min_positive: int = 2, pool: int = 64) -> None:
        self.base, self.min_positive, self.pool = base, min_positive, pool
        self.name = f"{getattr(base, 'name', 'oracle')}+core"

    def select(self, ctx: OracleContext) -> TaskSpec:
        spec = self.base.select(ctx)
        graph = ctx.graph
        with graph.lock:
            if graph.component_size(spec.reference) < 2 or self._positives(graph, spec.reference) >= self.min_positive:
                return spec
            members = np.asarray(graph.members(spec.reference), dtype=np.int64)
            if ctx.embedding is not None and len(members) > self.pool:
                emb = ctx.embedding
                rows = np.searchsorted(ctx.item_ids, members)
                cand_rows = np.searchsorted(ctx.item_ids, np.asarray(spec.candidates, dtype=np.int64))
                centre = emb[cand_rows].mean(axis=0)
                members = members[np.argsort(-(emb[rows] @ centre), kind="stable")[: self.pool]]
            best = max(members.tolist(), key=lambda m: (self._positives(graph, m), -m))
            if self._positives(graph, best) < self.min_positive or best in spec.candidates:
                return spec
            return TaskSpec(reference=int(best), candidates=spec.candidates, gold=spec.gold)

    @staticmethod
    def _positives(graph: KnowledgeGraph, item: int) -> int:
        return sum(1 for v in graph.neighbours(item).values() if v > 0)


class VerifyWeak:
    """Prototype: re-ask, eight at a time, the memberships that rest on one "same" vote.

    Under noise most wrong members joined their cluster through one false "same" mark and are never
    asked about again. Every ``every``-th grid, when some cluster holds at least ``n`` members whose
    positive support (the sum of their positive pair votes) is at most one vote, this wrapper shows
    the cluster's best-supported member as the reference and ``n`` of those weak members as the
    candidates: one answer gives each of them a second, independent vote against the cluster's core
    (a "different" vote contradicts the weak link, and the graph's min cut drops it). Otherwise the
    base oracle chooses. Redundancy spent only where the graph is fragile, instead of on every grid.
    Measured (research/oracle_experiments_verify.md): better at 300 answers under 20 % errors, worse by
    1,000, where the contradictions it raises split clusters into fragments."""

    def __init__(self, base: Oracle, every: int = 2) -> None:
        self.base, self.every = base, every
        self.name = f"{getattr(base, 'name', 'oracle')}+verify"
        self.calls = 0
        self.asked: set[tuple[int, int]] = set()

    def select(self, ctx: OracleContext) -> TaskSpec:
        self.calls += 1
        if self.calls % self.every == 0:
            with ctx.graph.lock:
                spec = self._verification(ctx.graph, ctx.n_candidates)
            if spec is not None:
                return spec
        for attempt in range(3):
            try:
                return self.base.select(ctx)
            except NoTaskAvailable:
                # Contradicted links can leave the base oracle's chosen reference with no unknown
                # relation to any candidate; its next draw takes another reference.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _verification(self, graph: KnowledgeGraph, n: int) -> TaskSpec | None:
        best: tuple[int, list[int]] | None = None
        for members in graph.components(min_size=n + 1).values():
            support = {m: sum(v for v in graph.neighbours(m).values() if v > 0) for m in members}
            core = max(members, key=lambda m: (support[m], -m))
            weak = [m for m in members if support[m] <= 1.0 and m != core and (core, m) not in self.asked]
            if len(weak) >= n and (best is None or len(weak) > len(best[1])):
                best = (core, weak)
        if best is None:
            return None
        core, weak = best
        chosen = sorted(weak)[:n]
        self.asked.update((core, m) for m in chosen)
        return TaskSpec(reference=int(core), candidates=[int(m) for m in chosen])


class RecheckLookalikes:
    """Prototype: settle with one grid whether two look-alike clusters are one kind.

    Under noise, a wrong "different" mark between a new item and a member of its own kind's
    cluster starts a *fragment* of that cluster, and the cannot-link of that one pair keeps every
    later grid from asking across it (the closure implies "different"); a fragment is an extra
    cluster, wrong for the whole kind in the export. Every ``every``-th grid, among clusters of at
    least ``min_size`` members (the ``max_clusters`` largest) that are each other's nearest cluster
    by embedding centroid and are kept apart by at most one negative pair (whatever its number of
    votes), the most alike pair not rechecked yet is shown: the most typical member of the larger
    as the reference, ``n`` typical members of the other (no near-duplicates; a full grid, or no
    recheck) as the candidates. Same kind: n "same" votes outweigh the one pair and the graph
    merges them; different kinds: n more "different" votes, and the pair is never rechecked.

    Measured (research/oracle_experiments_recheck.md, _recheck_r3.md, 6 seeds): better without
    errors (one answer per grid: 0.737 against 0.695 at 300 answers; three answers per grid: 0.748
    against 0.700 at 1,000), no better under noise (10 % errors, one answer: 0.597 against 0.632
    at 1,000; 20 % errors, three answers: 0.563 against 0.581). Every difference is about one seed
    spread or less. Not in the server: it does not help the case it was built for."""

    def __init__(self, base: Oracle, every: int = 4, min_size: int = 4, max_clusters: int = 256) -> None:
        self.base, self.every, self.min_size, self.max_clusters = base, every, min_size, max_clusters
        self.name = f"{getattr(base, 'name', 'oracle')}+recheck"
        self.calls = 0
        self.asked: set[frozenset[int]] = set()

    def select(self, ctx: OracleContext) -> TaskSpec:
        self.calls += 1
        if self.calls % self.every == 0:
            with ctx.graph.lock:
                space = space_for(ctx)
                spec = self._recheck(ctx, space) if space is not None else None
            if spec is not None:
                return spec
        return self.base.select(ctx)

    def _recheck(self, ctx: OracleContext, space: VectorSpace) -> TaskSpec | None:
        graph = ctx.graph
        clusters = sorted(graph.components(min_size=self.min_size).items(), key=lambda rm: (-len(rm[1]), rm[0]))
        clusters = clusters[: self.max_clusters]
        if len(clusters) < 2:
            return None
        vecs = [space.vec(space.rows_of(np.asarray(members, dtype=np.int64))) for _, members in clusters]
        centres = np.stack([v.mean(axis=0) for v in vecs])  # (C, D)
        centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
        sims = centres @ centres.T
        np.fill_diagonal(sims, -np.inf)
        nearest = sims.argmax(axis=1)
        # Mutual nearest pairs (i < j: i is the larger cluster, the reference's), most alike first.
        pairs = sorted(((float(sims[i, j]), i, j) for i, j in enumerate(nearest.tolist())
                        if i < j and nearest[j] == i), reverse=True)
        for _, i, j in pairs:
            key = frozenset((clusters[i][0], clusters[j][0]))
            if key in self.asked or not self._weakly_separated(graph, clusters[j][1], clusters[i][0]):
                continue
            candidates = self._typical(space, clusters[j][1], vecs[j], centres[j], ctx.n_candidates)
            if len(candidates) < ctx.n_candidates:
                continue
            self.asked.add(key)
            reference = int(clusters[i][1][int(np.argmax(vecs[i] @ centres[i]))])
            order = ctx.rng.permutation(len(candidates))
            return TaskSpec(reference=reference, candidates=[candidates[k] for k in order])
        return None

    @staticmethod
    def _weakly_separated(graph: KnowledgeGraph, members: list[int], other_root: int) -> bool:
        """At most one item pair with a negative net vote between ``members`` and ``other_root``'s cluster."""
        found = 0
        for m in members:
            for x, net in graph.neighbours(m).items():
                if net < 0 and graph.find(x) == other_root:
                    found += 1
                    if found > 1:
                        return False
        return True

    @staticmethod
    def _typical(space: VectorSpace, members: list[int], vecs: np.ndarray, centre: np.ndarray, n: int) -> list[int]:
        """Up to ``n`` members (rows of ``vecs``) closest to the centre, skipping near-duplicates of those taken."""
        chosen: list[int] = []
        kept: list[np.ndarray] = []
        for k in np.argsort(-(vecs @ centre), kind="stable").tolist():
            if kept and float(np.max(np.stack(kept) @ vecs[k])) >= space.dup_threshold:
                continue
            chosen.append(int(members[k]))
            kept.append(vecs[k])
            if len(chosen) == n:
                break
        return chosen


def make_oracle(name: str) -> Oracle:
    parts = name.split("+")
    oracle: Oracle = DiscoveryFirst() if parts[0] == "discovery" else get_oracle(parts[0])
    for extra in parts[1:]:
        if extra == "confirm":
            oracle = ConfirmMerges(oracle)
        elif extra == "core":
            oracle = CoreReference(oracle)
        elif extra == "verify":
            oracle = VerifyWeak(oracle)
        elif extra == "recheck":
            oracle = RecheckLookalikes(oracle)
        else:
            raise SystemExit(f"unknown strategy modifier +{extra}; use +confirm, +core, +verify or +recheck")
    return oracle


AGGREGATES = ("all", "unanimous")


def known_label_edges(known: dict[int, Any]) -> list[tuple[int, int, int, float]]:
    """``(src, dst, sign, weight)`` for known labels ``{item id: label}`` given in this order,
    with the server's rule (:func:`pal.core.known_labels.known_label_pairs`)."""
    return [(src, dst, sign, KNOWN_LABEL_WEIGHT) for src, dst, sign in known_label_pairs([], known.items())]


def pick_known(labels: np.ndarray, train: np.ndarray, per_class: int, seed: int) -> dict[int, int]:
    """``{item id: label}``: ``per_class`` training items of each class (ids are rows + 1)."""
    rng = np.random.default_rng([seed, 7])
    known: dict[int, int] = {}
    for c in np.unique(labels[train]):
        pool = train[labels[train] == c]
        for row in rng.choice(pool, min(per_class, len(pool)), replace=False).tolist():
            known[int(row) + 1] = int(c)
    return known


def run_strategy(name: str, emb: np.ndarray, labels: np.ndarray, train: np.ndarray, budgets: list[int],
                 error_rate: float, seed: int, n: int = 8, redundancy: int = 1,
                 aggregate: str = "all", known_per_class: int = 0) -> dict[str, Any]:
    """Answers until ``budgets[-1]``: each grid answered ``redundancy`` times (annotators 1..r, marks
    flipped independently); ``aggregate`` "all" feeds every vote to the graph (what the server does),
    "unanimous" drops the pairs the r votes disagree on (an experiment: split pairs attach no one)."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    ids = np.arange(1, len(labels) + 1, dtype=np.int64)
    graph, cache = KnowledgeGraph(), OracleCache(seed=seed)
    oracle = make_oracle(name)
    rng = np.random.default_rng([seed, 11])
    edge_id = answers = t = 0
    for src, dst, sign, weight in known_label_edges(pick_known(labels, train, known_per_class, seed)):
        edge_id += 1
        graph.add_edge(edge_id, src, dst, sign, weight)
    points: list[dict[str, Any]] = []
    started = time.perf_counter()
    select_s = 0.0
    while answers < budgets[-1]:
        t += 1
        ctx = OracleContext(n_candidates=n, item_ids=ids, graph=graph, rng=np.random.default_rng([seed, t]),
                            embedding=emb, embedding_version=1, cache=cache)
        t0 = time.perf_counter()
        spec = oracle.select(ctx)
        select_s += time.perf_counter() - t0
        ref = spec.reference
        truth = np.array([labels[ref - 1] == labels[c - 1] for c in spec.candidates])
        votes = [truth != (rng.random(len(truth)) < error_rate) for _ in range(redundancy)]  # (r, n) bools
        answers += redundancy
        for j, c in enumerate(spec.candidates):
            column = [bool(v[j]) for v in votes]
            if aggregate == "unanimous" and len(set(column)) > 1:
                continue
            for annotator, same in enumerate(column, start=1):
                edge_id += 1
                graph.add_edge(edge_id, ref, c, 1 if same else -1, 1.0, annotator if redundancy > 1 else None)
        while len(points) < len(budgets) and answers >= budgets[len(points)]:  # every budget just reached
            assigned, _ = graph.cluster_assignment(ids, emb)
            accuracy = metrics.label_accuracy(assigned[train], labels[train])
            points.append({"answers": answers, "label_accuracy": accuracy,
                           "clusters": len(graph.components(min_size=2))})
    return {"strategy": name, "seed": seed, "error_rate": error_rate, "redundancy": redundancy,
            "known_per_class": known_per_class, "aggregate": aggregate, "points": points,
            "select_ms": 1000 * select_s / t, "wall_s": time.perf_counter() - started}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m research.oracle_experiments", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "demo" / "fashion-mnist-demo.npz")
    p.add_argument("--budgets", default="100,300,1000")
    p.add_argument("--strategies", default="random,active,discovery")
    p.add_argument("--error-rates", default="0,0.1")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--redundancy", type=int, default=1, help="answers per grid (independent annotators)")
    p.add_argument("--aggregates", default="all", help=f"comma-separated, of {AGGREGATES} (see run_strategy)")
    p.add_argument("--known-per-class", type=int, default=0, help="known labels per class, given before any grid")
    p.add_argument("--max-train-items", type=int, default=10_000)
    p.add_argument("--max-test-items", type=int, default=2_000)
    p.add_argument("--out", type=Path, default=ROOT / "research" / "oracle_experiments")
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    budgets = [int(b) for b in args.budgets.split(",")]
    data = load_dataset(args.data, args.max_train_items, args.max_test_items)
    emb = pca_embedding(data.images)
    train = np.flatnonzero(~data.is_test)
    runs = []
    variants = [(name, agg) for name in args.strategies.split(",") for agg in args.aggregates.split(",")]
    for e in (float(x) for x in args.error_rates.split(",")):
        for name, agg in variants:
            for seed in range(args.seeds):
                r = run_strategy(name, emb, data.labels, train, budgets, e, seed, redundancy=args.redundancy,
                                 aggregate=agg, known_per_class=args.known_per_class)
                log.info("%s (%s votes) error %g seed %d: %s (%.0f ms/selection)", name, agg, e, seed,
                         ", ".join(f"{q['answers']}: {q['label_accuracy']:.3f}/{q['clusters']}" for q in r["points"]),
                         r["select_ms"])
                runs.append(r)
    info, tag = machine(), behaviour()
    lines = [
        "# Oracle experiments (fixed embedding, no trainer)", "",
        f"Data: `{args.data.name}`, {len(train)} training + {int(data.is_test.sum())} test images; embedding: "
        f"PCA-64 of the pixels; {args.seeds} seeds, mean ± std of the exported labels' accuracy (number of "
        f"known clusters); each grid answered {args.redundancy} time(s); "
        f"{args.known_per_class} known label(s) per class. "
        f"Machine: {info['cpu']}, {info['cores']} cores (load average {info['load_average'][0]}); "
        f"behaviour (replay fingerprint, `python -m pal.core.replay`) {tag['replay']}.", "",
        "| error | strategy | " + " | ".join(f"T = {b}" for b in budgets) + " | ms per selection |",
        "|---|---|" + "---|" * len(budgets) + "---|",
    ]
    for e in sorted({r["error_rate"] for r in runs}):
        for name, agg in variants:
            rs = [r for r in runs if r["strategy"] == name and r["aggregate"] == agg and r["error_rate"] == e]
            cells = []
            for i in range(len(budgets)):
                acc = np.array([r["points"][i]["label_accuracy"] for r in rs])
                cl = np.mean([r["points"][i]["clusters"] for r in rs])
                cells.append(f"{acc.mean():.3f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.3f} ({cl:.0f})")
            ms = np.mean([r["select_ms"] for r in rs])
            label = name if agg == "all" else f"{name}, {agg} votes only"
            lines.append(f"| {e:g} | {label} | " + " | ".join(cells) + f" | {ms:.0f} |")
    lines += ["", f"Reproduce: `python -m research.oracle_experiments --data {args.data} --budgets {args.budgets} "
              f"--strategies {args.strategies} --seeds {args.seeds} --error-rates {args.error_rates} "
              f"--redundancy {args.redundancy} --aggregates {args.aggregates} "
              f"--known-per-class {args.known_per_class}`", ""]
    args.out.with_suffix(".json").write_text(json.dumps({"runs": runs, "machine": info, "behaviour": tag}, indent=1))
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
