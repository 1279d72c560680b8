"""Importing items from an image folder, a CSV/JSONL manifest or an .npz.

Every input is decoded and content-hashed; duplicates (within the import or already in the
project) and unreadable files are skipped and reported, and the import goes on. Class subfolders,
manifest ``label`` columns and .npz ``labels`` become hidden ground truth (evaluation only).

An input that is hostile or wrong as a whole (a label too long to store, a zip or .npz that would
decompress past ``PAL_MAX_IMPORT_FILE_MB`` / ``PAL_MAX_IMPORT_TOTAL_MB``) raises
:class:`ImportFormatError`, and the import stores nothing: it is one transaction."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.wire import npy_nbytes, read_npy_header
from server import models
from server.config import get_settings
from server.services.images import BadImage, DecodedImage, decode_array, decode_bytes

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
BATCH = 500
WRITE_EVERY_SECONDS = 10.0  # inside the import's one transaction: PostgreSQL ends sessions idle in one for 60 s
MIB = 1024 * 1024
CHUNK = MIB
MAX_LABEL = 200  # models.Item.label
MAX_SPLIT = 16  # models.Item.split

Loader = Callable[[], DecodedImage]


@dataclass(frozen=True)
class Source:
    name: str
    load: Loader
    label: str | None = None
    split: str | None = None


@dataclass
class ImportResult:
    imported: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append({"source": source, "reason": reason})


class ImportFormatError(ValueError):
    """The input as a whole cannot be read (wrong keys, shapes, columns) or is too large once decompressed."""


@dataclass
class _Budget:
    """Decompressed bytes an import may still read."""
    left: int


def _file_limit() -> tuple[int, str]:
    mb = get_settings().max_import_file_mb
    return mb * MIB, f"{mb} MB allowed per file (PAL_MAX_IMPORT_FILE_MB)"


def _total_limit() -> tuple[int, str]:
    mb = get_settings().max_import_total_mb
    return mb * MIB, f"{mb} MB allowed per import (PAL_MAX_IMPORT_TOTAL_MB)"


def open_npz(file: str | Path | IO[bytes]) -> np.lib.npyio.NpzFile:
    """An .npz opened lazily (no array is decoded); ImportFormatError if it is empty or not a zip
    (a bare .npy would be decoded whole by ``np.load``)."""
    if isinstance(file, (str, Path)):
        with open(file, "rb") as fh:
            magic = fh.read(4)
    else:
        magic = file.read(4)
        file.seek(0)
    if not magic:
        raise ImportFormatError("the .npz is empty")
    if magic != b"PK\x03\x04":
        raise ImportFormatError("not an .npz (a zip of .npy arrays)")
    try:
        data = np.load(file, allow_pickle=False)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ImportFormatError(f"not a readable .npz: {exc}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ImportFormatError("not an .npz (a zip of .npy arrays)")
    return data


def _check_npz_sizes(data: np.lib.npyio.NpzFile) -> None:
    """Each member's decoded size from its .npy header (or its declared size if it is not a .npy),
    added up against the per-import limit before anything is decoded."""
    limit, allowed = _total_limit()
    total = 0
    archive = data.zip
    if archive is None:
        raise ImportFormatError("the .npz is closed")
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        if info.filename.endswith(".npy"):
            try:
                with archive.open(info) as member:
                    shape, dtype = read_npy_header(member)
            except (ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise ImportFormatError(f"'{key}' is not a readable .npy: {exc}") from exc
            size, what = npy_nbytes(shape, dtype), f"{dtype} {shape}"
        else:
            size, what = info.file_size, "a file"
        total += size
        if total > limit:
            raise ImportFormatError(f"'{key}' ({what}) decodes to {size} bytes, which takes the .npz past the "
                                    f"{allowed}")


def _file_loader(path: Path) -> Loader:
    return lambda: decode_bytes(path.read_bytes())


def folder_sources(root: Path, *, confine_to: Path | None = None) -> tuple[list[Source], list[dict[str, str]]]:
    """Images under ``root``; a file inside a first-level subfolder gets that folder's name as label.
    With ``confine_to`` (imports over the API), a file whose real path, symbolic links followed, is
    outside that folder is skipped: a link must not carry an import out of the import root."""
    if not root.is_dir():
        raise ImportFormatError(f"{root} is not a folder")
    limit = confine_to.resolve() if confine_to is not None else None
    sources: list[Source] = []
    skipped: list[dict[str, str]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.name.startswith("."):
            continue
        if limit is not None and not path.resolve().is_relative_to(limit):
            skipped.append({"source": str(rel), "reason": "links outside the import folder"})
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append({"source": str(rel), "reason": f"not an image file (suffix {path.suffix or 'none'})"})
            continue
        label = rel.parts[0] if len(rel.parts) > 1 else None
        sources.append(Source(name=str(rel), load=_file_loader(path), label=label))
    return sources, skipped


def manifest_sources(manifest: Path, *, root: Path | None = None) -> list[Source]:
    """CSV (header with ``path``, optional ``label``, ``split``) or JSONL (one object per line).
    Paths are relative to the manifest's folder and may not leave ``root`` (default: that folder)."""
    base = manifest.parent.resolve()
    limit = (root or base).resolve()
    text = manifest.read_text(encoding="utf-8")
    if manifest.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ImportFormatError(f"{manifest.name} line {n}: invalid JSON ({exc.msg})") from exc
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    sources = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not row.get("path"):
            raise ImportFormatError(f"{manifest.name} row {n}: needs a 'path' field")
        path = (base / str(row["path"])).resolve()
        if not path.is_relative_to(limit):
            raise ImportFormatError(f"{manifest.name} row {n}: path {row['path']!r} leaves the import folder")
        label = row.get("label")
        sources.append(Source(name=str(row["path"]), load=_file_loader(path),
                              label=None if label in (None, "") else str(label),
                              split=row.get("split") or None))
    return sources


