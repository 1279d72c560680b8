"""COCO-style classification export: ``coco.json`` with the three lists of a COCO file, one label per
image and no boxes.

- ``categories``: ``{id, name, supercategory}`` for each cluster name, ids from 1 (COCO keeps 0 free).
- ``images``: ``{id, file_name, width, height, pal_source}`` for every item; ``id`` is PAL's item id and
  ``file_name`` the name the ImageFolder export gives its copy (``<item_id>.<ext>``).
- ``annotations``: ``{id, image_id, category_id, score, pal_known}`` for each labelled item; ``score``
  is the label's confidence. Unlabelled items are images with no annotation.

Streamed: the images, then the annotations, from the snapshot; no image bytes are read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from server.services.export_formats.archive import Files
from server.services.export_items import UNLABELLED, ExportSnapshot

_PER_CHUNK = 1000


def _array(objects: Iterator[dict[str, Any]]) -> Iterator[str]:
    yield "["
    parts: list[str] = []
    for n, obj in enumerate(objects):
        parts.append(("\n" if n == 0 else ",\n") + json.dumps(obj, ensure_ascii=False))
        if len(parts) >= _PER_CHUNK:
            yield "".join(parts)
            parts.clear()
    parts.append("\n]")
    yield "".join(parts)


def iter_coco_json(snap: ExportSnapshot) -> Iterator[bytes]:
    head = {
        "info": {"description": f"PAL project {snap.project_name!r}: cluster labels", "version": "1.0",
                 "contributor": "PAL", "pal_embedding_version": snap.embedding_version},
        "licenses": [],
        "categories": [{"id": n + 1, "name": name, "supercategory": ""} for n, name in enumerate(snap.names)],
    }
    yield json.dumps(head, ensure_ascii=False)[:-1].encode()  # the object stays open for the two lists
    yield b',\n"images": '
    images = ({"id": i.item_id, "file_name": i.file_name, "width": i.width, "height": i.height,
               "pal_source": i.source} for i in snap.items)
    for part in _array(images):
        yield part.encode()
    yield b',\n"annotations": '
    labelled = (i for i in snap.items if i.label != UNLABELLED)
    annotations = ({"id": n + 1, "image_id": i.item_id, "category_id": i.label + 1, "score": i.confidence,
                    "pal_known": i.known} for n, i in enumerate(labelled))
    for part in _array(annotations):
        yield part.encode()
    yield b"}\n"


def files(sessions: sessionmaker[Session], snap: ExportSnapshot, image_base: str = "") -> Files:
    yield "coco.json", iter_coco_json(snap)
