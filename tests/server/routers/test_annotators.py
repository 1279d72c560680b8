"""Annotator quality and exclusion over HTTP (real uvicorn): admin only, an exclusion retracts exactly
the annotator's live edges through the feed, keeps the budget spent, and refuses them until included."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import PASSWORD, Actor, make_project, make_user, wait_for_feed
from tests.webui.helpers import session_client


def _answer(client: httpx.Client, task: dict[str, Any], outliers: list[int]) -> httpx.Response:
    return client.post(f"/api/v1/tasks/{task['id']}/answers", json={
        "idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": outliers})


def _answer_grids(client: httpx.Client, pid: int, grids: int) -> list[int]:
    """Claim and answer ``grids`` grids (the first two candidates marked); the answer ids."""
    ids = []
    for _ in range(grids):
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        resp = _answer(client, task, task["candidates"][:2])
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    return ids


def _live_edges(db: Session, pid: int, user_id: int) -> set[int]:
    db.expire_all()
    retracted = set(db.execute(sa.select(models.Edge.retracts_id).where(
        models.Edge.project_id == pid, models.Edge.kind == "retract")).scalars())
    return {e for e in db.execute(sa.select(models.Edge.id).where(
        models.Edge.project_id == pid, models.Edge.annotator_id == user_id, models.Edge.kind == "answer",
    )).scalars() if e not in retracted}


def _stored_edges(db: Session, pid: int) -> int:
    db.expire_all()
    return int(db.scalar(sa.select(sa.func.count()).select_from(models.Edge).where(models.Edge.project_id == pid)) or 0)


def _feed(client: httpx.Client, pid: int) -> list[dict[str, Any]]:
    rows, cursor = [], "0:0"
    while True:
        page = client.get(f"/api/v1/projects/{pid}/edges", params={"cursor": cursor}).json()
        rows += page["edges"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return rows


def _team(db: Session) -> tuple[Actor, Actor, Actor, Actor, int]:
    admin, keep, drop, idle = (make_user(db, r) for r in ("admin", "annotator", "annotator", "annotator"))
    pid = make_project(db, n_items=30, members=[keep, drop, idle], n_candidates=4, budget_cap=100)
    return admin, keep, drop, idle, pid


def test_quality_lists_every_member_and_is_admin_only(live_server: LiveServer, db: Session) -> None:
    admin, keep, drop, idle, pid = _team(db)
    trainer = make_user(db, "trainer")
    with live_server.client(keep.token) as client:
        _answer_grids(client, pid, 3)
    url = f"/api/v1/projects/{pid}/annotators/quality"
    with live_server.client(admin.token) as client:
        resp = client.get(url)
    assert resp.status_code == 200, resp.text
    rows = {r["user_id"]: r for r in resp.json()}
    assert set(rows) == {keep.id, drop.id, idle.id}
    assert rows[keep.id]["edges"] == 12 and rows[idle.id]["edges"] == 0 and rows[idle.id]["decided"] == 0
    assert rows[idle.id]["low"] < rows[idle.id]["accuracy"] == 0.8 < rows[idle.id]["high"]
    assert not any(r["flagged"] or r["excluded"] for r in rows.values())
    for actor in (keep, trainer):
        with live_server.client(actor.token) as client:
            for resp in (client.get(url), client.post(f"/api/v1/projects/{pid}/annotators/{drop.id}/exclude"),
                         client.post(f"/api/v1/projects/{pid}/annotators/{drop.id}/include")):
                assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", resp.text


def test_exclude_retracts_exactly_that_annotators_live_edges(live_server: LiveServer, db: Session) -> None:
    admin, keep, drop, _idle, pid = _team(db)
    with live_server.client(keep.token) as client:
        _answer_grids(client, pid, 3)
    with live_server.client(drop.token) as client:
        answers = _answer_grids(client, pid, 4)
        undone = client.delete(f"/api/v1/answers/{answers[-1]}")  # its edges are retracted already
        assert undone.status_code == 200, undone.text
        _answer(client, undone.json()["task"], [])
        held = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]  # a lease they still hold
    kept_before, dropped_before = _live_edges(db, pid, keep.id), _live_edges(db, pid, drop.id)
    db.expire_all()
    spent_before = db.get(models.Project, pid).budget_spent  # type: ignore[union-attr]
    with live_server.client(admin.token) as client:
        # The PostgreSQL feed holds back rows while an older transaction anywhere in the cluster is
        # open: wait until it delivered everything, before and after.
        wait_for_feed(client, pid, _stored_edges(db, pid))
        before = {r["id"] for r in _feed(client, pid)}
        resp = client.post(f"/api/v1/projects/{pid}/annotators/{drop.id}/exclude")
        wait_for_feed(client, pid, _stored_edges(db, pid))
        new_rows = [r for r in _feed(client, pid) if r["id"] not in before]
        quality = {r["user_id"]: r for r in client.get(f"/api/v1/projects/{pid}/annotators/quality").json()}
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["excluded"] and body["retracted_edges"] == len(dropped_before) == 16 and body["released_leases"] == 1
    assert {r["kind"] for r in new_rows} == {"retract"} and {r["retracts_id"] for r in new_rows} == dropped_before
    assert all(r["annotator_id"] == drop.id for r in new_rows)
    assert _live_edges(db, pid, drop.id) == set() and _live_edges(db, pid, keep.id) == kept_before
    db.expire_all()
    assert db.get(models.Project, pid).budget_spent == spent_before  # type: ignore[union-attr]
    assert quality[drop.id]["excluded"] and quality[drop.id]["edges"] == 0 and quality[keep.id]["edges"] == 12
    # The grid they held goes to the next annotator who asks.
    with live_server.client(keep.token) as client:
        assert client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]["id"] == held["id"]


def test_excluded_annotator_is_refused_until_included(live_server: LiveServer, db: Session) -> None:
    admin, _keep, drop, _idle, pid = _team(db)
    with live_server.client(drop.token) as client:
        answered = _answer_grids(client, pid, 2)
        held = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
    with live_server.client(admin.token) as client:
        assert client.post(f"/api/v1/projects/{pid}/annotators/{drop.id}/exclude").status_code == 200
    with live_server.client(drop.token) as client:
        refused = [_answer(client, held, []), client.post(f"/api/v1/projects/{pid}/tasks/claim"),
                   client.delete(f"/api/v1/answers/{answered[-1]}")]
    for resp in refused:
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "annotator_excluded", resp.text
        assert "excluded" in resp.json()["error"]["message"]
    with live_server.client(admin.token) as client:
        again = client.post(f"/api/v1/projects/{pid}/annotators/{drop.id}/exclude")  # idempotent
        lifted = client.post(f"/api/v1/projects/{pid}/annotators/{drop.id}/include")
    assert again.status_code == 200 and again.json()["retracted_edges"] == 0
    assert lifted.status_code == 200 and lifted.json()["excluded"] is False
    with live_server.client(drop.token) as client:
        # Their last answer from before can be undone again: its retracted edges are not retracted twice.
        assert client.delete(f"/api/v1/answers/{answered[-1]}").status_code == 200
        new = _answer_grids(client, pid, 1)
    live = _live_edges(db, pid, drop.id)
    new_edges = set(db.execute(sa.select(models.Edge.id).where(models.Edge.answer_id == new[0])).scalars())
    assert live == new_edges and len(live) == 4  # what was retracted stays retracted


def test_exclude_names_a_missing_member_and_needs_csrf(live_server: LiveServer, db: Session) -> None:
    admin, _keep, drop, _idle, pid = _team(db)
    outsider = make_user(db, "annotator")
    with live_server.client(admin.token) as client:
        for user_id in (outsider.id, 10**9):
            for action in ("exclude", "include"):
                resp = client.post(f"/api/v1/projects/{pid}/annotators/{user_id}/{action}")
                assert resp.status_code == 404, resp.text
                assert resp.json()["error"]["fields"][0]["field"] == "user_id"
        assert client.post(f"/api/v1/projects/{10**9}/annotators/{drop.id}/exclude").status_code == 404
    browser = session_client(live_server.url, admin.email, PASSWORD)  # a cookie session, as the dashboard's
    try:
        url = f"/api/v1/projects/{pid}/annotators/{drop.id}/exclude"
        token = browser.headers.pop("X-CSRF-Token")
        refused = browser.post(url)
        accepted = browser.post(url, headers={"X-CSRF-Token": token})
    finally:
        browser.close()
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert accepted.status_code == 200 and accepted.json()["excluded"]
