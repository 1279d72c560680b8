"""Hostile input: malformed answers (property-based), oversized bodies and uploads, decompression
bombs, and paths that try to leave the import root. Every refusal is a 4xx JSON error naming the
field, and nothing is stored."""

from __future__ import annotations

import io
import json
import struct
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer, start_server, stop_server
from tests.support import Actor, make_project, make_user

# ------------------------------------------------------------------------------------------ helpers


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _image(seed: int) -> bytes:
    return _png(np.random.default_rng(seed).integers(0, 255, size=(8, 8), dtype=np.uint8))


def _bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid PNG of a few dozen bytes whose header declares width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def _counts(db: Session, pid: int) -> tuple[int, int, int]:
    db.commit()  # a fresh snapshot
    answers = db.scalar(sa.select(sa.func.count()).select_from(models.Answer).where(models.Answer.project_id == pid))
    edges = db.scalar(sa.select(sa.func.count()).select_from(models.Edge).where(models.Edge.project_id == pid))
    items = db.scalar(sa.select(sa.func.count()).select_from(models.Item).where(models.Item.project_id == pid))
    return int(answers or 0), int(edges or 0), int(items or 0)


def _fields(resp: httpx.Response) -> set[str]:
    error = resp.json()["error"]
    return {f["field"].split(".")[0] for f in error.get("fields", [])}


# ------------------------------------------------------------------------------------------ answers


@pytest.fixture
def held_task(live_server: LiveServer, db: Session) -> tuple[Actor, int, dict[str, Any], list[int]]:
    """An annotator holding a claimed task, and the ids of the project's items outside that task."""
    annotator = make_user(db, "annotator")
    pid = make_project(db, n_items=30, members=[annotator])
    with live_server.client(annotator.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
    items = db.execute(sa.select(models.Item.id).where(models.Item.project_id == pid)).scalars().all()
    outside = sorted(set(items) - set(task["candidates"]))  # includes the reference: not a candidate
    return annotator, pid, task, outside


def _bad_answers(task: dict[str, Any], outside: list[int]) -> st.SearchStrategy[tuple[Any, str]]:
    """(request body, the field its error must name). Every body is invalid in exactly that field."""
    cands = task["candidates"]

    def body(**changes: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"],
                                "outlier_ids": []}
        base.update(changes)
        return {k: v for k, v in base.items() if v is not _DROP}

    ids = st.lists(st.sampled_from(cands), max_size=3, unique=True)
    unknown = st.integers(min_value=10**7, max_value=2**31 - 1)
    # Junk that no lax conversion can turn into a valid value (no digits, no "yes"/"true", no whole floats).
    words = st.text(alphabet="qxzw", min_size=2, max_size=6)
    fractions = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).filter(lambda x: x != int(x))
    scalar_junk = st.one_of(words, fractions, st.none(), st.dictionaries(words, st.integers(), max_size=2))
    return st.one_of(
        # ids that are no item at all
        st.builds(lambda good, bad: (body(outlier_ids=good + [bad]), "outlier_ids"), ids, unknown),
        # items of the project that are not candidates of this task (the reference among them)
        st.builds(lambda good, bad: (body(outlier_ids=good + [bad]), "outlier_ids"), ids, st.sampled_from(outside)),
        # the same id twice
        st.builds(lambda c: (body(outlier_ids=[c, c]), "outlier_ids"), st.sampled_from(cands)),
        # more ids than any grid has
        st.builds(lambda n: (body(outlier_ids=list(range(1, n))), "outlier_ids"), st.integers(66, 500)),
        # wrong types
        st.builds(lambda v: (body(outlier_ids=v), "outlier_ids"), scalar_junk),
        st.builds(lambda v: (body(outlier_ids=[v]), "outlier_ids"), st.one_of(words, fractions, st.none())),
        st.builds(lambda v: (body(idempotency_key=v), "idempotency_key"),
                  st.one_of(st.integers(), st.none(), st.text(max_size=7), st.text(min_size=101, max_size=120))),
        st.builds(lambda v: (body(cant_tell=v), "cant_tell"),
                  st.one_of(words, st.lists(st.integers(), min_size=1, max_size=2))),
        st.builds(lambda v: (body(seconds=v), "seconds"),
                  st.one_of(st.floats(max_value=-0.001, allow_infinity=False),
                            st.floats(min_value=86_401, max_value=1e12), words)),
        st.just((body(lease_token=_DROP), "lease_token")),
        st.just((body(lease_token="not-my-lease"), "lease_token")),
        st.builds(lambda k: (body(**{k: 1}), k), st.sampled_from(["label", "gold", "reference", "weight"])),
        st.builds(lambda c: (body(cant_tell=True, outlier_ids=[c]), "outlier_ids"), st.sampled_from(cands)),
        st.builds(lambda v: (v, "body"), st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=10),
                                                   st.integers())),
    )


