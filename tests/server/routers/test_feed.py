"""What the trainer reads and writes: items, pixels in bulk, embedding versions."""

from __future__ import annotations

import json

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.wire import NEXT_AFTER_HEADER, decode_npy, decode_pixels, encode_npy
from server import models
from server.services.quality import HIDDEN_LABEL_METRICS
from tests.conftest import LiveServer
from tests.support import make_project, make_user


def test_items_page_through_all_ids(live_server: LiveServer, db: Session) -> None:
    trainer = make_user(db, "trainer")
    pid = make_project(db, n_items=25)
    seen: list[int] = []
    after = 0
    with live_server.client(trainer.token) as client:
        while True:
            page = client.get(f"/api/v1/projects/{pid}/items", params={"after": after, "limit": 10}).json()
            seen += [i["id"] for i in page["items"]]
            if page["next_after"] is None:
                break
            after = page["next_after"]
    expected = db.execute(sa.select(models.Item.id).where(models.Item.project_id == pid).order_by(models.Item.id))
    assert seen == list(expected.scalars())


def test_pixels_in_bulk_match_the_imported_images(live_server: LiveServer, db: Session) -> None:
    trainer = make_user(db, "trainer")
    pid = make_project(db, n_items=12)
    with live_server.client(trainer.token) as client:
        first = client.get(f"/api/v1/projects/{pid}/items/pixels", params={"limit": 8})
        ids, images = decode_pixels(first.content)
        rest = client.get(f"/api/v1/projects/{pid}/items/pixels",
                          params={"after": first.headers[NEXT_AFTER_HEADER], "limit": 8})
        ids2, _ = decode_pixels(rest.content)
        resized = client.get(f"/api/v1/projects/{pid}/items/pixels", params={"size": 20, "channels": 3})
    assert images.shape == (8, 12, 12, 1) and images.dtype == np.uint8
    assert len(ids) + len(ids2) == 12 and rest.headers[NEXT_AFTER_HEADER] == ""
    assert decode_pixels(resized.content)[1].shape == (12, 20, 20, 3)


def _upload(client, pid: int, ids: np.ndarray, vectors: np.ndarray, meta: dict | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/projects/{pid}/embeddings",
        data={"meta": json.dumps(meta or {"step": 5, "edges_seen": 0, "metrics": {"loss": 1.5}})},
        files={"item_ids": ("ids.npy", encode_npy(ids)), "vectors": ("v.npy", encode_npy(vectors))},
    )


def test_embedding_upload_becomes_current_with_quality_metrics_for_admins_only(live_server: LiveServer,
                                                                              db: Session) -> None:
    trainer = make_user(db, "trainer")
    pid = make_project(db, n_items=40)
    rows = db.execute(sa.select(models.Item.id, models.Item.label).where(models.Item.project_id == pid)
                      .order_by(models.Item.id)).all()
    ids = np.array([r.id for r in rows], dtype=np.int64)
    # Vectors that encode the hidden label perfectly: quality metrics must say so.
    vectors = np.eye(8, dtype=np.float32)[[int(r.label) for r in rows]]
    with live_server.client(trainer.token) as client:
        first = _upload(client, pid, ids, vectors)
        second = _upload(client, pid, ids, vectors * 2)
        listed = client.get(f"/api/v1/projects/{pid}/embeddings").json()
        current = client.get(f"/api/v1/projects/{pid}/embeddings/current/vectors")
    assert first.status_code == 201, first.text
    assert [v["version"] for v in listed] == [1, 2]
    assert first.json()["metrics"]["loss"] == 1.5
    # Scored against the hidden labels, kept for the admin (stats, the list), never told to the trainer.
    assert HIDDEN_LABEL_METRICS.isdisjoint(first.json()["metrics"])
    assert all(HIDDEN_LABEL_METRICS.isdisjoint(v["metrics"]) for v in listed)
    admin = make_user(db, "admin")
    with live_server.client(admin.token) as client:
        seen_by_admin = client.get(f"/api/v1/projects/{pid}/embeddings").json()
        stats = client.get(f"/api/v1/projects/{pid}/stats").json()
    assert seen_by_admin[0]["metrics"]["knn_accuracy"] == 1.0
    assert seen_by_admin[0]["metrics"]["cluster_accuracy"] == 1.0
    assert stats["quality"][0]["knn_accuracy"] == 1.0
    assert current.headers["X-Embedding-Version"] == "2"
    np.testing.assert_array_equal(decode_npy(current.content), vectors * 2)
    assert db.scalar(sa.select(models.Project.current_embedding_id).where(models.Project.id == pid)) \
        == second.json()["id"]


def test_embedding_upload_with_wrong_rows_is_rejected_and_keeps_current(live_server: LiveServer, db: Session) -> None:
    trainer = make_user(db, "trainer")
    pid = make_project(db, n_items=6)
    ids = np.array(db.execute(sa.select(models.Item.id).where(models.Item.project_id == pid)).scalars().all())
    with live_server.client(trainer.token) as client:
        assert _upload(client, pid, ids, np.ones((6, 4), np.float32)).status_code == 201
        bad_rows = _upload(client, pid, ids, np.ones((5, 4), np.float32))
        bad_dtype = _upload(client, pid, ids, np.ones((6, 4), np.float64))
        foreign = _upload(client, pid, ids + 10_000_000, np.ones((6, 4), np.float32))
        nan = _upload(client, pid, ids, np.full((6, 4), np.nan, np.float32))
    for resp, field in ((bad_rows, "vectors"), (bad_dtype, "vectors"), (foreign, "item_ids"), (nan, "vectors")):
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["fields"][0]["field"] == field
    versions = db.scalar(sa.select(sa.func.count()).select_from(models.EmbeddingVersion)
                         .where(models.EmbeddingVersion.project_id == pid))
    assert versions == 1


def test_edge_feed_rejects_malformed_cursor(live_server: LiveServer, db: Session) -> None:
    trainer = make_user(db, "trainer")
    pid = make_project(db, n_items=2)
    with live_server.client(trainer.token) as client:
        resp = client.get(f"/api/v1/projects/{pid}/edges", params={"cursor": "abc"})
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"][0]["field"] == "cursor"
