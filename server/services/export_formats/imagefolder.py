"""ImageFolder export: ``<class name>/<item_id>.<ext>`` copies of the labelled items' images, the layout
``torchvision.datasets.ImageFolder`` and Hugging Face's ``imagefolder`` loader read.

- Unlabelled items (no cluster yet) are left out: every folder of an ImageFolder is a class, so an
  ``unlabelled/`` folder would train as one. ``metadata.csv`` counts them nowhere; the other formats
  keep them.
- Names that are not safe as folder names are made safe (``T-shirt/top`` -> ``T-shirt_top``).
- ``metadata.csv`` (``file_name, label, confidence, item_id, source, known``) holds what a folder cannot:
  each item's confidence. Its ``file_name`` column is relative to it, as Hugging Face's ``imagefolder``
  expects, so ``load_dataset("imagefolder", data_dir=...)`` picks the columns up."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO

from sqlalchemy.orm import Session, sessionmaker

from server.services.csv_cells import SafeWriter
from server.services.export_formats.archive import Files
from server.services.export_items import UNLABELLED, ExportSnapshot, folder_names, iter_images

METADATA_COLUMNS = ("file_name", "label", "confidence", "item_id", "source", "known")


def files(sessions: sessionmaker[Session], snap: ExportSnapshot, image_base: str = "") -> Files:
    folders = folder_names(snap.names)
    labelled = [item for item in snap.items if item.label != UNLABELLED]
    # Spilled to disk past 8 MiB: a million rows are not held in memory.
    with tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+", newline="", encoding="utf-8") as meta:
        writer = SafeWriter(meta, lineterminator="\n")  # type: ignore[arg-type]
        writer.writerow(METADATA_COLUMNS)
        for item, data in iter_images(sessions, labelled):
            path = f"{folders[item.label]}/{item.file_name}"
            writer.writerow((path, snap.names[item.label], item.confidence, item.item_id, item.source,
                             int(item.known)))
            yield path, [data]
        # One short row per item; written last so that it lists exactly the images that were written.
        meta.seek(0)
        yield "metadata.csv", _chunks(meta)  # type: ignore[arg-type]


def _chunks(fh: IO[str], size: int = 1 << 20) -> Iterator[bytes]:
    while text := fh.read(size):
        yield text.encode()
