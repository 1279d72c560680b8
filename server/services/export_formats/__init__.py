"""The labelled-dataset export formats, one module each, behind one registry.

Every format turns an :class:`~server.services.export_items.ExportSnapshot` into files
(``archive.Files``): ``pal export --format F`` writes them into a folder, the HTTP route streams them as
one ZIP archive. ``csv``, PAL's own files (``server/services/export.py``), is not here: it predates the
snapshot and keeps its own routes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from server.services.export_formats import coco, hf, imagefolder, label_studio
from server.services.export_formats.archive import Files, write_files
from server.services.export_items import ExportSnapshot

FileMaker = Callable[[sessionmaker[Session], ExportSnapshot, str], Files]

FORMATS: dict[str, FileMaker] = {
    "imagefolder": imagefolder.files,
    "hf": hf.files,
    "label-studio": label_studio.files,
    "coco": coco.files,
}
ALL_FORMATS = ("csv", *FORMATS)
MissingExtra = hf.MissingExtra


def write_format(sessions: sessionmaker[Session], snap: ExportSnapshot, fmt: str, out_dir: Path,
                 image_base: str = "") -> None:
    """Write format ``fmt`` of ``snap`` into ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":  # datasets writes its own files: straight into the folder, no temporary copy
        hf.write_dir(sessions, snap, out_dir)
        return
    write_files(FORMATS[fmt](sessions, snap, image_base), out_dir)
