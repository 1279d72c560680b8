"""Exported labels: one label and a confidence per item, from the clusters and the embedding.

Called by :meth:`pal.core.graph.KnowledgeGraph.cluster_assignment` under the graph's lock, on a
resolved state.
"""

from __future__ import annotations

import numpy as np

from pal.core.clusters import Clusters
from pal.core.edges import EPS
from pal.core.votes import VoteBook


def cluster_labels(
    votes: VoteBook, clusters: Clusters, item_ids: np.ndarray, embedding: np.ndarray | None, k: int, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels int64 (N,), confidence float32 (N,))``; see ``KnowledgeGraph.cluster_assignment``."""
    ids = np.asarray(item_ids, dtype=np.int64)
    n = len(ids)
    labels = np.full(n, -1, dtype=np.int64)
    conf = np.zeros(n, dtype=np.float32)
    roots = np.fromiter((clusters.find(int(x)) for x in ids), dtype=np.int64, count=n)
    present = set(roots.tolist())
    ranked = sorted(
        ((r, m) for r, m in clusters.members.items() if r in present), key=lambda rm: (-len(rm[1]), min(rm[1]))
    )
    label_of_root = {r: c for c, (r, _) in enumerate(ranked)}
    agree = agreement(votes, clusters)
    for i, (x, r) in enumerate(zip(ids.tolist(), roots.tolist(), strict=True)):
        c = label_of_root.get(r)
        if c is not None:
            labels[i] = c
            conf[i] = agree.get(x, 1.0)
    attach_leaners(votes, clusters, ids, roots, labels, conf, label_of_root)
    if embedding is None or not label_of_root:
        return labels, conf
    emb = np.asarray(embedding, dtype=np.float32)
    if emb.shape[0] != n:
        raise ValueError(f"embedding has {emb.shape[0]} rows for {n} item ids")
    label_roots = np.asarray([r for r, _ in ranked], dtype=np.int64)
    _neighbour_vote(clusters, emb, roots, label_roots, labels, conf, k, block)
    return labels, conf


def _neighbour_vote(
    clusters: Clusters, emb: np.ndarray, roots: np.ndarray, label_roots: np.ndarray,
    labels: np.ndarray, conf: np.ndarray, k: int, block: int,
) -> None:
    """Unlabelled items take the similarity-weighted vote of their ``k`` nearest labelled items
    (cosine), skipping clusters they are cannot-linked to; confidence is the winning share of
    that vote times the neighbours' mean confidence."""
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    known = np.flatnonzero(labels >= 0)
    unknown = np.flatnonzero(labels < 0)
    kk = min(k, len(known))
    known_t = np.ascontiguousarray(emb[known].T)
    for s in range(0, len(unknown), block):
        rows = unknown[s : s + block]
        sims = emb[rows] @ known_t  # (b, n_known)
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        top_sims = np.take_along_axis(sims, top, axis=1)
        for j, row in enumerate(rows.tolist()):
            banned = clusters.cl.get(int(roots[row]), {})
            tally: dict[int, float] = {}
            conf_sum = 0.0
            for nb, sim in zip(known[top[j]].tolist(), top_sims[j].tolist(), strict=True):
                lab = int(labels[nb])
                if int(label_roots[lab]) in banned:
                    continue
                w = max(sim, 0.0) + 1e-6
                tally[lab] = tally.get(lab, 0.0) + w
                conf_sum += w * float(conf[nb])
            if not tally:
                continue
            total = sum(tally.values())
            best = max(tally, key=lambda lab_: (tally[lab_], -lab_))
            labels[row] = best
            conf[row] = tally[best] / total * (conf_sum / total)


def attach_leaners(
    votes: VoteBook, clusters: Clusters, ids: np.ndarray, roots: np.ndarray, labels: np.ndarray, conf: np.ndarray,
    label_of_root: dict[int, int],
) -> None:
    """Label the items in no cluster whose split pairs lean "same" towards one cluster only.

    A split pair (see ``min_agreement``) joins nothing: with 20% wrong marks nearly half of the
    pairs asked three times are split, and the clusters hold about half the items they would
    without errors. Yet a 2-1 "same" is right about four times in five (it is 4 times likelier from
    a pair of one kind than from two kinds). So an item outside every cluster whose
    positive-leaning split pairs all go to members of one cluster (not cannot-linked to it) takes
    that cluster's label, as a leaf: it joins nothing to anything, and its confidence is the
    pair's winning share. Leaves then vote, like members, for the items left."""
    row_of = {x: i for i, x in enumerate(ids.tolist()) if labels[i] < 0}
    if not row_of:
        return
    leaning: dict[int, dict[int, float]] = {}  # row -> {label: winning share}
    for key in votes.contested:
        if votes.net.get(key, 0.0) != 0.0:
            continue
        net, mass = votes.totals(key)
        if net <= EPS:
            continue
        a, b = key
        for loose, other in ((a, b), (b, a)):
            row = row_of.get(loose)
            label = label_of_root.get(clusters.find(other))
            if row is not None and label is not None:
                share = (mass + net) / (2.0 * mass)
                leaning_row = leaning.setdefault(row, {})
                leaning_row[label] = max(leaning_row.get(label, 0.0), share)
    for row, shares in leaning.items():
        if len(shares) != 1:
            continue
        ((label, share),) = shares.items()
        if label in {label_of_root.get(r) for r in clusters.cl.get(int(roots[row]), {})}:
            continue
        labels[row] = label
        conf[row] = share


def agreement(votes: VoteBook, clusters: Clusters) -> dict[int, float]:
    """Per item with edges: weighted share of its live edges that the resolved graph agrees with."""
    agree: dict[int, float] = {}
    total: dict[int, float] = {}
    for e in votes.edges.values():
        w = votes.weight_of(e)
        same = clusters.find(e.src) == clusters.find(e.dst)
        ok = same if e.sign > 0 else not same
        for x in (e.src, e.dst):
            total[x] = total.get(x, 0.0) + w
            if ok:
                agree[x] = agree.get(x, 0.0) + w
    return {x: agree.get(x, 0.0) / t if t > 0 else 1.0 for x, t in total.items()}
