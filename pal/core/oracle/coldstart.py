"""Cold-start features: a cheap pixel-space projection, for choosing grids before any embedding.

Downsample each image to ``size x size`` (block means), normalise its contrast (zero mean, unit
variance per image: brightness and contrast are rarely what makes two things the same kind), then
project on the top ``dim`` principal components fitted on a random subsample, and L2-normalise.
Deterministic for a given ``seed``. Processes images in batches, so 1M 28x28 images need no more
memory than the images and the (N, dim) result.
"""

from __future__ import annotations

import numpy as np


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W[, C]) -> (N, size, size, C) float32: block means (nearest pixel when upsampling)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    x = x.astype(np.float32)
    for axis in (1, 2):
        length = x.shape[axis]
        if length >= size:
            edges = np.linspace(0, length, size + 1).astype(np.int64)
            sums = np.add.reduceat(x, edges[:-1], axis=axis)
            counts = np.diff(edges).astype(np.float32)
            shape = [1, 1, 1, 1]
            shape[axis] = size
            x = sums / counts.reshape(shape)
        else:
            x = np.take(x, np.arange(size) * length // size, axis=axis)
    return x


def _flat_normalised(images: np.ndarray, size: int) -> np.ndarray:
    x = downsample(images, size).reshape(len(images), -1)
    x -= x.mean(axis=1, keepdims=True)
    x /= np.maximum(x.std(axis=1, keepdims=True), 1e-6)
    return x


def pixel_features(
    images: np.ndarray, dim: int = 64, size: int = 16, seed: int = 0, fit_sample: int = 10_000, batch: int = 8192
) -> np.ndarray:
    """(N, H, W[, C]) uint8 images -> (N, d) float32 L2-normalised features, d = min(dim, pixels)."""
    n = len(images)
    if n == 0:
        return np.zeros((0, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.choice(n, size=min(n, fit_sample), replace=False))
    fit = _flat_normalised(images[fit_idx], size)
    mean = fit.mean(axis=0)
    # Principal directions of the subsample (rows of vt), at most as many as it supports.
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    basis = vt[: min(dim, vt.shape[0])].T.astype(np.float32)  # (F, d)
    out = np.empty((n, basis.shape[1]), dtype=np.float32)
    for lo in range(0, n, batch):
        feats = (_flat_normalised(images[lo : lo + batch], size) - mean) @ basis
        out[lo : lo + batch] = feats
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.maximum(norms, 1e-12)
    return out