def npz_sources(data: np.lib.npyio.NpzFile) -> list[Source]:
    """``images`` uint8 [N,H,W] or [N,H,W,3]; optional ``labels`` [N], ``split`` [N], ``class_names``."""
    if "images" not in data.files:
        raise ImportFormatError(f".npz needs an 'images' array; it has {sorted(data.files)}")
    _check_npz_sizes(data)
    images = data["images"]
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3):
        raise ImportFormatError(f"'images' must be uint8 [N,H,W] or [N,H,W,3], got {images.dtype} {images.shape}")
    n = len(images)
    labels = data["labels"] if "labels" in data.files else None
    split = data["split"] if "split" in data.files else None
    names = data["class_names"] if "class_names" in data.files else None
    for key, arr in (("labels", labels), ("split", split)):
        if arr is not None and arr.shape[:1] != (n,):
            raise ImportFormatError(f"'{key}' must have {n} entries like 'images', got shape {arr.shape}")

    def label_of(i: int) -> str | None:
        if labels is None:
            return None
        value = labels[i]
        if names is not None and np.issubdtype(labels.dtype, np.integer) and 0 <= int(value) < len(names):
            return str(names[int(value)])
        return str(value.item() if hasattr(value, "item") else value)

    def split_of(i: int) -> str | None:
        if split is None:
            return None
        value = split[i]
        if np.issubdtype(split.dtype, np.integer):
            return "test" if int(value) == 1 else "train"
        return str(value)

    def loader(i: int) -> Loader:
        return lambda: decode_array(images[i])

    return [Source(name=f"images[{i}]", load=loader(i), label=label_of(i), split=split_of(i)) for i in range(n)]


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    """An entry read in chunks and stopped at the limits: its header's sizes may lie."""
    file_limit, file_allowed = _file_limit()
    chunks: list[bytes] = []
    size = 0
    with archive.open(info) as member:
        while chunk := member.read(CHUNK):
            size += len(chunk)
            if size > file_limit:
                raise ImportFormatError(f"{info.filename} decompresses to more than the {file_allowed}")
            if size > budget.left:
                raise ImportFormatError(f"the archive decompresses to more than the {_total_limit()[1]}")
            chunks.append(chunk)
    budget.left -= size
    return b"".join(chunks)


