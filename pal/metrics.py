"""Evaluation metrics for embeddings and cluster labels (numpy + scipy only).

Used by the server (dashboard quality, exported labels) and the benchmarks.

- :func:`knn_accuracy` -- k-nearest-neighbour classification accuracy under cosine
  similarity, computed in blocks so a 60k x 10k evaluation fits in memory.
- :func:`kmeans` -- k-means++ initialisation and vectorised Lloyd iterations.
- :func:`hungarian_accuracy` -- accuracy of a clustering after matching clusters to
  classes one-to-one (Hungarian algorithm). At most as many clusters as there are
  classes are mapped; items in the remaining clusters count as wrong, so splitting
  the data into many small clusters cannot inflate the score.
- :func:`cluster_accuracy` -- k-means on an embedding (k = number of classes by
  default) scored with :func:`hungarian_accuracy`.
- :func:`label_accuracy` -- the same rule for exported cluster labels of any kind
  (integers or strings, with ``None`` / negative integers meaning "no cluster").

All functions validate shapes and raise ``ValueError`` messages that print them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.optimize import linear_sum_assignment

__all__ = [
    "KMeansResult",
    "cluster_accuracy",
    "cluster_class_mapping",
    "hungarian_accuracy",
    "kmeans",
    "knn_accuracy",
    "knn_predict",
    "label_accuracy",
]

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]

# Elements (float32) of one similarity / distance block: 2**25 * 4 B = 128 MiB.
_BLOCK_ELEMS = 1 << 25
# Elements (float64) of one k-means distance block: 8 MiB, small enough to stay in cache.
_ASSIGN_BLOCK_ELEMS = 1 << 20


# --------------------------------------------------------------------------- validation


def _as_embedding(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float32]:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    out = arr.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} (shape {arr.shape}) contains NaN or inf")
    return out


def _as_labels(y: npt.ArrayLike, name: str, n: int | None = None, n_name: str = "") -> npt.NDArray[Any]:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has shape {arr.shape} but {n_name} has {n} rows")
    return arr


def _l2_normalize(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit norm; an all-zero row stays zero (similarity 0 to everything)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- kNN


def knn_predict(
    train_emb: npt.ArrayLike,
    train_labels: npt.ArrayLike,
    query_emb: npt.ArrayLike,
    k: int = 20,
    *,
    temperature: float | None = None,
    leave_one_out: bool = False,
) -> npt.NDArray[Any]:
    """Predict a label for each query row from its ``k`` most cosine-similar train rows.

    Voting:
      - ``temperature=None`` (default): plain majority vote among the ``k`` neighbours;
        a tie goes to the tied class with the larger summed similarity (then the
        smaller class value).
      - ``temperature=T``: each neighbour votes with weight ``exp(sim / T)`` (the
        weighted kNN monitor of Wu et al. 2018 / DINO, which use ``T = 0.07``).

    ``leave_one_out=True`` is for scoring a labelled set against itself: query row ``i``
    must be train row ``i`` and is excluded from its own neighbours.
    ``k`` larger than the usable number of train rows is clamped to it.
    Similarities are computed in float32 in blocks of query rows (about 128 MiB each).

    Shapes: train_emb (N, D), train_labels (N,), query_emb (M, D) -> (M,) with the
    dtype of ``train_labels``.
    """
    train = _l2_normalize(_as_embedding(train_emb, "train_emb"))  # (N, D)
    query = _l2_normalize(_as_embedding(query_emb, "query_emb"))  # (M, D)
    y = _as_labels(train_labels, "train_labels", train.shape[0], "train_emb")
    if train.shape[1] != query.shape[1]:
        raise ValueError(f"train_emb {train.shape} and query_emb {query.shape} have different dimensions")
    if leave_one_out and query.shape[0] != train.shape[0]:
        raise ValueError(f"leave_one_out needs query_emb to be train_emb; got {query.shape} vs {train.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be > 0 or None, got {temperature}")

    n_train = train.shape[0] - (1 if leave_one_out else 0)
    if n_train < 1:
        raise ValueError(f"leave_one_out needs at least 2 train rows, got {train.shape}")
    k = min(k, n_train)
    classes, y_code = np.unique(y, return_inverse=True)  # (C,), (N,)
    y_code = y_code.reshape(-1)
    n_classes = classes.shape[0]

    m = query.shape[0]
    block = max(1, _BLOCK_ELEMS // train.shape[0])
    pred = np.empty(m, dtype=np.int64)
    for start in range(0, m, block):
        stop = min(start + block, m)
        sim = query[start:stop] @ train.T  # (b, N)
        rows = np.arange(stop - start)
        if leave_one_out:
            sim[rows, rows + start] = -np.inf
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # (b, k), unordered
        nn_sim = np.take_along_axis(sim, nn, axis=1).astype(np.float64)  # (b, k)
        nn_cls = y_code[nn]  # (b, k)
        # Per-class sums over the k neighbours as a (b, C) matrix.
        flat = (rows[:, None] * n_classes + nn_cls).ravel()
        sim_sum = np.bincount(flat, weights=nn_sim.ravel(), minlength=len(rows) * n_classes)
        sim_sum = sim_sum.reshape(len(rows), n_classes)
        if temperature is None:
            votes = np.bincount(flat, minlength=len(rows) * n_classes).reshape(len(rows), n_classes)
            tied = votes == votes.max(axis=1, keepdims=True)
            pred[start:stop] = np.where(tied, sim_sum, -np.inf).argmax(axis=1)
        else:
            # Subtract the row max before exp: same argmax, no overflow for small T.
            w = np.exp((nn_sim - nn_sim.max(axis=1, keepdims=True)) / temperature)
            scores = np.bincount(flat, weights=w.ravel(), minlength=len(rows) * n_classes)
            pred[start:stop] = scores.reshape(len(rows), n_classes).argmax(axis=1)
    return classes[pred]


def knn_accuracy(
    train_emb: npt.ArrayLike,
    train_labels: npt.ArrayLike,
    test_emb: npt.ArrayLike,
    test_labels: npt.ArrayLike,
    k: int = 20,
    *,
    temperature: float | None = None,
) -> float:
    """Share of test rows whose kNN prediction (see :func:`knn_predict`) equals their label.

    Cosine similarity; plain majority vote by default (``temperature=None``), or
    ``exp(sim / temperature)``-weighted votes. A test label absent from the train
    labels can never be predicted and counts as wrong.

    Shapes: train_emb (N, D), train_labels (N,), test_emb (M, D), test_labels (M,).
    """
    test = _as_embedding(test_emb, "test_emb")
    y_test = _as_labels(test_labels, "test_labels", test.shape[0], "test_emb")
    pred = knn_predict(train_emb, train_labels, test, k, temperature=temperature)
    return float(np.mean(pred == y_test))


# --------------------------------------------------------------------------- k-means


class KMeansResult(NamedTuple):
    """Outcome of :func:`kmeans`: centroids (k, D) float64, labels (N,) int64, inertia."""

    centroids: npt.NDArray[np.float64]
    labels: IntArray
    inertia: float  # sum of squared distances of points to their centroid


def _sq_dists(
    x: npt.NDArray[np.float64], x_sq: npt.NDArray[np.float64], c: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Squared Euclidean distances (N, k) via |x|^2 - 2 x.c + |c|^2, clipped at 0."""
    d = x_sq[:, None] - 2.0 * (x @ c.T) + np.einsum("kd,kd->k", c, c)[None, :]
    return np.maximum(d, 0.0, out=d)


