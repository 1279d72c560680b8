"""Cold start: grids chosen from pixel features before any embedding exists."""

from __future__ import annotations

import numpy as np
import pytest

from pal.core.graph import KnowledgeGraph
from pal.core.oracle import OracleContext, get_oracle
from pal.core.oracle.coldstart import downsample, pixel_features
from tests.pal.core.oracle.helpers import Project, clustered_project, simulate


def _bar_images(
    rng: np.random.Generator, n: int, size: int = 28, colour: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Three kinds: a horizontal bar, a vertical bar, a diagonal; random position, noise."""
    labels = rng.integers(3, size=n)
    img = rng.integers(0, 60, size=(n, size, size)).astype(np.float64)
    for i, lab in enumerate(labels):
        k = int(rng.integers(6, size - 6))
        if lab == 0:
            img[i, k - 2 : k + 2, 3:-3] += 180
        elif lab == 1:
            img[i, 3:-3, k - 2 : k + 2] += 180
        else:
            for t in range(3, size - 3):
                img[i, t, max(t - 2, 0) : t + 2] += 180
    out = np.clip(img, 0, 255).astype(np.uint8)
    if colour:
        out = np.repeat(out[..., None], 3, axis=3)
    return out, labels


def test_pixel_features_are_float32_unit_rows() -> None:
    images, _ = _bar_images(np.random.default_rng(0), 50)
    f = pixel_features(images, dim=16)
    assert f.shape == (50, 16) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)


def test_pixel_features_accept_colour_images() -> None:
    images, _ = _bar_images(np.random.default_rng(0), 40, colour=True)
    assert pixel_features(images, dim=8).shape == (40, 8)


def test_pixel_features_put_same_kind_images_near_each_other() -> None:
    images, labels = _bar_images(np.random.default_rng(1), 300)
    f = pixel_features(images, dim=32)
    sims = f @ f.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1)[:, :5]
    assert (labels[nearest] == labels[:, None]).mean() > 0.8  # chance: 1/3


def test_pixel_features_are_deterministic() -> None:
    images, _ = _bar_images(np.random.default_rng(2), 60)
    np.testing.assert_array_equal(pixel_features(images, seed=3), pixel_features(images, seed=3))


def test_downsample_averages_blocks() -> None:
    images = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    np.testing.assert_allclose(downsample(images, 2)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("oracle", ["active", "uncertainty"])
def test_cold_start_without_embedding_uses_pixel_features(oracle: str) -> None:
    rng = np.random.default_rng(3)
    images, labels = _bar_images(rng, 200)
    ids = np.arange(200, dtype=np.int64) * 5 + 1
    project = Project(ids, labels, np.zeros((200, 2), np.float32))
    feats = pixel_features(images, dim=32)
    run = simulate(project, oracle, rng, steps=10, use_embedding=False, pixel_features=feats)
    assert len(run.tasks) == 10 and all(len(t.candidates) == 8 for t in run.tasks)
    # Pixel neighbourhoods are informative: far more matches than the 1/3 of random grids.
    matches = [project.label_of(c) == project.label_of(t.reference) for t in run.tasks for c in t.candidates]
    assert np.mean(matches) > 0.45


def test_cold_start_without_any_vectors_returns_a_task() -> None:
    rng = np.random.default_rng(4)
    project = clustered_project(rng, n=50)
    ctx = OracleContext(8, project.item_ids, KnowledgeGraph(), rng)
    task = get_oracle("active").select(ctx)
    assert len(task.candidates) == 8 and task.reference not in task.candidates
