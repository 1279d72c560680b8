"""Hostile files: zip and .npz bombs, imports that fail part-way, empty and lying .npz/.npy headers.
Every refusal is a 4xx JSON error naming the field (and the setting that raises a limit), and the
project keeps exactly the items it had."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.orm import Session

from pal.wire import encode_npy
from server import models
from tests.conftest import LiveServer, start_server, stop_server
from tests.support import Actor, make_project, make_user

MIB = 1024 * 1024


def _npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zip_of_zeros(name: str, zeros: int, prefix: bytes = b"") -> bytes:
    """A one-entry zip whose entry is ``prefix`` then ``zeros`` zero bytes (a multiple of 1 MiB),
    deflated once per MiB and repeated, so that a 1 GiB entry takes well under a second to build."""
    chunk = b"\0" * MIB
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    piece = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    data = head + piece * (zeros // MIB) + comp.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(zeros // MIB):
        crc = zlib.crc32(chunk, crc)
    size, raw = len(prefix) + zeros, name.encode()
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), size, len(raw), 0) + raw
    central = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), size, len(raw),
                          0, 0, 0, 0, 0, 0) + raw
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    return local + data + central + end


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, size=(8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _items(db: Session, pid: int) -> int:
    db.commit()  # a fresh snapshot
    return int(db.scalar(sa.select(sa.func.count()).select_from(models.Item).where(models.Item.project_id == pid))
               or 0)


def _error(resp: httpx.Response, field: str) -> str:
    """The refusal's message, after checking that it is a 4xx in the project's format naming ``field``."""
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    error = resp.json()["error"]
    assert {f["field"] for f in error.get("fields", [])} == {field}, error
    return str(error["message"])


@pytest.fixture(scope="module")
def bounded_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(database_url, tmp_path_factory.mktemp("bounded") / "server.log",
                          env={"PAL_MAX_UPLOAD_MB": "4", "PAL_MAX_IMPORT_FILE_MB": "1",
                               "PAL_MAX_IMPORT_TOTAL_MB": "2"})
    yield server
    stop_server(server)


@pytest.fixture
def admin_project(db: Session) -> tuple[Actor, int]:
    return make_user(db, "admin"), make_project(db, n_items=3)


def _import(server: LiveServer, admin: Actor, pid: int, name: str, body: bytes) -> httpx.Response:
    with server.client(admin.token) as client:
        return client.post(f"/api/v1/projects/{pid}/imports", files={"file": (name, body, "application/octet-stream")})


# ------------------------------------------------------------------------------------------ bombs


def test_zip_entry_declaring_a_gibibyte_is_refused_unread(bounded_server: LiveServer,
                                                          admin_project: tuple[Actor, int], db: Session) -> None:
    admin, pid = admin_project
    bomb = _zip_of_zeros("cats/bomb.png", 1024 * MIB)
    assert len(bomb) < 1.1 * MIB
    resp = _import(bounded_server, admin, pid, "bomb.zip", bomb)
    message = _error(resp, "file")
    assert resp.status_code == 422 and "cats/bomb.png" in message and "PAL_MAX_IMPORT_FILE_MB" in message
    assert resp.elapsed.total_seconds() < 5
    assert _items(db, pid) == 3


def test_zip_whose_entries_add_up_past_the_import_limit_is_refused(bounded_server: LiveServer,
                                                                   admin_project: tuple[Actor, int],
                                                                   db: Session) -> None:
    admin, pid = admin_project
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ok.png", _png(1))
        for n in range(3):  # each under the per-file limit, together over the per-import one
            archive.writestr(f"big{n}.png", b"\0" * (MIB - 1000))
    resp = _import(bounded_server, admin, pid, "many.zip", buf.getvalue())
    message = _error(resp, "file")
    assert resp.status_code == 422 and "PAL_MAX_IMPORT_TOTAL_MB" in message
    assert _items(db, pid) == 3


def test_npz_holding_512_mib_of_zeros_is_refused_before_decoding(bounded_server: LiveServer,
                                                                 admin_project: tuple[Actor, int],
                                                                 db: Session) -> None:
    admin, pid = admin_project
    bomb = _zip_of_zeros("images.npy", 512 * MIB, prefix=_npy_header((8, 8192, 8192)))
    assert len(bomb) < 0.6 * MIB
    resp = _import(bounded_server, admin, pid, "bomb.npz", bomb)
    message = _error(resp, "file")
    assert resp.status_code == 422 and "images" in message and "PAL_MAX_IMPORT_TOTAL_MB" in message
    assert resp.elapsed.total_seconds() < 5
    assert _items(db, pid) == 3


# ------------------------------------------------------------------------------------------ atomic imports


def test_npz_with_a_bad_label_late_in_the_file_stores_nothing(bounded_server: LiveServer,
                                                              admin_project: tuple[Actor, int],
                                                              db: Session) -> None:
    admin, pid = admin_project
    n = 600
    images = np.random.default_rng(5).integers(0, 255, size=(n, 8, 8), dtype=np.uint8)
    labels = np.array(["cat"] * n, dtype="<U300")
    labels[550] = "x" * 300
    buf = io.BytesIO()
    np.savez(buf, images=images, labels=labels)
    resp = _import(bounded_server, admin, pid, "labels.npz", buf.getvalue())
    message = _error(resp, "file")
    assert resp.status_code == 422 and "images[550]" in message and "label" in message
    assert _items(db, pid) == 3


def test_zip_with_a_long_folder_name_late_in_the_archive_stores_nothing(bounded_server: LiveServer,
                                                                        admin_project: tuple[Actor, int],
                                                                        db: Session) -> None:
    admin, pid = admin_project
    buf = io.BytesIO()
    long_folder = "d" * 250
    with zipfile.ZipFile(buf, "w") as archive:
        for n in range(520):
            archive.writestr(f"cats/{n}.png", _png(1000 + n))
        archive.writestr(f"{long_folder}/last.png", _png(99))
    resp = _import(bounded_server, admin, pid, "folders.zip", buf.getvalue())
    message = _error(resp, "file")
    assert resp.status_code == 422 and f"{long_folder}/last.png" in message and "label" in message
    assert _items(db, pid) == 3


# ------------------------------------------------------------------------------------------ hostile headers


def test_npz_whose_header_declares_a_huge_shape_is_a_422(bounded_server: LiveServer,
                                                         admin_project: tuple[Actor, int], db: Session) -> None:
    admin, pid = admin_project
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("images.npy", _npy_header((10**6, 10**6, 10**6)))
    resp = _import(bounded_server, admin, pid, "huge.npz", buf.getvalue())
    assert resp.status_code == 422 and "images" in _error(resp, "file")
    assert _items(db, pid) == 3


def test_empty_npz_is_a_422(bounded_server: LiveServer, admin_project: tuple[Actor, int], db: Session) -> None:
    admin, pid = admin_project
    resp = _import(bounded_server, admin, pid, "empty.npz", b"")
    assert resp.status_code == 422 and _error(resp, "file")
    assert _items(db, pid) == 3


@pytest.mark.parametrize(("field", "body"), [
    ("item_ids", b""),
    ("vectors", b""),
    ("item_ids", _npy_header((10**18,), "<i8")),
    ("vectors", _npy_header((10**9, 10**9), "<f4")),
    ("vectors", _npy_header((3, 4), "<f4") + b"\0" * 8),  # declares 48 bytes, holds 8
])
def test_hostile_embedding_uploads_are_a_422_naming_the_field(bounded_server: LiveServer, db: Session,
                                                             field: str, body: bytes) -> None:
    trainer = make_user(db, "trainer")
    pid = make_project(db, n_items=3)
    ids = np.asarray(db.execute(sa.select(models.Item.id).where(models.Item.project_id == pid)).scalars().all())
    files = {"item_ids": ("ids.npy", encode_npy(ids)),
             "vectors": ("v.npy", encode_npy(np.ones((len(ids), 4), dtype=np.float32)))}
    files[field] = (f"{field}.npy", body)
    with bounded_server.client(trainer.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/embeddings", files=files,
                           data={"meta": json.dumps({"step": 1, "edges_seen": 0})})
        assert resp.status_code == 422 and _error(resp, field)
        assert client.get(f"/api/v1/projects/{pid}/embeddings").json() == []
