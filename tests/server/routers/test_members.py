"""Project members over HTTP: an existing user joins another project, a removed member is locked
out of the project at the next request and the grids they held go back to the pool."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import make_project, make_user


def test_removed_member_is_locked_out_and_their_grid_returns(live_server: LiveServer, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, n_items=10, members=[annotator])
    with live_server.client(admin.token) as adm, live_server.client(annotator.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        assert [m["user_id"] for m in adm.get(f"/api/v1/projects/{pid}/members").json()] == [annotator.id]
        assert adm.delete(f"/api/v1/projects/{pid}/members/{annotator.id}").status_code == 204
        claim = client.post(f"/api/v1/projects/{pid}/tasks/claim")
        late = client.post(f"/api/v1/tasks/{task['id']}/answers", json={
            "idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": []})
        again = adm.delete(f"/api/v1/projects/{pid}/members/{annotator.id}")
        listed = adm.get(f"/api/v1/projects/{pid}/members").json()
    assert claim.status_code == 404
    assert late.status_code == 409 and late.json()["error"]["code"] == "lease_lost"
    assert again.status_code == 404 and again.json()["error"]["fields"][0]["field"] == "user_id"
    assert listed == []
    db.expire_all()
    status = db.scalar(sa.select(models.Assignment.status).where(models.Assignment.task_id == task["id"]))
    assert status == "open"


def test_existing_user_joins_a_second_project_by_email(live_server: LiveServer, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    first = make_project(db, n_items=4, members=[annotator])
    second = make_project(db, n_items=4)
    with live_server.client(admin.token) as adm, live_server.client(annotator.token) as client:
        added = adm.post(f"/api/v1/projects/{second}/members", json={"email": annotator.email.upper()})
        twice = adm.post(f"/api/v1/projects/{second}/members", json={"email": annotator.email})
        unknown = adm.post(f"/api/v1/projects/{second}/members", json={"email": "nobody@test.example"})
        visible = {p["id"] for p in client.get("/api/v1/projects").json()}
        refused = client.post(f"/api/v1/projects/{second}/members", json={"email": annotator.email})
    assert added.status_code == 201 and added.json()["user_id"] == annotator.id
    assert twice.status_code == 200
    assert unknown.status_code == 404 and unknown.json()["error"]["fields"][0]["field"] == "email"
    assert {first, second} <= visible
    assert refused.status_code == 403