def _zip_loader(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> Loader:
    return lambda: decode_bytes(_read_capped(archive, info, budget))


def _check_declared_size(info: zipfile.ZipInfo, budget: _Budget, declared: int) -> int:
    """The archive's own claim, checked before anything is read: ``declared`` plus this entry."""
    file_limit, file_allowed = _file_limit()
    if info.file_size > file_limit:
        raise ImportFormatError(f"{info.filename} decompresses to {info.file_size} bytes, over the {file_allowed}")
    declared += info.file_size
    if declared > budget.left:
        raise ImportFormatError(f"the archive's files decompress to more than the {_total_limit()[1]}")
    return declared


def zip_sources(archive: zipfile.ZipFile) -> tuple[list[Source], list[dict[str, str]]]:
    """A zipped image folder (uploads over the API); first-level folders are labels."""
    sources: list[Source] = []
    skipped: list[dict[str, str]] = []
    budget, declared = _Budget(_total_limit()[0]), 0
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = info.filename
        parts = [p for p in name.split("/") if p]
        if any(p == ".." for p in parts) or name.startswith("/"):
            skipped.append({"source": name, "reason": "unsafe path in archive"})
            continue
        if parts[-1].startswith(".") or "__MACOSX" in parts:
            continue
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append({"source": name, "reason": "not an image file"})
            continue
        declared = _check_declared_size(info, budget, declared)
        label = parts[-2] if len(parts) > 1 else None
        sources.append(Source(name=name, load=_zip_loader(archive, info, budget), label=label))
    return sources, skipped


def check_sources(sources: Iterable[Source]) -> list[Source]:
    """Everything that can be checked before the first write: labels and splits that fit their columns."""
    checked = list(sources)
    for source in checked:
        for what, value, most in (("label", source.label, MAX_LABEL), ("split", source.split, MAX_SPLIT)):
            if value is None:
                continue
            if len(value) > most:
                raise ImportFormatError(f"{source.name}: the {what} has {len(value)} characters, at most {most} "
                                        f"are allowed{' (class folder names are labels)' if what == 'label' else ''}")
            if "\x00" in value:
                raise ImportFormatError(f"{source.name}: the {what} contains a NUL character")
    return checked


def import_sources(
    db: Session, *, project_id: int, sources: Iterable[Source], result: ImportResult | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Check, then decode, dedupe and insert in batches, all in one transaction: an import that
    fails part-way (ImportFormatError, a database error, an interruption) stores nothing."""
    result = result or ImportResult()
    checked = check_sources(sources)
    seen: set[str] = set(
        db.execute(sa.select(models.Item.sha256).where(models.Item.project_id == project_id)).scalars()
    )
    db.commit()
    pending: list[dict[str, object]] = []
    imported, last_write = 0, time.monotonic()

    def flush() -> None:
        nonlocal imported, last_write
        if pending:
            db.execute(sa.insert(models.Item), pending)
            imported += len(pending)
            pending.clear()
        else:
            db.execute(sa.select(1))  # the transaction is busy, not idle
        last_write = time.monotonic()

    try:
        for source in _with_progress(checked, on_progress):
            row = _row(source, project_id, seen, result)
            if row is not None:
                pending.append(row)
            if len(pending) >= BATCH or time.monotonic() - last_write > WRITE_EVERY_SECONDS:
                flush()
        flush()
        db.commit()
    except BaseException:
        db.rollback()
        raise
    result.imported += imported
    return result


def _row(source: Source, project_id: int, seen: set[str], result: ImportResult) -> dict[str, object] | None:
    """The item row for ``source``, or None when it is skipped (unreadable, a duplicate)."""
    try:
        img = source.load()
    except BadImage as exc:
        result.skip(source.name, str(exc))
        return None
    except OSError as exc:
        result.skip(source.name, f"unreadable: {exc.strerror or exc}")
        return None
    if img.sha256 in seen:
        result.skip(source.name, "duplicate of an image already in the project")
        return None
    seen.add(img.sha256)
    return {
        "project_id": project_id, "sha256": img.sha256, "source": source.name[:1000], "width": img.width,
        "height": img.height, "channels": img.channels, "mime": img.mime, "data": img.data,
        "label": source.label, "split": source.split,
    }


def _with_progress(sources: Iterable[Source], on_progress: Callable[[int], None] | None) -> Iterator[Source]:
    for source in sources:
        yield source
        if on_progress is not None:
            on_progress(1)
