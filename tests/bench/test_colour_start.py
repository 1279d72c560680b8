"""bench.colour_start at a tiny size: the real server and trainer, 60 images of 32 px, one short cycle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import colour_start

TINY = ["--items", "60", "--size", "32", "--steps", "6", "--batch-size", "16", "--baseline-timeout", "0",
        "--timeout", "120"]


def test_colour_images_have_colour_and_one_kind_per_label() -> None:
    images, labels = colour_start.colour_images(16, 32)
    assert images.shape == (16, 32, 32, 3) and images.dtype == np.uint8
    assert len(np.unique(labels)) == 8
    assert not np.array_equal(images[..., 0], images[..., 2])  # not gray in three channels


def test_neighbour_ranks_nearest_first() -> None:
    ids = np.array([10, 11, 12, 13])
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    assert colour_start.neighbour_ranks(ids, vectors, 10, [11, 12, 13]).tolist() == [1, 2, 3]


def test_colour_start_tiny_run_publishes_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert colour_start.main([*TINY, "--out-dir", str(out), "--work-dir", str(tmp_path / "work")]) == 0
    result = json.loads((out / "colour_start.json").read_text())
    frozen = result["frozen"]
    assert frozen["published"] and frozen["seconds_to_first_version"] > 0
    assert frozen["feature_images_per_s"] > 0
    grid = frozen["next_grid"]
    assert grid["oracle"] == "active"  # the embedding-driven oracle, not the warm-up grid
    assert grid["stats_embedding_id"] == frozen["embedding_id"]
    assert len(grid["candidate_ranks"]) == 8
    assert result["baseline"] is None and {"goal_met", "machine", "items"} <= result.keys()
    assert "Colour start" in (out / "colour_start.md").read_text()


def test_colour_start_broken_weights_path_fails_with_the_trainers_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "resnet18_weights.pth"
    code = colour_start.main([*TINY, "--weights", str(missing), "--out-dir", str(tmp_path / "out"),
                              "--work-dir", str(tmp_path / "work")])
    assert code == 1
    err = capsys.readouterr().err
    assert "published no embedding" in err and f"weights file {missing} does not exist" in err
    assert not (tmp_path / "out" / "colour_start.json").exists()
