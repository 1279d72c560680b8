"""Where an export's files go: a folder (``pal export``) or a ZIP archive streamed over HTTP.

A format yields ``(relative path, chunks)`` pairs; neither target holds more than one chunk at a time.
The archive is written to a non-seekable buffer (ZIP data descriptors), drained after every chunk, so
the response starts at once and a large export never sits in memory. Images are already compressed:
stored, not deflated; JSON and CSV are deflated."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

Files = Iterator[tuple[str, Iterable[bytes]]]

_STORED = (".png", ".jpg", ".webp", ".parquet", ".arrow")


def write_files(files: Files, out_dir: Path) -> int:
    """Write every file under ``out_dir`` (each to a temporary name, then renamed); returns the count."""
    count = 0
    for name, chunks in files:
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial")
        with tmp.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        tmp.replace(path)
        count += 1
    return count


class _Drain(io.RawIOBase):
    """A write-only, non-seekable buffer that gives back what was written since the last drain."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def zip_stream(files: Files, prefix: str) -> Iterator[bytes]:
    """The files as one ZIP archive, in chunks; every path under the folder ``prefix``."""
    buf = _Drain()
    with zipfile.ZipFile(buf, "w", allowZip64=True) as archive:
        for name, chunks in files:
            method = zipfile.ZIP_STORED if name.endswith(_STORED) else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(f"{prefix}/{name}")
            info.compress_type = method
            with archive.open(info, "w", force_zip64=True) as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    if (out := buf.drain()):
                        yield out
            if (out := buf.drain()):
                yield out
    if (out := buf.drain()):
        yield out


def folder_files(root: Path) -> Files:
    """Every file under ``root`` (sorted), read in 1 MiB chunks: a format built on disk, as files."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        yield path.relative_to(root).as_posix(), _read_chunks(path)


def _read_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk
