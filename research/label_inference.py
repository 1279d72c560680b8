"""Label inference (a study, not yet PAL's export): each item's kind as a probability, from every
vote, each annotator's reliability and the embedding.

    PAL_LE_SNAPSHOTS=var/snap python -m research.label_efficiency ...   # keep what the export saw
    python -m research.label_inference var/snap/*.npz                   # the export vs this model

What it found is in ``research/label_inference.md``.

Why not the clusters alone: with one answer per grid and 10 % wrong marks, a "same" mark is far
less reliable than its annotator. Most candidates of an active grid are of another kind, so the
few marks flipped to "same" are a large share of all the "same" marks (about 4 in 10 in the
table's runs), and the closure of the positive pairs joins kinds. A "different" mark stays right
about 19 times in 20. A probabilistic model weighs each mark by how likely it is to be right
*given everything else*: the other marks and what the embedding says.

Model (a Potts model on the items, fitted by mean field):

- each item ``i`` has a hidden kind ``z_i`` in ``0..K-1``, seeded by the graph's clusters;
- the embedding is the prior: an item tends to share the kind of its ``k`` nearest neighbours
  (label propagation over the cosine kNN graph);
- a mark on pair ``(i, j)`` by annotator ``a`` is right with probability ``rho_a`` (one-coin
  Dawid-Skene on pair questions): ``P(same | z_i = z_j) = rho_a``, ``P(same | z_i != z_j) =
  1 - rho_a``. Known-label pairs are right with probability ``KNOWN_RHO``;
- ``rho_a`` is re-estimated from the expected share of the annotator's marks that are right, with
  a Beta prior (so a newcomer with a few marks is neither trusted nor silenced). An annotator
  marking at random converges to 0.5, where their marks weigh nothing.

The posterior ``q_i`` gives the label (its arg max) and the confidence (its max).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pal import metrics
from pal.core.clusters import Clusters
from pal.core.edges import EdgeKind, EdgeRecord
from pal.core.graph import KnowledgeGraph
from pal.core.replica import GraphReplica
from pal.core.votes import VoteBook

KNOWN_RHO = 0.995
# Beta prior on an annotator's accuracy: 8 right marks in 10, as weak as a dozen marks.
PRIOR_RIGHT, PRIOR_WRONG = 8.0, 2.0
RHO_FLOOR, RHO_CEIL = 0.5, 0.995
EPS = 1e-6


@dataclass
class Inference:
    labels: np.ndarray  # (N,) int64, -1: no label
    confidence: np.ndarray  # (N,) float32
    posterior: np.ndarray  # (N, K) float32
    accuracy: dict[int, float] = field(default_factory=dict)  # annotator id -> estimated rho
    marks: dict[int, int] = field(default_factory=dict)  # annotator id -> live marks


@dataclass
class EdgeArrays:
    """Live edges whose both ends are among the items, as rows."""

    a: np.ndarray  # (E,) row of src
    b: np.ndarray  # (E,) row of dst
    sign: np.ndarray  # (E,) +1 / -1
    weight: np.ndarray  # (E,) the edge's own weight (multiplicity)
    who: np.ndarray  # (E,) index into annotators, -1 for known-label pairs
    annotators: list[int]


def edge_arrays(votes: VoteBook, row_of: dict[int, int]) -> EdgeArrays:
    annotators: dict[int, int] = {}
    a, b, s, w, who = [], [], [], [], []
    for e in votes.edges.values():
        ra, rb = row_of.get(e.src), row_of.get(e.dst)
        if ra is None or rb is None:
            continue
        a.append(ra)
        b.append(rb)
        s.append(e.sign)
        w.append(e.weight)
        if e.kind is EdgeKind.KNOWN:
            who.append(-1)
        else:
            key = -2 if e.annotator_id is None else int(e.annotator_id)
            who.append(annotators.setdefault(key, len(annotators)))
    return EdgeArrays(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64),
                      np.asarray(s, dtype=np.float64), np.asarray(w, dtype=np.float64),
                      np.asarray(who, dtype=np.int64), list(annotators))


def knn_graph(emb: np.ndarray, k: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """``(neighbours (N, k) int64, weights (N, k) float64)``: cosine kNN, self excluded, weights
    ``max(cos, 0)`` normalised per row."""
    n = emb.shape[0]
    k = max(1, min(k, n - 1))
    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    nb = np.zeros((n, k), dtype=np.int64)
    wt = np.zeros((n, k), dtype=np.float64)
    xt = np.ascontiguousarray(x.T)
    for s in range(0, n, block):
        sims = x[s : s + block] @ xt  # (b, N)
        rows = np.arange(s, min(s + block, n))
        sims[rows - s, rows] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        nb[rows] = top
        wt[rows] = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0)
    wt /= np.maximum(wt.sum(axis=1, keepdims=True), 1e-12)
    return nb, wt


def seed_posterior(clusters: Clusters, item_ids: np.ndarray, row_of: dict[int, int], max_kinds: int | None
                   ) -> np.ndarray:
    """``(N, K)``: members of the K largest clusters start on their cluster's kind (0.9), every
    other item uniform."""
    ranked = sorted(clusters.members.items(), key=lambda rm: (-len(rm[1]), min(rm[1])))
    ranked = [(r, m) for r, m in ranked if any(x in row_of for x in m)]
    if max_kinds is not None:
        ranked = ranked[:max_kinds]
    k = max(len(ranked), 1)
    q = np.full((len(item_ids), k), 1.0 / k)
    for c, (_, members) in enumerate(ranked):
        rows = [row_of[x] for x in members if x in row_of]
        q[rows] = 0.1 / max(k - 1, 1)
        q[rows, c] = 0.9 if k > 1 else 1.0
    return q


def vote_messages(q: np.ndarray, e: EdgeArrays, rho: np.ndarray) -> np.ndarray:
    """``(N, K)`` log-likelihood of each item's marks for each of its kinds, given its partners'
    posteriors: a "same" mark from a partner of kind k says ``rho`` for kind k, ``1 - rho`` else."""
    out = np.zeros_like(q)
    if len(e.a) == 0:
        return out
    r = np.where(e.who >= 0, rho[np.maximum(e.who, 0)], KNOWN_RHO)[:, None]  # (E, 1)
    same = (e.sign > 0)[:, None]
    for src, dst in ((e.a, e.b), (e.b, e.a)):
        qd = q[dst]  # (E, K)
        p = np.where(same, r * qd + (1 - r) * (1 - qd), (1 - r) * qd + r * (1 - qd))
        np.add.at(out, src, e.weight[:, None] * np.log(np.maximum(p, EPS)))
    return out


def estimate_rho(q: np.ndarray, e: EdgeArrays) -> np.ndarray:
    """Each annotator's expected share of right marks under ``q``, shrunk to the Beta prior."""
    n_ann = len(e.annotators)
    if n_ann == 0:
        return np.zeros(0)
    p_same = (q[e.a] * q[e.b]).sum(axis=1)
    right = np.where(e.sign > 0, p_same, 1 - p_same)
    mine = e.who >= 0
    hits = np.bincount(e.who[mine], weights=right[mine], minlength=n_ann)
    total = np.bincount(e.who[mine], minlength=n_ann).astype(np.float64)
    rho = (hits + PRIOR_RIGHT) / (total + PRIOR_RIGHT + PRIOR_WRONG)
    return np.clip(rho, RHO_FLOOR, RHO_CEIL)


