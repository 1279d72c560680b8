"""Claiming and answering over HTTP against a real uvicorn server."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.timeutil import utcnow
from tests.conftest import LiveServer
from tests.support import make_project, make_user


def _answer(client, task: dict, outliers: list[int], key: str | None = None):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/tasks/{task['id']}/answers", json={
        "idempotency_key": key or uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": outliers,
    })


def test_claim_returns_reference_and_n_candidates(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, members=[annotator], n_candidates=8)
    with live_server.client(annotator.token) as client:
        body = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()
    task = body["task"]
    assert len(task["candidates"]) == 8
    assert task["reference"] not in task["candidates"]
    assert set(task) == {"id", "project_id", "lease_token", "lease_expires_at", "reference", "candidates", "question"}


def test_answer_writes_reference_edges_with_signs(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, members=[annotator])
    with live_server.client(annotator.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        outliers = task["candidates"][:3]
        resp = _answer(client, task, outliers)
    assert resp.status_code == 201, resp.text
    edges = db.execute(sa.select(models.Edge.src, models.Edge.dst, models.Edge.sign)
                       .where(models.Edge.project_id == pid)).all()
    assert sorted(edges) == sorted((task["reference"], c, -1 if c in outliers else 1) for c in task["candidates"])


def test_answer_retried_three_times_stores_one_answer(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, members=[annotator])
    key = uuid.uuid4().hex
    with live_server.client(annotator.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        codes = [_answer(client, task, task["candidates"][:2], key).status_code for _ in range(4)]
    assert codes == [201, 200, 200, 200]
    assert db.scalar(sa.select(sa.func.count()).select_from(models.Answer).where(models.Answer.project_id == pid)) == 1
    n_edges = db.scalar(sa.select(sa.func.count()).select_from(models.Edge).where(models.Edge.project_id == pid))
    assert n_edges == len(task["candidates"])


def test_late_answer_after_reissue_is_refused(live_server: LiveServer, db: Session) -> None:
    first, second = make_user(db, "annotator"), make_user(db, "annotator")
    pid = make_project(db, members=[first, second])
    with live_server.client(first.token) as c1, live_server.client(second.token) as c2:
        task = c1.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        # The lease runs out: move its expiry into the past rather than sleeping.
        db.execute(sa.update(models.Assignment).where(models.Assignment.task_id == task["id"])
                   .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
        reissued = c2.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        assert reissued["id"] == task["id"]
        late = _answer(c1, task, [])
        assert late.status_code == 409
        assert late.json()["error"]["code"] == "lease_lost"
        assert db.scalar(sa.select(sa.func.count()).select_from(models.Answer)
                         .where(models.Answer.task_id == task["id"])) == 0
        ok = _answer(c2, reissued, [])
        assert ok.status_code == 201
    assert db.scalar(sa.select(models.Task.answers_count).where(models.Task.id == task["id"])) == 1


def test_answer_with_foreign_outlier_is_rejected_with_field(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, members=[annotator])
    with live_server.client(annotator.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        resp = _answer(client, task, [task["reference"]])
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"][0]["field"] == "outlier_ids"
    assert db.scalar(sa.select(sa.func.count()).select_from(models.Answer).where(models.Answer.project_id == pid)) == 0


def test_budget_exhausted_claim_says_so(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, members=[annotator], budget_cap=1)
    with live_server.client(annotator.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        assert _answer(client, task, []).status_code == 201
        body = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()
    assert body["task"] is None
    assert body["reason"] == "budget_exhausted"
    assert "budget" in body["message"]


def test_undo_last_answer_retracts_edges_and_reopens_task(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, members=[annotator])
    with live_server.client(annotator.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        answer = _answer(client, task, task["candidates"][:1]).json()
        undo = client.delete(f"/api/v1/answers/{answer['id']}")
        assert undo.status_code == 200, undo.text
        again = undo.json()["task"]
        assert again["id"] == task["id"]
        assert _answer(client, again, []).status_code == 201
    kinds = db.execute(sa.select(models.Edge.kind, sa.func.count()).where(models.Edge.project_id == pid)
                       .group_by(models.Edge.kind)).all()
    n = len(task["candidates"])
    assert dict(kinds) == {"answer": 2 * n, "retract": n}


def test_paused_project_claim_says_paused(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, members=[annotator])
    db.execute(sa.update(models.Project).where(models.Project.id == pid).values(paused=True))
    db.commit()
    with live_server.client(annotator.token) as client:
        body = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()
    assert body == {"task": None, "reason": "paused", "message": body["message"]}


def test_same_idempotency_key_with_another_body_is_refused_naming_the_key(live_server: LiveServer,
                                                                           db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, members=[annotator])
    with live_server.client(annotator.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        first = _answer(client, task, task["candidates"][:1], key="key-of-the-first-body")
        assert first.status_code == 201, first.text
        again = _answer(client, task, task["candidates"][:1], key="key-of-the-first-body")
        other = _answer(client, task, task["candidates"][1:3], key="key-of-the-first-body")
    assert again.status_code == 200 and again.json()["replayed"] and again.json()["id"] == first.json()["id"]
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_mismatch"
    assert other.json()["error"]["fields"][0]["field"] == "idempotency_key"
    edges = db.execute(sa.select(models.Edge.dst, models.Edge.sign).where(models.Edge.project_id == pid)).all()
    assert sorted(d for d, s in edges if s < 0) == task["candidates"][:1]  # the first answer stands, unchanged


def test_key_of_an_undone_answer_says_answer_undone(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, members=[annotator])
    with live_server.client(annotator.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        first = _answer(client, task, [], key="key-of-an-undone-answer")
        assert client.delete(f"/api/v1/answers/{first.json()['id']}").status_code == 200
        again = _answer(client, task, [], key="key-of-an-undone-answer")
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "answer_undone"
    assert again.json()["error"]["fields"][0]["field"] == "idempotency_key"
