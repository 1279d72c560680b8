"""The admin dashboard API (project statistics, cluster browser) over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import Actor, make_project, make_user, wait_for_feed


def _claim(client: httpx.Client, pid: int) -> dict[str, Any]:
    task: dict[str, Any] = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
    return task


def _answer(client: httpx.Client, task: dict[str, Any], outliers: list[int], *, seconds: float | None = None,
            cant_tell: bool = False) -> dict[str, Any]:
    resp = client.post(f"/api/v1/tasks/{task['id']}/answers", json={
        "idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": outliers,
        "seconds": seconds, "cant_tell": cant_tell,
    })
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _stats(server: LiveServer, admin: Actor, pid: int) -> dict[str, Any]:
    with server.client(admin.token) as client:
        resp = client.get(f"/api/v1/projects/{pid}/stats")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _annotator(stats: dict[str, Any], user_id: int) -> dict[str, Any]:
    row: dict[str, Any] = next(a for a in stats["annotators"] if a["id"] == user_id)
    return row


def test_stats_count_answers_budget_and_edges(live_server: LiveServer, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, members=[annotator], budget_cap=50)
    with live_server.client(annotator.token) as client:
        for outliers in ([0, 1, 2], [], [5]):
            task = _claim(client, pid)
            _answer(client, task, [task["candidates"][i] for i in outliers])
        skipped = _claim(client, pid)
        _answer(client, skipped, [], cant_tell=True)
        _claim(client, pid)  # held, not answered
    stats = _stats(live_server, admin, pid)

    assert stats["items"] == 40
    assert stats["budget"] | {"projected_exhaustion_at": None} == {
        "cap": 50, "spent": 5, "remaining": 45, "burn_per_hour": 5.0, "hours_left": 9.0,
        "projected_exhaustion_at": None}
    assert stats["budget"]["projected_exhaustion_at"] is not None
    t = stats["throughput"]
    assert (t["answers_total"], t["answers_last_hour"], t["cant_tell_total"]) == (4, 4, 1)
    assert t["answers_today"] in (0, 4)  # 0 only if the test ran across midnight UTC
    assert (t["active_annotators"], t["annotators_holding_tasks"]) == (1, 1)
    assert len(t["answers_per_hour"]) == 24 and sum(h["answers"] for h in t["answers_per_hour"]) == 4
    assert t["answers_per_hour"][-1]["answers"] == 4
    g = stats["graph"]
    assert (g["edges"], g["positive_edges"], g["negative_edges"]) == (24, 20, 4)
    assert g["growth"][0] | {"t": None} == {"t": None, "positive": 0, "negative": 0}
    assert g["growth"][-1]["positive"] == 20 and g["growth"][-1]["negative"] == 4
    assert stats["oracle"]["match_rate"] == 20 / 24
    row = _annotator(stats, annotator.id)
    assert (row["answers"], row["answers_last_hour"], row["cant_tell"], row["member"]) == (4, 4, 1, True)


def test_stats_leave_out_undone_answers(live_server: LiveServer, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, members=[annotator])
    with live_server.client(annotator.token) as client:
        task = _claim(client, pid)
        answer = _answer(client, task, task["candidates"][:2])
        assert client.delete(f"/api/v1/answers/{answer['id']}").status_code == 200
    stats = _stats(live_server, admin, pid)
    assert stats["throughput"]["answers_total"] == 0
    assert (stats["graph"]["edges"], stats["graph"]["growth"][-1]["positive"]) == (0, 0)
    assert stats["oracle"]["match_rate"] is None


def test_stats_median_seconds_per_annotator(live_server: LiveServer, db: Session) -> None:
    admin, first, second = make_user(db, "admin"), make_user(db, "annotator"), make_user(db, "annotator")
    pid = make_project(db, members=[first, second])
    for actor, times in ((first, [1.0, 2.0, 3.0, 10.0]), (second, [4.0, 6.0, 5.0])):
        with live_server.client(actor.token) as client:
            for seconds in times:
                _answer(client, _claim(client, pid), [], seconds=seconds)
    stats = _stats(live_server, admin, pid)
    assert _annotator(stats, first.id)["median_seconds"] == 2.5
    assert _annotator(stats, second.id)["median_seconds"] == 5.0


def test_stats_gold_accuracy_compares_answers_with_task_gold(live_server: LiveServer, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, members=[annotator])
    with live_server.client(annotator.token) as client:
        task = _claim(client, pid)
        a, b, c = task["candidates"][:3]
        # Controls: a matches, b and c do not. The answer marks b (right), leaves c (wrong), leaves a (right).
        db.execute(sa.update(models.Task).where(models.Task.id == task["id"])
                   .values(gold={str(a): True, str(b): False, str(c): False}))
        db.commit()
        _answer(client, task, [b])
        _answer(client, _claim(client, pid), [])  # no controls: not counted
    row = _annotator(_stats(live_server, admin, pid), annotator.id)
    assert (row["gold_checked"], row["gold_accuracy"]) == (3, 2 / 3)


def test_stats_agreement_between_answers_of_one_task(live_server: LiveServer, db: Session) -> None:
    admin, first, second = make_user(db, "admin"), make_user(db, "annotator"), make_user(db, "annotator")
    pid = make_project(db, members=[first, second], redundancy=2)
    with live_server.client(first.token) as c1, live_server.client(second.token) as c2:
        task = _claim(c1, pid)
        same_task = _claim(c2, pid)
        assert same_task["id"] == task["id"]
        cands = task["candidates"]
        _answer(c1, task, cands[:3])
        _answer(c2, same_task, cands[1:4])  # differs on cands[0] and cands[3]: 6 of 8 agree
    stats = _stats(live_server, admin, pid)
    for actor in (first, second):
        row = _annotator(stats, actor.id)
        assert (row["agreement_pairs"], row["agreement"]) == (8, 0.75)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def test_stats_quality_curve_has_one_point_per_embedding_version(live_server: LiveServer, db: Session) -> None:
    admin, annotator, trainer = make_user(db, "admin"), make_user(db, "annotator"), make_user(db, "trainer")
    pid = make_project(db, members=[annotator])
    ids = np.asarray(db.execute(sa.select(models.Item.id).where(models.Item.project_id == pid)
                                .order_by(models.Item.id)).scalars().all(), dtype=np.int64)
    rng = np.random.default_rng(0)
    with live_server.client(annotator.token) as ac, live_server.client(trainer.token) as tc:
        for round_ in range(2):
            for _ in range(round_ + 1):
                _answer(ac, _claim(ac, pid), [])
            files = {"item_ids": ("i.npy", _npy(ids)),
                     "vectors": ("v.npy", _npy(rng.normal(size=(len(ids), 4)).astype(np.float32)))}
            meta = json.dumps({"step": round_, "metrics": {"loss": 1.5}})
            assert tc.post(f"/api/v1/projects/{pid}/embeddings", data={"meta": meta}, files=files).status_code == 201
    stats = _stats(live_server, admin, pid)
    assert [(q["version"], q["answers_at_upload"]) for q in stats["quality"]] == [(1, 1), (2, 3)]
    assert all(isinstance(q["knn_accuracy"], float) and isinstance(q["cluster_accuracy"], float)
               for q in stats["quality"])
    tr = stats["trainer"]
    assert (tr["versions"], tr["current_version"], tr["dim"], tr["n_items"], tr["answers_since"]) == (2, 2, 4, 40, 0)
    assert tr["metrics"]["loss"] == 1.5 and tr["age_seconds"] >= 0


def test_clusters_list_largest_first_and_page_their_members(live_server: LiveServer, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, members=[annotator], n_candidates=3)
    with live_server.client(annotator.token) as client:
        big = _claim(client, pid)
        _answer(client, big, [])  # reference and all 3 candidates: one cluster of 4
        members = sorted([big["reference"], *big["candidates"]])
        other_task = _claim(client, pid)
        # "Different" everywhere except where both ends are already in the cluster: no new cluster,
        # and no answer that contradicts the first one.
        inside = other_task["reference"] in members
        _answer(client, other_task, [c for c in other_task["candidates"] if not (inside and c in members)])
    with live_server.client(admin.token) as client:
        wait_for_feed(client, pid, 6)
        listed = client.get(f"/api/v1/projects/{pid}/clusters", params={"limit": 5}).json()
        first = listed["clusters"][0]
        pages = [client.get(f"/api/v1/projects/{pid}/clusters/{members[-1]}/items",
                            params={"offset": offset, "limit": 3}).json() for offset in (0, 3)]
        other = make_project(db, n_items=2)
        foreign = db.scalar(sa.select(models.Item.id).where(models.Item.project_id == other))
        missing = client.get(f"/api/v1/projects/{pid}/clusters/{foreign}/items")
    assert (listed["known_clusters"], len(listed["clusters"])) == (1, 1)
    assert first["size"] == 4 and set(first["sample"]) <= set(members)
    assert [p["items"] for p in pages] == [members[:3], members[3:]]
    assert all(p["size"] == 4 and p["root"] == first["root"] for p in pages)
    assert missing.status_code == 404
