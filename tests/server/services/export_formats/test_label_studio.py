"""The Label Studio export checked by Label Studio's own SDK (``label_studio_sdk.label_interface``: the
labelling config parsed, every task's data and every prediction validated against it), and by a
structural check of the task import format that runs without the SDK."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from server.services.export_formats import write_format
from server.services.export_items import snapshot
from tests.support_exports import CLASS_NAMES, NAMES, LabelledProject

BASE = "http://pal.example:8000"


def _export(project: LabelledProject, out: Path) -> tuple[str, list[dict[str, Any]]]:
    snap = snapshot(project.sessions, project.pid)
    write_format(project.sessions, snap, "label-studio", out, image_base=BASE)
    return (out / "label_config.xml").read_text(encoding="utf-8"), json.loads((out / "tasks.json").read_text("utf-8"))


def test_label_studio_export_validates_with_the_label_studio_sdk(labelled_project: LabelledProject,
                                                                 tmp_path: Path) -> None:
    interface = pytest.importorskip("label_studio_sdk.label_interface")
    config, tasks = _export(labelled_project, tmp_path)
    li = interface.LabelInterface(config)
    assert sorted(li.get_control("label").labels) == sorted(NAMES.values())
    assert len(tasks) == 24
    for task in tasks:
        # validate_task's own prediction check is broken in SDK 2.1 (it calls validate_prediction()
        # without the prediction): the data against the config here, each prediction below.
        assert li.validate_task({"data": task["data"]}), task
        for prediction in task.get("predictions", []):
            assert li.validate_prediction(prediction, return_errors=True) == [], prediction
    # and the SDK does reject what Label Studio would: a choice the config does not list
    wrong = json.loads(json.dumps(next(t for t in tasks if "predictions" in t)["predictions"][0]))
    wrong["result"][0]["value"]["choices"] = ["not a class"]
    assert li.validate_prediction(wrong, return_errors=True) != []


def test_label_studio_tasks_have_the_import_format_with_label_and_score(labelled_project: LabelledProject,
                                                                        tmp_path: Path) -> None:
    config, tasks = _export(labelled_project, tmp_path)
    root = ET.fromstring(config)
    image = root.find("Image")
    choices = root.find("Choices")
    assert image is not None and choices is not None and image.get("value") == "$image"
    assert choices.get("toName") == image.get("name")
    allowed = [c.get("value") for c in choices.findall("Choice")]
    assert allowed == CLASS_NAMES
    snap = snapshot(labelled_project.sessions, labelled_project.pid)
    confidence = {item.item_id: item.confidence for item in snap.items}
    for task in tasks:
        item_id = task["data"]["item_id"]
        assert task["data"]["image"] == f"{BASE}/api/v1/items/{item_id}/image"
        expected = labelled_project.expected_name(item_id)
        if expected is None:
            assert "predictions" not in task  # left for a person to label
            continue
        (prediction,) = task["predictions"]
        (region,) = prediction["result"]
        assert region["from_name"] == choices.get("name") and region["to_name"] == image.get("name")
        assert region["type"] == "choices" and region["value"] == {"choices": [expected]}
        assert prediction["score"] == region["score"] == confidence[item_id]
        assert isinstance(prediction["model_version"], str)
