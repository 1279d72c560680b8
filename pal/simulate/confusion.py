"""Confusion matrices for :class:`pal.simulate.models.ConfusionMistakes`: read from a file, or derived
from how alike the kinds' mean images are.

Rows and columns follow the kinds of the labels file in sorted order (``np.unique(labels)``): for
integer labels 0..C-1 that is simply the label. Entry ``[a, b]`` is the probability of a wrong mark on a
candidate of kind ``b`` shown next to a reference of kind ``a``.

Derived matrices (why this shape): people confuse kinds that look alike. The mean image of a kind is a
cheap, data-only stand-in for "what it looks like", so two kinds are confused with a weight that falls
off exponentially with the distance between their mean images, in units of the median distance between
kinds (:data:`SHARPNESS` such units make the weight e times smaller). With Fashion-MNIST that confuses
shirt, T-shirt, pullover and coat with each other tens of times more often than a bag with a trouser.
A candidate of the reference's own kind is called an outlier as often as the reference's kind is
confused with its closest look-alike: a shirt next to a shirt is taken for a T-shirt about as often as
a T-shirt next to a shirt is taken for a shirt. The weights are then scaled so that a grid of items drawn
at random from the data has the requested mean wrong-mark rate (e.g. 0.10), and capped at
:data:`MAX_WRONG`: someone who cannot tell two kinds apart guesses, and a guess is right half the time.
"""

from __future__ import annotations

import zipfile
from collections.abc import Hashable
from pathlib import Path

import numpy as np

MAX_WRONG = 0.5  # no pair of kinds is judged worse than a coin toss
SHARPNESS = 4.0  # the weight falls by e over a quarter of the median distance between two kinds' means


def load_kinds(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of a labels file (the ``.npz`` a project was imported from)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = sorted(npz.files)
            images, labels = (npz[k] if k in names else None for k in ("images", "labels"))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if images is None or labels is None:
        raise ValueError(f"{path} needs 'images' and 'labels' arrays; it has {names}")
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(f"{path}: images {images.shape} and labels {labels.shape} do not pair up")
    return images, labels


def kind_index(labels: np.ndarray) -> dict[Hashable, int]:
    """Each label (as the simulator's ground truth holds it) to its row: sorted order."""
    return {value.item() if hasattr(value, "item") else value: i for i, value in enumerate(np.unique(labels))}


def class_means(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(C, pixels)``: the mean image of each kind (in :func:`kind_index` order), pixels in [0, 1]."""
    flat = images.reshape(len(images), -1)
    return np.stack([flat[labels == kind].mean(axis=0, dtype=np.float64) / 255.0 for kind in np.unique(labels)])


def likeness(means: np.ndarray) -> np.ndarray:
    """``(C, C)`` weights: exp(-SHARPNESS * distance / median distance between two kinds); the diagonal
    is each row's largest other weight (a kind's closest look-alike)."""
    c = len(means)
    if c < 2:
        raise ValueError("a derived confusion matrix needs at least two kinds")
    dist = np.sqrt(((means[:, None, :] - means[None, :, :]) ** 2).sum(axis=-1))
    off = ~np.eye(c, dtype=bool)
    unit = float(np.median(dist[off]))
    weights = np.exp(-SHARPNESS * dist / unit) if unit > 0 else np.ones((c, c))
    np.fill_diagonal(weights, np.where(off, weights, 0.0).max(axis=1))
    return weights


def scaled_to_mean(weights: np.ndarray, shares: np.ndarray, mean: float) -> np.ndarray:
    """``min(MAX_WRONG, k * weights)`` with ``k`` such that the mean over pairs of kinds, each pair
    weighted by the product of the kinds' shares of the data (a grid of random items), is ``mean``."""
    if not 0.0 <= mean <= MAX_WRONG:
        raise ValueError(f"the mean wrong-mark rate must be in [0, {MAX_WRONG}], got {mean}")
    pair = np.outer(shares, shares)

    def average(k: float) -> float:
        return float((np.minimum(MAX_WRONG, k * weights) * pair).sum())

    if mean == MAX_WRONG:
        return np.full_like(weights, MAX_WRONG)
    lo, hi = 0.0, mean / float((weights * pair).sum())  # the scale without the cap: a lower bound
    while average(hi) < mean:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if average(mid) < mean else (lo, mid)
    return np.minimum(MAX_WRONG, hi * weights)


def derived_matrix(images: np.ndarray, labels: np.ndarray, mean: float) -> np.ndarray:
    """The confusion matrix of the data: look-alike kinds confused most, mean wrong-mark rate ``mean``."""
    _, counts = np.unique(labels, return_counts=True)
    return scaled_to_mean(likeness(class_means(images, labels)), counts / counts.sum(), mean)


def load_matrix(path: Path) -> np.ndarray:
    """A C x C matrix of wrong-mark probabilities from a ``.npy`` file or a comma-separated ``.csv``."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise ValueError(f"a confusion matrix file is .npy or .csv, got {path.name}")
    try:
        if suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        return np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the confusion matrix {path}: {exc}") from None