def _assign(
    x: npt.NDArray[np.float64], x_sq: npt.NDArray[np.float64], c: npt.NDArray[np.float64]
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """Nearest centroid and its squared distance for every row, in cache-sized blocks."""
    n, k = x.shape[0], c.shape[0]
    c_sq = np.einsum("kd,kd->k", c, c)  # (k,)
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64)
    block = max(1, _ASSIGN_BLOCK_ELEMS // k)
    for start in range(0, n, block):
        stop = min(start + block, n)
        # argmin_j |x - c_j|^2 = argmin_j (|c_j|^2 - 2 x.c_j): |x|^2 is added back after.
        d = x[start:stop] @ c.T  # (b, k)
        d *= -2.0
        d += c_sq
        lab = d.argmin(axis=1)
        labels[start:stop] = lab
        dist[start:stop] = np.maximum(d[np.arange(stop - start), lab] + x_sq[start:stop], 0.0)
    return labels, dist


def _kmeans_pp(
    x: npt.NDArray[np.float64], x_sq: npt.NDArray[np.float64], k: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; 2 + ln k trials per step as in sklearn)."""
    n = x.shape[0]
    n_trials = 2 + int(np.log(k))
    centers = np.empty((k, x.shape[1]), dtype=np.float64)
    centers[0] = x[rng.integers(n)]
    closest = _sq_dists(x, x_sq, centers[:1])[:, 0]  # (N,)
    for i in range(1, k):
        total = closest.sum()
        if total <= 0.0:  # every point coincides with a centre: pick uniformly
            cand = rng.integers(n, size=n_trials)
        else:
            cum = np.cumsum(closest)
            cand = np.searchsorted(cum, rng.random(n_trials) * cum[-1], side="right")
            cand = np.minimum(cand, n - 1)
        d_cand = _sq_dists(x, x_sq, x[cand])  # (N, trials)
        pot = np.minimum(closest[:, None], d_cand).sum(axis=0)  # (trials,)
        best = int(pot.argmin())
        centers[i] = x[cand[best]]
        closest = np.minimum(closest, d_cand[:, best])
    return centers


def _lloyd(
    x: npt.NDArray[np.float64],
    x_sq: npt.NDArray[np.float64],
    centers: npt.NDArray[np.float64],
    iters: int,
    tol: float,
) -> KMeansResult:
    n, k = x.shape[0], centers.shape[0]
    labels, dist = _assign(x, x_sq, centers)
    for _ in range(iters):
        onehot = sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
        counts = np.bincount(labels, minlength=k).astype(np.float64)  # (k,)
        new = np.asarray(onehot @ x)  # (k, D) per-cluster sums
        filled = counts > 0
        new[filled] /= counts[filled, None]
        empty = np.flatnonzero(~filled)
        if empty.size:
            # Re-seed empty clusters at the points worst served by their centroid.
            far = np.argsort(-dist, kind="stable")[: empty.size]
            new[empty] = x[far]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        new_labels, dist = _assign(x, x_sq, centers)
        converged = np.array_equal(new_labels, labels) or shift <= tol
        labels = new_labels
        if converged:
            break
    return KMeansResult(centers, labels, float(dist.sum()))


def kmeans(
    x: npt.ArrayLike,
    k: int,
    seed: int = 0,
    n_init: int = 5,
    iters: int = 100,
    *,
    tol: float = 1e-6,
) -> KMeansResult:
    """k-means with k-means++ seeding and vectorised Lloyd iterations; best of ``n_init`` runs.

    Each run seeds with greedy k-means++ and iterates until the assignment no longer
    changes, the total squared centroid shift falls below ``tol`` times the mean
    per-feature variance of ``x``, or ``iters`` iterations. An emptied cluster is
    re-seeded at the point farthest from its centroid. The run with the lowest
    inertia wins. Deterministic for a given ``seed``. Computed in float64.

    Shapes: x (N, D) -> centroids (k, D), labels (N,) in ``0..k-1``.
    """
    data = _as_embedding(x, "x").astype(np.float64)  # (N, D)
    n = data.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..N for x of shape {data.shape}, got k={k}")
    if n_init < 1 or iters < 0:
        raise ValueError(f"n_init must be >= 1 and iters >= 0, got n_init={n_init}, iters={iters}")
    x_sq = np.einsum("nd,nd->n", data, data)  # (N,)
    abs_tol = tol * float(data.var(axis=0).mean())
    rng = np.random.default_rng(seed)
    best: KMeansResult | None = None
    for _ in range(n_init):
        centers = _kmeans_pp(data, x_sq, k, rng)
        result = _lloyd(data, x_sq, centers, iters, abs_tol)
        if best is None or result.inertia < best.inertia:
            best = result
    assert best is not None
    return best


# --------------------------------------------------------------------------- matching


def _contingency(pred_codes: IntArray, n_pred: int, true_codes: IntArray, n_true: int) -> IntArray:
    """(n_pred, n_true) counts of items per (cluster, class)."""
    flat = pred_codes * n_true + true_codes
    return np.bincount(flat, minlength=n_pred * n_true).reshape(n_pred, n_true).astype(np.int64)


def _encode(values: npt.ArrayLike, name: str) -> tuple[npt.NDArray[Any], IntArray]:
    arr = _as_labels(values, name)
    uniq, codes = np.unique(arr, return_inverse=True)
    return uniq, codes.reshape(-1).astype(np.int64)


def _matched(pred: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[int, int, dict[Any, Any]]:
    """Hungarian matching of non-negative cluster ids to classes: (correct, total, mapping)."""
    y = _as_labels(labels, "labels")
    p = _as_labels(pred, "pred_clusters", y.shape[0], "labels")
    if y.shape[0] == 0:
        raise ValueError("labels is empty: accuracy is undefined")
    if not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"pred_clusters must be integers, got dtype {p.dtype}")
    assigned = p >= 0  # negative ids: no cluster, always wrong
    classes, y_code = _encode(y[assigned], "labels")
    clusters, p_code = _encode(p[assigned], "pred_clusters")
    if clusters.size == 0:
        return 0, y.shape[0], {}
    table = _contingency(p_code, clusters.size, y_code, classes.size)  # (K, C)
    # Rectangular assignment: min(K, C) pairs, each cluster and class used at most once.
    rows, cols = linear_sum_assignment(table, maximize=True)
    correct = int(table[rows, cols].sum())
    mapping = dict(zip(clusters[rows].tolist(), classes[cols].tolist(), strict=True))
    return correct, y.shape[0], mapping


def hungarian_accuracy(pred_clusters: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Clustering accuracy under a one-to-one cluster-to-class matching.

    Clusters are matched to classes by the Hungarian algorithm (maximum total overlap),
    mapping AT MOST as many clusters as there are classes; items in unmatched extra
    clusters, and items with a negative cluster id (no cluster), count as wrong. Hence
    the score never exceeds the share of items in the C largest clusters (C = number
    of classes): over-splitting cannot inflate it. Cluster ids are arbitrary
    integers; permuting them does not change the score.

    Shapes: pred_clusters (N,) integers, labels (N,) any comparable values.
    """
    correct, total, _ = _matched(pred_clusters, labels)
    return correct / total


def cluster_class_mapping(pred_clusters: npt.ArrayLike, labels: npt.ArrayLike) -> dict[Any, Any]:
    """The cluster -> class mapping that :func:`hungarian_accuracy` scores (unmatched clusters absent)."""
    return _matched(pred_clusters, labels)[2]


def cluster_accuracy(
    emb: npt.ArrayLike,
    labels: npt.ArrayLike,
    n_clusters: int | None = None,
    seed: int = 0,
    *,
    normalize: bool = True,
    n_init: int = 5,
    iters: int = 100,
) -> float:
    """k-means on ``emb`` scored with :func:`hungarian_accuracy` against ``labels``.

    ``n_clusters`` defaults to the number of distinct labels. With ``normalize=True``
    (default) rows are L2-normalised first, matching the cosine geometry that
    :func:`knn_accuracy` uses.

    Shapes: emb (N, D), labels (N,).
    """
    x = _as_embedding(emb, "emb")
    y = _as_labels(labels, "labels", x.shape[0], "emb")
    k = int(np.unique(y).size) if n_clusters is None else n_clusters
    if normalize:
        x = _l2_normalize(x)
    result = kmeans(x, k, seed=seed, n_init=n_init, iters=iters)
    return hungarian_accuracy(result.labels, y)


def _label_codes(values: Sequence[Hashable] | npt.ArrayLike, name: str, *, allow_missing: bool) -> IntArray:
    """Integer codes (first-seen order) for hashable labels.

    With ``allow_missing``, ``None`` and negative integers become -1 (no cluster);
    without it they are ordinary values, except ``None``, which is rejected.
    """
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {arr.shape}")
    codes: dict[Hashable, int] = {}
    out = np.empty(arr.shape[0], dtype=np.int64)
    for i, v in enumerate(arr.tolist()):
        if v is None:
            if not allow_missing:
                raise ValueError(f"{name}[{i}] is None: filter out items without a value first")
            out[i] = -1
        elif allow_missing and isinstance(v, Integral) and not isinstance(v, (bool, np.bool_)) and v < 0:
            out[i] = -1
        else:
            out[i] = codes.setdefault(v, len(codes))
    return out


def label_accuracy(
    cluster_labels: Sequence[Hashable] | npt.ArrayLike, labels: Sequence[Hashable] | npt.ArrayLike
) -> float:
    """:func:`hungarian_accuracy` for exported cluster labels of any hashable kind.

    ``cluster_labels`` may be integers, strings or a mix; ``None`` or a negative
    integer means the item is in no cluster (counts as wrong). ``labels`` are the
    ground-truth classes (any hashable values, ``None`` rejected). At most as many clusters as classes
    are matched; items of extra clusters count as wrong.

    Shapes: cluster_labels (N,), labels (N,).
    """
    y = _label_codes(labels, "labels", allow_missing=False)
    p = _label_codes(cluster_labels, "cluster_labels", allow_missing=True)
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"cluster_labels has shape {p.shape} but labels has shape {y.shape}")
    return hungarian_accuracy(p, y)
