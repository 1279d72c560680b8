"""The Hugging Face export read back with the real ``datasets`` and ``pyarrow``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from server.services.export_formats import write_format
from server.services.export_items import snapshot
from tests.support_exports import CLASS_NAMES, LabelledProject

datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")


def test_hf_export_loads_with_load_from_disk_with_names_labels_and_confidence(
        labelled_project: LabelledProject, tmp_path: Path) -> None:
    snap = snapshot(labelled_project.sessions, labelled_project.pid)
    write_format(labelled_project.sessions, snap, "hf", tmp_path / "hf")
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert len(ds) == 24
    assert ds.features["label"].names == CLASS_NAMES
    assert isinstance(ds.features["image"], datasets.Image)
    confidence = {item.item_id: item.confidence for item in snap.items}
    for row in ds:
        expected = labelled_project.expected_name(row["item_id"])
        if expected is None:  # no cluster yet: Hugging Face's "no label"
            assert row["label"] == -1 and row["confidence"] == 0.0
        else:
            assert ds.features["label"].int2str(row["label"]) == expected
            assert row["confidence"] == pytest.approx(confidence[row["item_id"]], abs=1e-6)
        assert row["image"].size == (12, 12)
    assert sum(1 for c in ds["confidence"] if 0.0 < c < 1.0) >= 6  # voted items carry their own confidence


def test_hf_export_parquet_holds_the_same_rows(labelled_project: LabelledProject, tmp_path: Path) -> None:
    snap = snapshot(labelled_project.sessions, labelled_project.pid)
    write_format(labelled_project.sessions, snap, "hf", tmp_path / "hf")
    table = pq.read_table(tmp_path / "hf" / "parquet" / "data.parquet")
    assert table.num_rows == 24
    assert table.column("item_id").to_pylist() == [item.item_id for item in snap.items]
    assert table.column("label").to_pylist() == [item.label for item in snap.items]
    assert np.allclose(table.column("confidence").to_numpy(), [item.confidence for item in snap.items], atol=1e-6)
    # The dataset's features travel in the schema: datasets reads the Parquet file with its class names.
    again = datasets.Dataset.from_parquet(str(tmp_path / "hf" / "parquet" / "data.parquet"),
                                          cache_dir=str(tmp_path / "cache"))
    assert again.features["label"].names == CLASS_NAMES
