"""The COCO-style classification export: the structure COCO readers expect, one annotation per label."""

from __future__ import annotations

import json
from pathlib import Path

from server.services.export_formats import write_format
from server.services.export_items import snapshot
from tests.support_exports import NAMES, LabelledProject


def test_coco_export_has_categories_images_and_scored_annotations(labelled_project: LabelledProject,
                                                                   tmp_path: Path) -> None:
    snap = snapshot(labelled_project.sessions, labelled_project.pid)
    write_format(labelled_project.sessions, snap, "coco", tmp_path / "coco")
    doc = json.loads((tmp_path / "coco" / "coco.json").read_text(encoding="utf-8"))
    assert set(doc) >= {"info", "licenses", "images", "annotations", "categories"}
    categories = {c["id"]: c["name"] for c in doc["categories"]}
    assert sorted(categories.values()) == sorted(NAMES.values()) and 0 not in categories
    images = {img["id"]: img for img in doc["images"]}
    assert len(images) == 24
    assert all(img["width"] == img["height"] == 12 and img["file_name"].endswith(".png") for img in images.values())
    ids = [a["id"] for a in doc["annotations"]]
    assert len(ids) == len(set(ids)) == 18
    confidence = {item.item_id: item.confidence for item in snap.items}
    for a in doc["annotations"]:
        assert a["image_id"] in images
        assert categories[a["category_id"]] == labelled_project.expected_name(a["image_id"])
        assert a["score"] == confidence[a["image_id"]] and 0.0 < a["score"] <= 1.0