_DROP = object()


def test_invalid_answers_are_refused_naming_the_field_and_store_nothing(
    live_server: LiveServer, db: Session, held_task: tuple[Actor, int, dict[str, Any], list[int]]
) -> None:
    annotator, pid, task, outside = held_task
    refused: list[tuple[int, str]] = []
    with live_server.client(annotator.token) as client:

        @given(case=_bad_answers(task, outside))
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def send(case: tuple[Any, str]) -> None:
            payload, field = case
            resp = client.post(f"/api/v1/tasks/{task['id']}/answers", json=payload)
            assert 400 <= resp.status_code < 500, (payload, resp.status_code, resp.text)
            assert field in _fields(resp), (payload, resp.text)
            refused.append((resp.status_code, field))

        send()
        assert _counts(db, pid)[:2] == (0, 0)
        # The lease survived all of it: a valid answer still goes through.
        ok = client.post(f"/api/v1/tasks/{task['id']}/answers", json={
            "idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": []})
    assert ok.status_code == 201
    assert len({field for _, field in refused}) >= 4


def test_malformed_json_answer_is_a_422(live_server: LiveServer, held_task: tuple[Actor, int, dict[str, Any],
                                                                                   list[int]], db: Session) -> None:
    annotator, pid, task, _ = held_task
    with live_server.client(annotator.token) as client:
        resp = client.post(f"/api/v1/tasks/{task['id']}/answers", content=b'{"idempotency_key": "abc',
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "validation_error"
    assert _counts(db, pid)[:2] == (0, 0)


def test_huge_answer_body_is_a_413(live_server: LiveServer, held_task: tuple[Actor, int, dict[str, Any], list[int]],
                                   db: Session) -> None:
    annotator, pid, task, _ = held_task
    payload = {"idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"],
               "outlier_ids": list(range(300_000))}
    with live_server.client(annotator.token) as client:
        resp = client.post(f"/api/v1/tasks/{task['id']}/answers", content=json.dumps(payload).encode(),
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert _fields(resp) == {"body"}
    assert _counts(db, pid)[:2] == (0, 0)


def test_huge_body_without_content_length_is_a_413(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")

    def chunks() -> Iterator[bytes]:
        yield b'{"email": "'
        for _ in range(40):
            yield b"a" * 65_536
        yield b'", "password": "x"}'

    with live_server.client(annotator.token) as client:
        resp = client.post("/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413


def test_out_of_range_ids_in_the_path_are_404(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    with live_server.client(annotator.token) as client:
        codes = [client.get(f"/api/v1/projects/{n}").status_code for n in (0, -1, 2**31, 10**30)]
        answer = client.post(f"/api/v1/tasks/{10**25}/answers", json={
            "idempotency_key": uuid.uuid4().hex, "lease_token": "x", "outlier_ids": []})
    assert codes == [404] * 4
    assert answer.status_code == 404
    assert _fields(answer) == {"task_id"}


def test_nul_characters_are_refused_naming_the_field(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    with live_server.client(admin.token) as client:
        resp = client.post("/api/v1/projects", json={"name": "evil\x00name"})
    assert resp.status_code == 422
    assert _fields(resp) == {"name"}


# ------------------------------------------------------------------------------------------ uploads


@pytest.fixture(scope="module")
def import_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/`` (the import root) with a good folder, a manifest, links out; ``secret/`` beside it."""
    base = tmp_path_factory.mktemp("imports")
    root, secret = base / "root", base / "secret"
    (root / "ok" / "cats").mkdir(parents=True)
    secret.mkdir()
    for n in range(3):
        (root / "ok" / "cats" / f"{n}.png").write_bytes(_image(n))
        (secret / f"s{n}.png").write_bytes(_image(100 + n))
    (root / "escape").mkdir()
    (root / "escape" / "linked.png").symlink_to(secret / "s0.png")
    (root / "escape" / "linked-dir").symlink_to(secret, target_is_directory=True)
    (root / "manifest.csv").write_text("path,label\nok/cats/0.png,cat\n../secret/s1.png,stolen\n")
    return root


@pytest.fixture(scope="module")
def guarded_server(database_url: str, import_root: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[LiveServer]:
    server = start_server(database_url, tmp_path_factory.mktemp("guarded") / "server.log",
                          env={"PAL_MAX_UPLOAD_MB": "1", "PAL_IMPORT_ROOT": str(import_root)})
    yield server
    stop_server(server)


@pytest.fixture
def admin_project(db: Session) -> tuple[Actor, int]:
    admin = make_user(db, "admin")
    return admin, make_project(db, n_items=0)


def test_upload_over_the_limit_is_a_413(guarded_server: LiveServer, admin_project: tuple[Actor, int],
                                        db: Session) -> None:
    admin, pid = admin_project
    with guarded_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/imports",
                           files={"file": ("big.npz", b"\x00" * (2 * 1024 * 1024), "application/octet-stream")})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "too_large"
    assert _counts(db, pid)[2] == 0


def test_streamed_upload_over_the_limit_is_a_413(guarded_server: LiveServer, admin_project: tuple[Actor, int],
                                                 db: Session) -> None:
    admin, pid = admin_project
    boundary = "pal-test-boundary"

    def body() -> Iterator[bytes]:  # no Content-Length: the server must count what arrives
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.zip\"\r\n"
               "Content-Type: application/zip\r\n\r\n").encode()
        for _ in range(40):
            yield b"\x00" * 65_536
        yield f"\r\n--{boundary}--\r\n".encode()

    with guarded_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/imports", content=body(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status_code == 413
    assert _counts(db, pid)[2] == 0


@pytest.mark.parametrize("wrap", ["png", "zip"])
def test_decompression_bomb_is_skipped_quickly(guarded_server: LiveServer, admin_project: tuple[Actor, int],
                                               db: Session, wrap: str) -> None:
    admin, pid = admin_project
    bomb = _bomb_png()
    if wrap == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            archive.writestr("bomb.png", bomb)
            archive.writestr("fine.png", _image(7))
        upload = ("images.zip", buf.getvalue(), "application/zip")
    else:
        upload = ("bomb.png", bomb, "image/png")
    with guarded_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/imports", files={"file": upload})
    assert resp.status_code == 201, resp.text
    report = resp.json()
    assert report["imported"] == (1 if wrap == "zip" else 0)
    reasons = [s["reason"] for s in report["skipped"] if s["source"].endswith("bomb.png")]
    assert len(reasons) == 1 and "decompression bomb" in reasons[0] and "PAL_MAX_IMAGE_PIXELS" in reasons[0]
    assert resp.elapsed.total_seconds() < 5


def test_zip_entries_that_leave_the_archive_are_skipped(guarded_server: LiveServer,
                                                        admin_project: tuple[Actor, int], db: Session) -> None:
    admin, pid = admin_project
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("../escape.png", _image(1))
        archive.writestr("/etc/absolute.png", _image(2))
        archive.writestr("dogs/../../up.png", _image(3))
        archive.writestr("dogs/fine.png", _image(4))
    with guarded_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/imports",
                           files={"file": ("x.zip", buf.getvalue(), "application/zip")})
    assert resp.status_code == 201, resp.text
    skipped = {s["source"]: s["reason"] for s in resp.json()["skipped"]}
    assert resp.json()["imported"] == 1
    assert set(skipped) == {"../escape.png", "/etc/absolute.png", "dogs/../../up.png"}
    assert set(skipped.values()) == {"unsafe path in archive"}


@pytest.mark.parametrize("path", ["../secret", "ok/../../secret", "/etc", "{secret}", "escape/linked-dir"])
def test_server_side_import_cannot_leave_the_import_root(guarded_server: LiveServer, import_root: Path,
                                                         admin_project: tuple[Actor, int], db: Session,
                                                         path: str) -> None:
    admin, pid = admin_project
    path = path.format(secret=import_root.parent / "secret")
    with guarded_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/imports/path", json={"path": path})
    assert resp.status_code == 404
    assert _fields(resp) == {"path"}
    assert _counts(db, pid)[2] == 0


def test_import_folder_skips_links_that_point_outside_the_root(guarded_server: LiveServer,
                                                               admin_project: tuple[Actor, int],
                                                               db: Session) -> None:
    admin, pid = admin_project
    with guarded_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/imports/path", json={"path": "escape"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["imported"] == 0
    assert {s["reason"] for s in resp.json()["skipped"]} == {"links outside the import folder"}
    assert _counts(db, pid)[2] == 0


def test_manifest_rows_cannot_leave_the_import_root(guarded_server: LiveServer, admin_project: tuple[Actor, int],
                                                    db: Session) -> None:
    admin, pid = admin_project
    with guarded_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/imports/path", json={"path": "manifest.csv"})
    assert resp.status_code == 422
    assert _fields(resp) == {"path"}
    assert "leaves the import folder" in resp.json()["error"]["message"]
    assert _counts(db, pid)[2] == 0


@pytest.mark.parametrize("path", ["/static/%2e%2e/%2e%2e/server/config.py", "/static/..%2f..%2fserver%2fconfig.py",
                                  "/static/vendor/%2e%2e/%2e%2e/%2e%2e/pyproject.toml", "/static//etc/passwd"])
def test_static_files_cannot_leave_their_folder(live_server: LiveServer, path: str) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        resp = client.get(path)
    assert resp.status_code == 404
    assert b"PAL_" not in resp.content and b"root:" not in resp.content
