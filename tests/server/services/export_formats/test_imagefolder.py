"""The ImageFolder export read back with ``torchvision.datasets.ImageFolder``."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from server.services.export_formats import write_format
from server.services.export_items import snapshot
from tests.support_exports import LabelledProject

torchvision = pytest.importorskip("torchvision")


def test_imagefolder_export_reads_back_with_one_class_per_name(labelled_project: LabelledProject,
                                                                tmp_path: Path) -> None:
    snap = snapshot(labelled_project.sessions, labelled_project.pid)
    write_format(labelled_project.sessions, snap, "imagefolder", tmp_path / "if")
    folder = torchvision.datasets.ImageFolder(str(tmp_path / "if"))
    # "T-shirt/top" cannot be a folder name; unlabelled items are left out, not a class of their own.
    assert folder.classes == ["Bag é", "T-shirt_top", "Trouser"]
    counts = Counter(folder.classes[target] for _path, target in folder.samples)
    assert counts == {"Bag é": 6, "T-shirt_top": 6, "Trouser": 6}
    image, _target = folder[0]
    assert image.size == (12, 12)


def test_imagefolder_export_puts_each_item_under_its_cluster_name(labelled_project: LabelledProject,
                                                                 tmp_path: Path) -> None:
    snap = snapshot(labelled_project.sessions, labelled_project.pid)
    write_format(labelled_project.sessions, snap, "imagefolder", tmp_path / "if")
    with (tmp_path / "if" / "metadata.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 18
    confidence = {item.item_id: item.confidence for item in snap.items}
    for row in rows:
        item_id = int(row["item_id"])
        assert row["label"] == labelled_project.expected_name(item_id)
        assert (tmp_path / "if" / row["file_name"]).is_file()
        assert float(row["confidence"]) == pytest.approx(confidence[item_id])
