"""Similarity search for the oracle: L2-normalised vectors, exact top-k by blocked matmul.

Why no ANN index (hnswlib, faiss): the oracle never needs the exact nearest neighbours of an item
over the whole project; it needs a good *pool* of candidates near an anchor. So each selection
scans one *block* of at most ``block_rows`` rows, taken from a fixed random permutation of the
items; successive selections rotate through the blocks. Measured on 2 cores (D = 128, 8 queries):
a 131k-row block costs about as much as a brute-force scan of 100k rows (~5 ms) at any N, where a
brute-force scan of 1M rows costs ~70 ms and an index would add a build per embedding version.
Projects up to ``block_rows`` items are always scanned whole (exact top-k).
"""

from __future__ import annotations

import numpy as np

DEFAULT_BLOCK_ROWS = 131_072


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm, float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest entries of each row of ``sims`` (q, n), best first."""
    n = sims.shape[1]
    k = min(k, n)
    if k <= 0:
        return np.zeros((sims.shape[0], 0), dtype=np.int64)
    if k < n:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (sims.shape[0], n)).copy()
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class VectorSpace:
    """One embedding version (or the cold-start pixel features) ready for search.

    ``item_ids`` are the project's ascending item ids; row ``i`` of ``vectors`` belongs to
    ``item_ids[i]``. Internally the normalised rows are stored in a random permutation (so that a
    block is a contiguous slice, no gather) with the inverse map to find an item's row."""

    def __init__(
        self,
        item_ids: np.ndarray,
        vectors: np.ndarray,
        *,
        block_rows: int = DEFAULT_BLOCK_ROWS,
        seed: int = 0,
        center: bool = True,
    ) -> None:
        ids = np.asarray(item_ids, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError(f"vectors must be (N, D) with N = {len(ids)} item ids, got {vectors.shape}")
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise ValueError("item_ids must be strictly ascending")
        self.item_ids = ids
        self.n, self.dim = vectors.shape
        self.block_rows = max(1, block_rows)
        rng = np.random.default_rng(seed)
        vectors = np.asarray(vectors, dtype=np.float32)
        if center and self.n > 1:
            # Cosine between raw embedding rows is dominated by their shared mean direction when
            # the embedding is anisotropic (all rows in one cone, common for SSL embeddings and
            # for spectral ones); centring first makes cosine neighbours neighbours again
            # (concentric-circles toy: 41% -> 80% of the 8 nearest share the item's class).
            vectors = vectors - vectors.mean(axis=0, dtype=np.float64).astype(np.float32)
        if self.n > self.block_rows:
            self._perm = rng.permutation(self.n)
            self._pos = np.empty(self.n, dtype=np.int64)
            self._pos[self._perm] = np.arange(self.n)
            self._mat = l2_normalise(vectors[self._perm])
        else:
            self._perm = np.arange(self.n)
            self._pos = self._perm
            self._mat = l2_normalise(vectors)
        self.n_blocks = -(-self.n // self.block_rows) if self.n else 0
        self._next_block = int(rng.integers(self.n_blocks)) if self.n_blocks else 0
        self.dup_threshold = self._estimate_dup_threshold(rng)

    # rows are positions in ``item_ids``; ``vec`` maps them to the stored (permuted) vectors
    def rows_of(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """Rows of these item ids; -1 for ids that are not items of this space."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.searchsorted(self.item_ids, ids)
        rows = np.minimum(rows, max(self.n - 1, 0))
        ok = self.item_ids[rows] == ids if self.n else np.zeros(len(ids), dtype=bool)
        return np.where(ok, rows, -1)

    def ids_of(self, rows: np.ndarray) -> np.ndarray:
        return self.item_ids[rows]

    def vec(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), D) normalised vectors."""
        return self._mat[self._pos[np.asarray(rows, dtype=np.int64)]]

    def block(self) -> tuple[np.ndarray, np.ndarray]:
        """The next block to scan: ``(rows (B,), vectors (B, D))`` (the vectors are a view)."""
        if self.n_blocks <= 1:
            return self._perm, self._mat
        b = self._next_block
        self._next_block = (b + 1) % self.n_blocks
        lo, hi = b * self.block_rows, min(self.n, (b + 1) * self.block_rows)
        return self._perm[lo:hi], self._mat[lo:hi]

    def search(
        self, queries: np.ndarray, k: int, block: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by cosine for each query (q, D) within ``block`` (default: the next block).
        Returns ``(rows (q, k'), sims (q, k'))`` best first, k' = min(k, block size)."""
        rows, mat = block if block is not None else self.block()
        sims = np.asarray(queries, dtype=np.float32) @ mat.T  # (q, B)
        idx = top_k(sims, k)
        return rows[idx], np.take_along_axis(sims, idx, axis=1)

    def brute_force_top_k(self, query: np.ndarray, k: int) -> np.ndarray:
        """Exact top-k rows over every item (benchmarks and tests)."""
        sims = self._mat @ np.asarray(query, dtype=np.float32)
        k = min(k, self.n)
        idx = np.argpartition(-sims, k - 1)[:k]
        idx = idx[np.argsort(-sims[idx], kind="stable")]
        return self._perm[idx]

    def _estimate_dup_threshold(self, rng: np.random.Generator) -> float:
        """Cosine from which two items count as near-duplicates (inf: never).

        Near-duplicates are pairs far more similar than almost any two items of the project: a
        high quantile of random pairs, at least 0.97, capped at 0.9999 (when duplicates are
        common the quantile is 1.0 itself). Below 16 dimensions whole kinds collapse onto a few
        directions (the concentric-circles toy's 5-d embedding puts most of a cluster above
        0.9999), so cosine cannot tell a duplicate from a neighbour there: disabled."""
        if self.n < 4 or self.dim < 16:
            return float("inf")
        m = min(self.n, 512)
        a = self._mat[rng.choice(self.n, size=m, replace=False)]
        sims = a @ a.T
        iu = np.triu_indices(m, k=1)
        return float(min(max(0.97, np.quantile(sims[iu], 0.999)), 0.9999))
