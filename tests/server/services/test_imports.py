"""Imports go on past bad inputs and report each one."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.orm import Session

from server import models
from server.admin import import_path
from server.services import imports
from tests.conftest import LiveServer
from tests.support import make_project, make_user, synthetic_images


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _folder(root: Path) -> None:
    images, _ = synthetic_images(6)
    for i, img in enumerate(images):
        cls = root / ("shirts" if i % 2 else "shoes")
        cls.mkdir(parents=True, exist_ok=True)
        (cls / f"{i}.png").write_bytes(_png(img))
    (root / "shoes" / "copy-of-0.png").write_bytes(_png(images[0]))  # duplicate
    (root / "shirts" / "broken.png").write_bytes(_png(images[1])[:60])  # truncated
    (root / "shirts" / "notes.txt").write_text("not an image")


def test_folder_import_reports_corrupt_duplicate_and_non_image(db: Session, tmp_path: Path) -> None:
    _folder(tmp_path)
    pid = make_project(db, n_items=0)
    result = import_path(db, project_id=pid, path=tmp_path, show_progress=False)
    assert result.imported == 6
    reasons = {Path(s["source"]).name: s["reason"] for s in result.skipped}
    assert set(reasons) == {"copy-of-0.png", "broken.png", "notes.txt"}
    assert "duplicate" in reasons["copy-of-0.png"]
    assert "corrupt" in reasons["broken.png"] or "not an image" in reasons["broken.png"]
    assert "not an image" in reasons["notes.txt"]
    labels = db.execute(sa.select(models.Item.label).where(models.Item.project_id == pid)).scalars().all()
    assert sorted(labels) == ["shirts"] * 3 + ["shoes"] * 3


def test_npz_import_keeps_labels_and_split_hidden(db: Session, tmp_path: Path) -> None:
    images, labels = synthetic_images(10)
    path = tmp_path / "data.npz"
    np.savez(path, images=images, labels=labels, split=np.array(["train"] * 8 + ["test"] * 2))
    pid = make_project(db, n_items=0)
    result = import_path(db, project_id=pid, path=path, show_progress=False)
    assert (result.imported, result.skipped) == (10, [])
    rows = db.execute(sa.select(models.Item.label, models.Item.split).where(models.Item.project_id == pid)).all()
    assert sorted(r.split for r in rows) == ["test"] * 2 + ["train"] * 8


def test_npz_with_wrong_shape_is_refused_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((3, 4, 4, 2), dtype=np.uint8))
    with np.load(path) as npz, pytest.raises(imports.ImportFormatError, match="uint8"):
        imports.npz_sources(npz)


def test_manifest_path_cannot_leave_its_folder(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    manifest = inner / "m.jsonl"
    manifest.write_text(json.dumps({"path": "../secret.png"}) + "\n")
    with pytest.raises(imports.ImportFormatError, match="leaves"):
        imports.manifest_sources(manifest)


def test_csv_manifest_import_reads_labels(db: Session, tmp_path: Path) -> None:
    images, _ = synthetic_images(3)
    for i, img in enumerate(images):
        (tmp_path / f"{i}.png").write_bytes(_png(img))
    (tmp_path / "m.csv").write_text("path,label\n0.png,a\n1.png,b\n2.png,a\nmissing.png,b\n")
    pid = make_project(db, n_items=0)
    result = import_path(db, project_id=pid, path=tmp_path / "m.csv", show_progress=False)
    assert result.imported == 3
    assert [s["source"] for s in result.skipped] == ["missing.png"]


def test_zip_upload_over_http_reports_skips(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=0)
    images, _ = synthetic_images(4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for i, img in enumerate(images):
            archive.writestr(f"cls{i % 2}/{i}.png", _png(img))
        archive.writestr("cls0/dup.png", _png(images[0]))
        archive.writestr("../evil.png", _png(images[1]))
    with live_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/imports", files={"file": ("f.zip", buf.getvalue())})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["imported"] == 4
    assert sorted(s["source"] for s in body["skipped"]) == ["../evil.png", "cls0/dup.png"]


def test_image_served_with_cache_headers_and_etag(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, n_items=3, members=[annotator])
    item_id = db.scalar(sa.select(sa.func.min(models.Item.id)).where(models.Item.project_id == pid))
    with live_server.client(annotator.token) as client:
        first = client.get(f"/api/v1/items/{item_id}/image")
        again = client.get(f"/api/v1/items/{item_id}/image", headers={"If-None-Match": first.headers["ETag"]})
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert "max-age" in first.headers["Cache-Control"]
    assert again.status_code == 304


def test_an_import_that_fails_part_way_stores_nothing(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """One transaction, even when it writes often (every item here, as a slow import would to keep
    PostgreSQL from ending a session idle in a transaction)."""
    monkeypatch.setattr(imports, "WRITE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(imports, "BATCH", 2)
    pid = make_project(db, n_items=0)
    images, _ = synthetic_images(7, seed=3)

    def load(i: int) -> imports.DecodedImage:
        if i == 6:
            raise imports.ImportFormatError("item 6 is hostile")
        return imports.decode_array(images[i])

    sources = [imports.Source(name=f"s{i}", load=(lambda i=i: load(i))) for i in range(7)]
    with pytest.raises(imports.ImportFormatError):
        imports.import_sources(db, project_id=pid, sources=sources)
    db.commit()
    assert db.scalar(sa.select(sa.func.count()).select_from(models.Item).where(models.Item.project_id == pid)) == 0
    result = imports.import_sources(db, project_id=pid, sources=sources[:6])
    assert result.imported == 6


def test_open_npz_refuses_empty_and_bare_npy_files_without_decoding(tmp_path: Path) -> None:
    empty, bare, good = tmp_path / "empty.npz", tmp_path / "bare.npz", tmp_path / "good.npz"
    empty.write_bytes(b"")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (10**6, 10**6, 10**6)})
    bare.write_bytes(header.getvalue())  # np.load would try to allocate 10^18 bytes
    np.savez(good, images=np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(imports.ImportFormatError, match="empty"):
        imports.open_npz(empty)
    with pytest.raises(imports.ImportFormatError, match="not an .npz"):
        imports.open_npz(bare)
    with pytest.raises(imports.ImportFormatError, match="empty"):
        imports.open_npz(io.BytesIO(b""))
    with imports.open_npz(good) as data:
        assert len(imports.npz_sources(data)) == 2


def test_pal_import_of_an_empty_npz_exits_with_one_line(db: Session, tmp_path: Path) -> None:
    pid = make_project(db, n_items=0)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(SystemExit, match="empty.npz: the .npz is empty"):
        import_path(db, project_id=pid, path=empty, show_progress=False)
