"""Known labels over HTTP (real uvicorn): stored with their edges, idempotent, validated, admin-only."""

from __future__ import annotations

import csv
import io
import threading

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.core.known_labels import KNOWN_LABEL_WEIGHT, PAIRS_PER_LABEL
from server import models
from tests.conftest import LiveServer
from tests.support import item_labels, make_project, make_user, wait_for_feed


def _edges(db: Session, pid: int) -> list[tuple[int, int, int, float, str, int | None]]:
    db.expire_all()
    rows = db.execute(sa.select(models.Edge).where(models.Edge.project_id == pid).order_by(models.Edge.id)).scalars()
    return [(e.src, e.dst, e.sign, e.weight, e.kind, e.annotator_id) for e in rows]


def _by_class(labels: dict[int, str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for item, lab in sorted(labels.items()):
        out.setdefault(lab, []).append(item)
    return out


def test_known_labels_become_weighted_edges_and_clusters(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=24)
    classes = _by_class(item_labels(db, pid))
    given = {i: f"kind {lab}" for lab, items in classes.items() for i in items[:2]}  # 2 per class, 4 classes
    with live_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/known-labels",
                           json={"labels": [{"item_id": i, "label": lab} for i, lab in given.items()]})
        assert resp.status_code == 201, resp.text
        report = resp.json()
        listed = client.get(f"/api/v1/projects/{pid}/known-labels").json()
        wait_for_feed(client, pid, report["edges"])
        clusters = {int(r["item_id"]): r for r in csv.DictReader(io.StringIO(
            client.get(f"/api/v1/projects/{pid}/exports/clusters.csv").text))}
    edges = _edges(db, pid)
    # Every pair of the 8 known items once (fewer than PAIRS_PER_LABEL per label each).
    assert report == {"added": 8, "unchanged": 0, "edges": 8 * 7 // 2, "total": 8} and len(edges) == 28
    for src, dst, sign, weight, kind, annotator in edges:
        assert sign == (1 if given[src] == given[dst] else -1)
        assert (weight, kind, annotator) == (KNOWN_LABEL_WEIGHT, "known", None)
    assert {(k["item_id"], k["label"]) for k in listed} == set(given.items())
    # Same known label: one cluster; different labels: different clusters.
    cluster_of = {i: clusters[i]["cluster"] for i in given}
    for a in given:
        for b in given:
            assert (cluster_of[a] == cluster_of[b]) == (given[a] == given[b])


def test_each_new_known_item_is_linked_to_a_few_items_of_every_label(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=40)
    classes = _by_class(item_labels(db, pid))
    first = [i for items in classes.values() for i in items[:PAIRS_PER_LABEL]]
    late = classes["0"][PAIRS_PER_LABEL]
    labels = item_labels(db, pid)
    with live_server.client(admin.token) as client:
        assert client.post(f"/api/v1/projects/{pid}/known-labels", json={
            "labels": [{"item_id": i, "label": labels[i]} for i in first]}).status_code == 201
        before = len(_edges(db, pid))
        resp = client.post(f"/api/v1/projects/{pid}/known-labels",
                           json={"labels": [{"item_id": late, "label": labels[late]}]})
    assert resp.status_code == 201
    new = _edges(db, pid)[before:]
    # One edge to each of PAIRS_PER_LABEL items of each of the 4 labels: linear, not quadratic.
    assert resp.json()["edges"] == len(new) == 4 * PAIRS_PER_LABEL
    assert sum(1 for e in new if e[2] == 1) == PAIRS_PER_LABEL and all(late in e[:2] for e in new)


def test_reposting_is_a_no_op_and_a_conflict_changes_nothing(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=12)
    a, b = sorted(item_labels(db, pid))[:2]
    url = f"/api/v1/projects/{pid}/known-labels"
    with live_server.client(admin.token) as client:
        assert client.post(url, json={"labels": [{"item_id": a, "label": "cat"}, {"item_id": b, "label": "dog"}]}
                           ).status_code == 201
        edges = _edges(db, pid)
        again = client.post(url, json={"labels": [{"item_id": a, "label": "cat"}]})
        conflict = client.post(url, json={"labels": [{"item_id": b, "label": "dog"}, {"item_id": a, "label": "dog"}]})
        twice = client.post(url, json={"labels": [{"item_id": b, "label": "dog"}, {"item_id": b, "label": "cat"}]})
        listed = client.get(url).json()
    assert again.status_code == 201 and again.json() == {"added": 0, "unchanged": 1, "edges": 0, "total": 2}
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "label_conflict"
    assert conflict.json()["error"]["fields"][0]["field"] == "labels.1.label"
    assert twice.status_code == 422 and twice.json()["error"]["fields"][0]["field"] == "labels.1.label"
    assert _edges(db, pid) == edges and {(k["item_id"], k["label"]) for k in listed} == {(a, "cat"), (b, "dog")}


def test_items_of_another_project_and_bad_bodies_are_rejected(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pid, other = make_project(db, n_items=6), make_project(db, n_items=6)
    mine, theirs = min(item_labels(db, pid)), min(item_labels(db, other))
    url = f"/api/v1/projects/{pid}/known-labels"
    with live_server.client(admin.token) as client:
        foreign = client.post(url, json={"labels": [{"item_id": mine, "label": "x"},
                                                    {"item_id": theirs, "label": "x"}]})
        empty = client.post(url, json={"labels": []})
        blank = client.post(url, json={"labels": [{"item_id": mine, "label": ""}]})
        extra = client.post(url, json={"labels": [{"item_id": mine, "label": "x", "weight": 9}]})
    assert foreign.status_code == 422 and foreign.json()["error"]["fields"][0]["field"] == "labels.1.item_id"
    for resp in (empty, blank, extra):
        assert resp.status_code == 422 and resp.json()["error"]["fields"], resp.text
    assert _edges(db, pid) == [] and db.scalar(sa.select(sa.func.count()).select_from(models.KnownLabel).where(
        models.KnownLabel.project_id == pid)) == 0


def test_annotators_never_see_known_labels(live_server: LiveServer, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, n_items=6, members=[annotator])
    item = min(item_labels(db, pid))
    url = f"/api/v1/projects/{pid}/known-labels"
    with live_server.client(admin.token) as client:
        assert client.post(url, json={"labels": [{"item_id": item, "label": "secret"}]}).status_code == 201
    with live_server.client(annotator.token) as client:
        assert client.get(url).status_code == 403
        assert client.post(url, json={"labels": [{"item_id": item, "label": "mine"}]}).status_code == 403
        assert "secret" not in client.get(f"/api/v1/projects/{pid}").text


def test_concurrent_conflicting_posts_store_exactly_one_label(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=8)
    items = sorted(item_labels(db, pid))
    url = f"{live_server.url}/api/v1/projects/{pid}/known-labels"
    results: list[tuple[str, int]] = []
    barrier = threading.Barrier(6)

    def body(label: str) -> dict[str, object]:
        return {"labels": [{"item_id": i, "label": label} for i in items[:4]]}

    def post(label: str) -> None:
        with httpx.Client(headers=admin.headers, timeout=30) as client:
            barrier.wait()
            results.append((label, client.post(url, json=body(label)).status_code))

    threads = [threading.Thread(target=post, args=(f"label {k % 2}",)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.expire_all()
    stored = db.execute(sa.select(models.KnownLabel.item_id, models.KnownLabel.label).where(
        models.KnownLabel.project_id == pid)).all()
    winner = {lab for _, lab in stored}
    assert len(stored) == 4 and len(winner) == 1
    # Requests with the other label conflict; a request that lost the race to the same label may get
    # 409 too (it should retry), but at least one request stored it.
    assert all(code == 409 for lab, code in results if lab not in winner)
    assert {code for lab, code in results if lab in winner} <= {201, 409} and (min(winner), 201) in results
    # The winner's edges once: 4 items of one label, every pair once.
    assert len(_edges(db, pid)) == 4 * 3 // 2
    # Retried after the race: the winning label is a no-op, the other a conflict; nothing changes.
    with httpx.Client(headers=admin.headers, timeout=30) as client:
        for label in ("label 0", "label 1"):
            resp = client.post(url, json=body(label))
            if label in winner:
                assert resp.status_code == 201 and resp.json()["unchanged"] == 4
            else:
                assert resp.status_code == 409 and resp.json()["error"]["code"] == "label_conflict"
    assert len(_edges(db, pid)) == 4 * 3 // 2
