"""Export targets: the streamed ZIP archive and the folder writer (server/services/export_formats/archive.py)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

from server.services.export_formats.archive import Files, write_files, zip_stream


def _files(log: list[str], n: int) -> Files:
    for k in range(n):
        log.append(f"made {k}")
        yield f"d/{k}.png", [bytes([k]) * 1000]


def test_zip_stream_sends_each_file_before_the_next_is_made() -> None:
    log: list[str] = []
    chunks: Iterator[bytes] = zip_stream(_files(log, 3), "export")
    first = next(chunks)
    assert first and log == ["made 0"]  # bytes go out while later files are not even read yet
    body = first + b"".join(chunks)
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.namelist() == ["export/d/0.png", "export/d/1.png", "export/d/2.png"]
    assert archive.read("export/d/2.png") == bytes([2]) * 1000
    assert archive.testzip() is None


def test_write_files_leaves_no_partial_file_behind(tmp_path: Path) -> None:
    log: list[str] = []
    assert write_files(_files(log, 2), tmp_path) == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == \
        ["d/0.png", "d/1.png"]
