"""Label Studio export: ``tasks.json``, a JSON list of tasks Label Studio imports as they are, and
``label_config.xml``, the labelling interface they fit (an ``<Image>`` and a ``<Choices>`` of the
cluster names): create a project with that config and import the tasks.

A task: ``data`` holds ``image`` (a URL, see below), ``item_id`` and ``source``; a labelled item carries
one *prediction* (PAL's labels are a model's output for a reviewer to accept or correct, not a human's
annotation) whose ``result`` is a ``choices`` region with the cluster's name, and ``score`` = the
label's confidence, on the prediction and on the region. ``model_version`` names the embedding version
the label came from. Unlabelled items are tasks with no prediction.

``data.image`` is ``<image_base>/api/v1/items/<id>/image``: PAL serves the images (admins may read them
with a session or token; give Label Studio access, or point ``image_base`` at another copy).

The file is streamed: one task at a time, no image bytes needed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import quoteattr

from sqlalchemy.orm import Session, sessionmaker

from server.services.export_formats.archive import Files
from server.services.export_items import UNLABELLED, ExportItem, ExportSnapshot

FROM_NAME = "label"  # the <Choices> control
TO_NAME = "image"  # the <Image> object


def label_config(names: list[str]) -> str:
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in names)
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n'
            f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInLine="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def task(item: ExportItem, snap: ExportSnapshot, image_base: str) -> dict[str, Any]:
    out: dict[str, Any] = {"data": {"image": f"{image_base.rstrip('/')}/api/v1/items/{item.item_id}/image",
                                    "item_id": item.item_id, "source": item.source}}
    if item.label != UNLABELLED:
        score = float(item.confidence)
        version = "none" if snap.embedding_version is None else str(snap.embedding_version)
        out["predictions"] = [{
            "model_version": f"pal-embedding-{version}",
            "score": score,
            "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                        "value": {"choices": [snap.names[item.label]]}, "score": score}],
        }]
    return out


def iter_tasks_json(snap: ExportSnapshot, image_base: str) -> Iterator[bytes]:
    """The JSON list, one task per line, ~500 tasks per chunk."""
    yield b"["
    chunk: list[str] = []
    for n, item in enumerate(snap.items):
        chunk.append(("\n" if n == 0 else ",\n") + json.dumps(task(item, snap, image_base), ensure_ascii=False))
        if len(chunk) >= 500:
            yield "".join(chunk).encode()
            chunk.clear()
    chunk.append("\n]\n")
    yield "".join(chunk).encode()


def files(sessions: sessionmaker[Session], snap: ExportSnapshot, image_base: str = "") -> Files:
    yield "label_config.xml", [label_config(snap.names).encode()]
    yield "tasks.json", iter_tasks_json(snap, image_base)
