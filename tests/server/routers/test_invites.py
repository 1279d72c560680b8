"""Invite links: an existing account joins with its own password, and one link tells nobody
which e-mail addresses have accounts (no "e-mail taken", a few refused tries and the link is spent)."""

from __future__ import annotations

import uuid

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.routers.auth import INVITE_TRIES
from tests.conftest import LiveServer
from tests.support import PASSWORD, make_project, make_user


def _invite(server: LiveServer, admin_token: str, pid: int, **body: object) -> str:
    with server.client(admin_token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/invites", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["token"])


def _accept(client: httpx.Client, token: str, email: str, password: str) -> httpx.Response:
    return client.post(f"/api/v1/auth/invites/{token}/accept", json={"email": email, "password": password})


def test_existing_account_joins_a_second_project_with_its_password(live_server: LiveServer, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    make_project(db, n_items=4, members=[annotator])
    second = make_project(db, n_items=10)
    token = _invite(live_server, admin.token, second)
    with live_server.client() as browser:
        resp = _accept(browser, token, annotator.email.upper(), PASSWORD)
        assert resp.status_code == 200, resp.text
        assert resp.json()["user"]["id"] == annotator.id
        claim = browser.post(f"/api/v1/projects/{second}/tasks/claim",
                             headers={"X-CSRF-Token": resp.json()["csrf_token"]})
    assert claim.status_code == 200 and claim.json()["task"] is not None
    db.expire_all()
    assert db.get(models.ProjectMember, (second, annotator.id)) is not None
    assert db.get(models.User, annotator.id).role == "annotator"  # type: ignore[union-attr]


def test_accepting_does_not_say_whether_an_email_has_an_account(live_server: LiveServer, db: Session) -> None:
    admin, existing = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, n_items=0)
    token = _invite(live_server, admin.token, pid)
    with live_server.client() as client:
        resp = _accept(client, token, existing.email, "some guessed phrase")
        login = client.post("/api/v1/auth/login", json={"email": existing.email, "password": "some guessed phrase"})
    error = resp.json()["error"]
    assert resp.status_code == 401 and error["code"] == login.json()["error"]["code"] == "bad_credentials"
    assert "exist" not in error["message"] and error["fields"][0]["field"] == "password"
    db.expire_all()
    assert db.get(models.ProjectMember, (pid, existing.id)) is None


def test_an_invite_is_spent_after_a_few_refused_tries(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    accounts = [make_user(db, "annotator") for _ in range(INVITE_TRIES)]
    pid = make_project(db, n_items=0)
    token = _invite(live_server, admin.token, pid)
    with live_server.client() as client:
        codes = [_accept(client, token, a.email, "not the password").status_code for a in accounts]
        fresh = _accept(client, token, f"new-{uuid.uuid4().hex[:8]}@test.example", "a long new phrase")
    assert codes == [401] * INVITE_TRIES
    assert fresh.status_code == 404 and fresh.json()["error"]["code"] == "invite_invalid"


def test_wrong_email_on_an_addressed_invite_counts_as_a_try(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=0)
    email = f"only-{uuid.uuid4().hex[:8]}@test.example"
    token = _invite(live_server, admin.token, pid, email=email)
    with live_server.client() as client:
        wrong = [_accept(client, token, f"other{n}@test.example", "a long new phrase").status_code
                 for n in range(INVITE_TRIES)]
        right = _accept(client, token, email, "a long new phrase")
    assert wrong == [422] * INVITE_TRIES and right.status_code == 404


def test_an_invite_for_something_that_is_not_an_email_is_refused(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=0)
    with live_server.client(admin.token) as client:
        resp = client.post(f"/api/v1/projects/{pid}/invites", json={"email": "not an address"})
    assert resp.status_code == 422 and resp.json()["error"]["fields"][0]["field"] == "email"
    db.expire_all()
    assert db.scalar(sa.select(sa.func.count()).select_from(models.Invite).where(models.Invite.project_id == pid)) == 0
