"""Exports over HTTP (real uvicorn) and through ``pal export``: edges, embedding, clusters, manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.wire import decode_npy, encode_npy
from server import models
from server.export import main as export_main
from server.services.export import CLUSTER_COLUMNS, EDGE_COLUMNS, INDEX_COLUMNS
from tests.conftest import LiveServer
from tests.support import Actor, item_labels, make_project, make_user, wait_for_feed


def answer_truthfully(client: httpx.Client, pid: int, labels: dict[int, str], n: int) -> int:
    """Claim and answer ``n`` grids the way a perfect annotator would; returns answers stored."""
    stored = 0
    for _ in range(n):
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        if task is None:
            break
        ref = labels[task["reference"]]
        outliers = [c for c in task["candidates"] if labels[c] != ref]
        resp = client.post(f"/api/v1/tasks/{task['id']}/answers", json={
            "idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": outliers})
        assert resp.status_code == 201, resp.text
        stored += 1
    return stored


def upload_embedding(client: httpx.Client, pid: int, ids: np.ndarray, vectors: np.ndarray, cursor: str = "0:0"
                     ) -> httpx.Response:
    meta = json.dumps({"step": 1, "edges_seen": 0, "cursor": cursor, "metrics": {}})
    return client.post(f"/api/v1/projects/{pid}/embeddings", data={"meta": meta}, files={
        "item_ids": ("ids.npy", encode_npy(ids.astype(np.int64))),
        "vectors": ("vectors.npy", encode_npy(vectors.astype(np.float32)))})


def label_embedding(labels: dict[int, str], dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An embedding that separates the hidden classes: one-hot of the class plus a little noise."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(sorted(labels), dtype=np.int64)
    vectors = rng.normal(0, 0.05, size=(len(ids), dim)).astype(np.float32)
    for row, i in enumerate(ids.tolist()):
        vectors[row, int(labels[i]) % dim] += 1.0
    return ids, vectors


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _setup(db: Session, n_items: int = 24) -> tuple[Actor, Actor, int, dict[int, str]]:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, n_items=n_items, members=[annotator], n_candidates=4)
    return admin, annotator, pid, item_labels(db, pid)


def test_edges_csv_holds_every_edge_with_its_provenance(live_server: LiveServer, db: Session) -> None:
    admin, annotator, pid, labels = _setup(db)
    with live_server.client(annotator.token) as client:
        answer_truthfully(client, pid, labels, 5)
    with live_server.client(admin.token) as client:
        resp = client.get(f"/api/v1/projects/{pid}/exports/edges.csv")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.text.splitlines()[0] == ",".join(EDGE_COLUMNS)
    rows = _csv(resp.text)
    stored = db.execute(sa.select(models.Edge).where(models.Edge.project_id == pid).order_by(models.Edge.id)).scalars()
    expected = [(e.id, e.src, e.dst, e.sign, e.kind, e.annotator_id, e.answer_id) for e in stored]
    got = [(int(r["id"]), int(r["src"]), int(r["dst"]), int(r["sign"]), r["kind"], int(r["annotator_id"]),
            int(r["answer_id"])) for r in rows]
    assert got == expected and len(got) == 5 * 4


def test_edges_csv_of_a_project_without_edges_is_the_header(live_server: LiveServer, db: Session) -> None:
    admin, _annotator, pid, _labels = _setup(db, n_items=6)
    with live_server.client(admin.token) as client:
        resp = client.get(f"/api/v1/projects/{pid}/exports/edges.csv")
    assert resp.status_code == 200 and resp.text == ",".join(EDGE_COLUMNS) + "\n"


def test_clusters_csv_puts_items_joined_by_matches_in_one_known_cluster(live_server: LiveServer, db: Session) -> None:
    admin, annotator, pid, labels = _setup(db)
    with live_server.client(annotator.token) as client:
        answer_truthfully(client, pid, labels, 6)
    with live_server.client(admin.token) as client:
        wait_for_feed(client, pid, 6 * 4)
        resp = client.get(f"/api/v1/projects/{pid}/exports/clusters.csv")
    assert resp.status_code == 200
    assert resp.text.splitlines()[0] == ",".join(CLUSTER_COLUMNS)
    rows = {int(r["item_id"]): r for r in _csv(resp.text)}
    assert set(rows) == set(labels)  # every item, no hidden label column
    positives = db.execute(sa.select(models.Edge.src, models.Edge.dst).where(
        models.Edge.project_id == pid, models.Edge.sign == 1)).all()
    assert positives
    for src, dst in positives:
        assert rows[src]["known"] == rows[dst]["known"] == "1"
        assert rows[src]["cluster"] == rows[dst]["cluster"] != "-1"
    # No embedding yet: items outside known clusters stay unassigned.
    assert all(r["cluster"] == "-1" for r in rows.values() if r["known"] == "0")


def test_clusters_csv_propagates_to_unknown_items_through_the_embedding(live_server: LiveServer, db: Session) -> None:
    # 60 items: six grids of five touch at most 30, so every class keeps items outside the known
    # clusters (with 24, a run of random grids could place them all and leave nothing to propagate to).
    admin, annotator, pid, labels = _setup(db, n_items=60)
    with live_server.client(annotator.token) as client:
        answer_truthfully(client, pid, labels, 6)
    ids, vectors = label_embedding(labels)
    with live_server.client(admin.token) as client:
        assert upload_embedding(client, pid, ids, vectors).status_code == 201
        wait_for_feed(client, pid, 6 * 4)
        rows = _csv(client.get(f"/api/v1/projects/{pid}/exports/clusters.csv").text)
    known = [r for r in rows if r["known"] == "1"]
    # A class may still be split over several known clusters; an unknown item must land in one of its own.
    clusters_of_class: dict[str, set[str]] = {}
    for r in known:
        clusters_of_class.setdefault(labels[int(r["item_id"])], set()).add(r["cluster"])
    unknown = [r for r in rows if r["known"] == "0" and labels[int(r["item_id"])] in clusters_of_class]
    assert unknown
    for r in unknown:
        assert r["cluster"] in clusters_of_class[labels[int(r["item_id"])]]
        assert 0.0 < float(r["confidence"]) <= 1.0


def test_embedding_files_return_the_current_version(live_server: LiveServer, db: Session) -> None:
    admin, _annotator, pid, labels = _setup(db, n_items=10)
    ids, vectors = label_embedding(labels)
    order = np.random.default_rng(1).permutation(len(ids))  # the trainer's row order is kept
    with live_server.client(admin.token) as client:
        assert upload_embedding(client, pid, ids[order], vectors[order]).status_code == 201
        npy = client.get(f"/api/v1/projects/{pid}/exports/embeddings.npy")
        index = client.get(f"/api/v1/projects/{pid}/exports/embedding_index.csv")
    assert npy.status_code == 200 and index.status_code == 200
    got = decode_npy(npy.content)
    assert got.dtype == np.float32 and np.array_equal(got, vectors[order])
    assert index.text.splitlines()[0] == ",".join(INDEX_COLUMNS)
    rows = _csv(index.text)
    assert [int(r["row"]) for r in rows] == list(range(len(ids)))
    assert [int(r["item_id"]) for r in rows] == ids[order].tolist()
    assert all(r["source"].startswith("img") for r in rows)


def test_embedding_export_before_any_version_is_404(live_server: LiveServer, db: Session) -> None:
    admin, _annotator, pid, _labels = _setup(db, n_items=4)
    with live_server.client(admin.token) as client:
        for name in ("embeddings.npy", "embedding_index.csv"):
            resp = client.get(f"/api/v1/projects/{pid}/exports/{name}")
            assert resp.status_code == 404
            assert resp.json()["error"]["code"] == "no_embedding"


def test_export_of_unknown_project_is_404(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    with live_server.client(admin.token) as client:
        resp = client.get("/api/v1/projects/987654/exports/clusters.csv")
    assert resp.status_code == 404 and resp.json()["error"]["fields"][0]["field"] == "project_id"


def test_manifest_lists_counts_and_the_sha256_of_each_file(live_server: LiveServer, db: Session) -> None:
    admin, annotator, pid, labels = _setup(db)
    with live_server.client(annotator.token) as client:
        answer_truthfully(client, pid, labels, 3)
    ids, vectors = label_embedding(labels)
    with live_server.client(admin.token) as client:
        assert upload_embedding(client, pid, ids, vectors).status_code == 201
        manifest = client.get(f"/api/v1/projects/{pid}/exports/manifest.json").json()
        bodies = {f["name"]: client.get(f"/api/v1/projects/{pid}/exports/{f['name']}").content
                  for f in manifest["files"]}
    assert set(bodies) == {"edges.csv", "embeddings.npy", "embedding_index.csv", "clusters.csv"}
    for f in manifest["files"]:
        assert f["sha256"] == hashlib.sha256(bodies[f["name"]]).hexdigest(), f["name"]
        assert f["bytes"] == len(bodies[f["name"]])
    assert manifest["counts"]["items"] == len(labels)
    assert manifest["counts"]["answers"] == 3 and manifest["counts"]["edges"] == 12
    assert manifest["embedding"]["version"] == 1 and manifest["embedding"]["dim"] == vectors.shape[1]
    assert manifest["project"]["n_candidates"] == 4


def test_pal_export_writes_the_folder_with_a_matching_manifest(live_server: LiveServer, db: Session,
                                                                database_url: str, tmp_path: Path) -> None:
    admin, annotator, pid, labels = _setup(db)
    with live_server.client(annotator.token) as client:
        answer_truthfully(client, pid, labels, 4)
    ids, vectors = label_embedding(labels)
    with live_server.client(admin.token) as client:
        assert upload_embedding(client, pid, ids, vectors).status_code == 201
    out = tmp_path / "export"
    assert export_main(["--project", str(pid), "--out", str(out), "--database-url", database_url, "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["clusters.csv", "edges.csv", "embedding_index.csv", "embeddings.npy", "manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    for f in manifest["files"]:
        assert hashlib.sha256((out / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    assert np.array_equal(np.load(out / "embeddings.npy"), vectors)
    clusters = _csv((out / "clusters.csv").read_text())
    assert len(clusters) == len(labels) and manifest["counts"]["edges"] == 16


HOSTILE_SOURCES = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1:A2)", "\tTAB", "\rCR"]


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_neutralised(live_server: LiveServer,
                                                                           db: Session) -> None:
    from server.services import imports

    admin = make_user(db, "admin")
    pid = make_project(db, n_items=0)
    rng = np.random.default_rng(11)
    names = [*HOSTILE_SOURCES, "cats/plain-1.png"]
    sources = [imports.Source(name=name, load=(lambda n=n: imports.decode_array(
        rng.integers(0, 255, size=(8, 8), dtype=np.uint8) + np.uint8(n)))) for n, name in enumerate(names)]
    imports.import_sources(db, project_id=pid, sources=sources)
    ids = np.asarray(sorted(item_labels(db, pid)), dtype=np.int64)
    with live_server.client(admin.token) as client:
        trainer = make_user(db, "trainer")
        with live_server.client(trainer.token) as tclient:
            assert upload_embedding(tclient, pid, ids, np.eye(len(ids), 4)).status_code == 201
        for name in ("clusters.csv", "embedding_index.csv"):
            resp = client.get(f"/api/v1/projects/{pid}/exports/{name}")
            assert resp.status_code == 200, resp.text
            cells = {r["source"] for r in csv.DictReader(io.StringIO(resp.text, newline=""))}
            assert cells == {*(f"'{s}" for s in HOSTILE_SOURCES), "cats/plain-1.png"}, name
