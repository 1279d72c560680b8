"""Embeddings you bring: published as a version, rows matched by item id or source; bad input is
refused naming the row, and nothing is stored."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.wire import decode_npy
from server import models
from server.errors import ApiError
from server.services.embedding_import import import_embedding
from tests.conftest import LiveServer
from tests.support import make_project, make_user


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _items(db: Session, pid: int) -> list[tuple[int, str]]:
    return [(int(i), s) for i, s in db.execute(sa.select(models.Item.id, models.Item.source)
                                                .where(models.Item.project_id == pid).order_by(models.Item.id))]


def _versions(db: Session, pid: int) -> int:
    return int(db.scalar(sa.select(sa.func.count()).select_from(models.EmbeddingVersion)
                         .where(models.EmbeddingVersion.project_id == pid)) or 0)


def test_rows_follow_the_items_or_the_index(db: Session) -> None:
    pid = make_project(db, n_items=6)
    project = db.get(models.Project, pid)
    assert project is not None
    items = _items(db, pid)
    vectors = np.arange(12, dtype=np.float64).reshape(6, 2)
    plain = import_embedding(db, project=project, vectors_raw=_npy(vectors), index_text=None)
    assert decode_npy(plain.item_ids).tolist() == [i for i, _ in items]
    # By source, in another order: row r belongs to the item named on line r + 2.
    order = [5, 0, 3]
    index = "source\n" + "".join(f"{items[k][1]}\n" for k in order)
    by_source = import_embedding(db, project=project, vectors_raw=_npy(vectors[order]), index_text=index)
    assert decode_npy(by_source.item_ids).tolist() == [items[k][0] for k in order]
    assert decode_npy(by_source.vectors).dtype == np.float32
    db.refresh(project)
    assert project.current_embedding_id == by_source.id and by_source.metrics["source"] == "import"


@pytest.mark.parametrize(("vectors", "index", "field"), [
    (np.zeros((6, 2, 2)), None, "vectors"),
    (np.array([[0.0, 1.0]] * 5 + [[np.nan, 0.0]]), None, "vectors row 5"),
    (np.zeros((5, 2)), None, "vectors"),
    (np.zeros((2, 2)), "item_id\n999999\n1\n", "index line 2"),
    (np.zeros((2, 2)), "source\nnot-an-item.png\nx\n", "index line 2"),
    (np.zeros((2, 2)), "item_id\n{a}\n{a}\n", "index line 3"),
    (np.zeros((2, 2)), "item_id\n{a}\n", "index"),
    (np.zeros((2, 2)), "label\nx\ny\n", "index"),
])
def test_bad_input_is_refused_naming_where_and_nothing_is_stored(
    db: Session, vectors: np.ndarray, index: str | None, field: str
) -> None:
    pid = make_project(db, n_items=6)
    project = db.get(models.Project, pid)
    assert project is not None
    text = None if index is None else index.format(a=_items(db, pid)[0][0])
    with pytest.raises(ApiError) as err:
        import_embedding(db, project=project, vectors_raw=_npy(vectors), index_text=text)
    assert err.value.status == 422 and err.value.field == field
    db.rollback()
    assert _versions(db, pid) == 0


def test_cli_imports_by_item_id_and_refuses_in_one_line(db: Session, database_url: str, tmp_path: Path) -> None:
    pid = make_project(db, n_items=4)
    ids = [i for i, _ in _items(db, pid)]
    (tmp_path / "v.npy").write_bytes(_npy(np.ones((2, 3), dtype=np.float32)))
    (tmp_path / "index.csv").write_text(f"item_id\n{ids[3]}\n{ids[1]}\n")
    env = {**os.environ, "PAL_DATABASE_URL": database_url}
    cmd = [sys.executable, "-m", "pal.cli", "embeddings", "import", "--project", str(pid), str(tmp_path / "v.npy")]
    ok = subprocess.run([*cmd, "--index", str(tmp_path / "index.csv")], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "embedding version 1" in ok.stdout
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True)  # 2 rows for 4 items, no index
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    db.expire_all()
    assert _versions(db, pid) == 1


def test_api_import_is_admin_only_and_feeds_the_oracle(live_server: LiveServer, db: Session) -> None:
    admin, trainer = make_user(db, "admin"), make_user(db, "trainer")
    pid = make_project(db, n_items=5)
    files = {"vectors": ("v.npy", _npy(np.eye(5, dtype=np.float32)), "application/octet-stream")}
    with live_server.client(trainer.token) as client:
        assert client.post(f"/api/v1/projects/{pid}/embeddings/import", files=files).status_code == 403
    with live_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/embeddings/import", files=files)
        assert resp.status_code == 201, resp.text
        assert resp.json()["version"] == 1 and resp.json()["dim"] == 5
        bad = client.post(f"/api/v1/projects/{pid}/embeddings/import",
                          files={"vectors": ("v.npy", b"not npy", "application/octet-stream")})
        assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "vectors"