def two_means(x: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Spherical 2-means of unit rows ``x`` (M, D), started from the farthest pair; bool (M,) side."""
    a = x[int(np.argmin(x @ x.mean(axis=0)))]
    b = x[int(np.argmin(x @ a))]
    side = np.zeros(len(x), dtype=bool)
    for _ in range(iterations):
        side = (x @ b) > (x @ a)
        if side.all() or not side.any():
            break
        a = x[~side].mean(axis=0)
        b = x[side].mean(axis=0)
    return side


def split_evidence(rows_a: np.ndarray, rows_b: np.ndarray, e: EdgeArrays, rho: np.ndarray, n: int) -> float:
    """Net log-odds that the two groups are one kind, from the marks between them."""
    side = np.zeros(n, dtype=np.int8)
    side[rows_a] = 1
    side[rows_b] = 2
    between = ((side[e.a] == 1) & (side[e.b] == 2)) | ((side[e.a] == 2) & (side[e.b] == 1))
    if not between.any():
        return 0.0
    r = np.where(e.who >= 0, rho[np.maximum(e.who, 0)], KNOWN_RHO)[between]
    return float((e.sign[between] * e.weight[between] * np.log(r / (1 - r))).sum())


def split_mixed_kinds(q: np.ndarray, emb: np.ndarray, e: EdgeArrays, rho: np.ndarray, min_size: int,
                      max_new: int) -> np.ndarray:
    """Give a kind of its own to half of a component whose two halves (2-means on the embedding)
    the marks say are different: one wrong "same" that joined two kinds is outweighed by the
    "different" marks between them. Returns ``q`` with one column per new kind."""
    labels = q.argmax(axis=1)
    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    new_cols: list[np.ndarray] = []
    for c in range(q.shape[1]):
        members = np.flatnonzero(labels == c)
        if len(members) < 2 * min_size or len(new_cols) >= max_new:
            continue
        side = two_means(x[members])
        if side.sum() < min_size or (~side).sum() < min_size:
            continue
        if split_evidence(members[~side], members[side], e, rho, len(q)) < -2.0:
            col = np.zeros(len(q))
            col[members[side]] = q[members[side], c]
            q[members[side], c] = 0.0
            new_cols.append(col)
    if not new_cols:
        return q
    q = np.concatenate([q, np.stack(new_cols, axis=1)], axis=1)
    return q / q.sum(axis=1, keepdims=True)


def infer(votes: VoteBook, clusters: Clusters, item_ids: np.ndarray, embedding: np.ndarray, *,
          neighbours: int = 10, prior_strength: float = 2.0, iterations: int = 20, max_kinds: int | None = None,
          block: int = 4096, start: np.ndarray | None = None,
          splits: int = 3, min_size: int = 20) -> Inference:
    """Fit the model (see the module docstring) on a resolved graph; ``embedding`` rows follow
    ``item_ids``."""
    ids = np.asarray(item_ids, dtype=np.int64)
    emb = np.asarray(embedding, dtype=np.float32)
    if emb.shape[0] != len(ids):
        raise ValueError(f"embedding has {emb.shape[0]} rows for {len(ids)} item ids")
    row_of = {int(x): i for i, x in enumerate(ids.tolist())}
    e = edge_arrays(votes, row_of)
    q = seed_posterior(clusters, ids, row_of, max_kinds) if start is None else start
    nb, wt = knn_graph(emb, neighbours, block)
    rho = np.full(len(e.annotators), PRIOR_RIGHT / (PRIOR_RIGHT + PRIOR_WRONG))
    q, rho = mean_field(q, nb, wt, e, rho, prior_strength, iterations)
    for _ in range(splits):
        wider = split_mixed_kinds(q, emb, e, rho, min_size, max_new=4)
        if wider.shape[1] == q.shape[1]:
            break
        q, rho = mean_field(wider, nb, wt, e, rho, prior_strength, iterations)
    labels = q.argmax(axis=1).astype(np.int64)
    conf = q.max(axis=1).astype(np.float32)
    marks = np.bincount(e.who[e.who >= 0], minlength=len(e.annotators))
    return Inference(labels, conf, q.astype(np.float32),
                     {a: float(r) for a, r in zip(e.annotators, rho.tolist(), strict=True)},
                     {a: int(m) for a, m in zip(e.annotators, marks.tolist(), strict=True)})


def mean_field(q: np.ndarray, nb: np.ndarray, wt: np.ndarray, e: EdgeArrays, rho: np.ndarray,
               prior_strength: float, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    for _ in range(iterations):
        prior = np.log(np.einsum("nk,nkc->nc", wt, q[nb]) + 1e-3)
        logits = prior_strength * prior + vote_messages(q, e, rho)
        logits -= logits.max(axis=1, keepdims=True)
        new = np.exp(logits)
        new /= new.sum(axis=1, keepdims=True)
        q = 0.5 * q + 0.5 * new
        rho = estimate_rho(q, e)
    return q, rho


# --------------------------------------------------------------------------- snapshots

KINDS = (EdgeKind.ANSWER, EdgeKind.KNOWN, EdgeKind.RETRACT)


def load_snapshot(path: Path) -> tuple[KnowledgeGraph, np.ndarray, np.ndarray, np.ndarray]:
    """``(graph, item ids, vectors, truth)`` of a snapshot that ``research.label_efficiency`` kept;
    truth is -1 for items outside the training pool."""
    z = np.load(path)
    rows = [EdgeRecord(eid, s, d, sign, w, KINDS[kind], retracts_id=None if rid < 0 else rid,
                       annotator_id=None if who < 0 else who)
            for (eid, s, d, sign, kind, who, rid), w in zip(z["edges"].tolist(), z["weights"].tolist(), strict=True)]
    replica = GraphReplica(weigh_annotators=True)
    replica.apply(rows)
    truth = dict(zip(z["train_ids"].tolist(), z["train_labels"].tolist(), strict=True))
    ids = z["item_ids"]
    return replica.graph, ids, z["vectors"], np.asarray([truth.get(int(i), -1) for i in ids.tolist()])


def start_from_export(labels: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """The export's labels as a starting posterior: its confidence on its label, the rest spread."""
    k = max(int(labels.max()) + 1, 1)
    q = np.full((len(labels), k), 1.0 / k)
    ok = labels >= 0
    c = confidence[ok].astype(np.float64)
    q[ok] = ((1 - c) / k)[:, None]
    q[np.flatnonzero(ok), labels[ok]] += c
    return q


def compare(path: Path) -> dict[str, float]:
    graph, ids, vectors, truth = load_snapshot(path)
    train = truth >= 0
    with graph.lock:
        old, old_conf = graph.cluster_assignment(ids, vectors)
        t0 = time.perf_counter()
        model = infer(graph.votes, graph.clusters, ids, vectors, prior_strength=1.0,
                      start=start_from_export(old, old_conf), splits=0)
    return {"export": metrics.label_accuracy(old[train], truth[train]),
            "export_confidence": float(old_conf[train].mean()),
            "model": metrics.label_accuracy(model.labels[train], truth[train]),
            "model_confidence": float(model.confidence[train].mean()),
            "seconds": time.perf_counter() - t0,
            **{f"rho_{a}": r for a, r in sorted(model.accuracy.items())}}


def main(argv: list[str]) -> int:
    for arg in argv:
        row = compare(Path(arg))
        print(Path(arg).stem, " ".join(f"{k} {v:.3f}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
