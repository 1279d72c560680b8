"""Sign-in, invites and lease renewal over HTTP."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import PASSWORD, make_project, make_user


def test_invite_link_creates_annotator_who_can_claim(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=10)
    with live_server.client(admin.token) as client:
        invite = client.post(f"/api/v1/projects/{pid}/invites", json={}).json()
    assert "/login?invite=" in invite["url"]
    email = f"new-{uuid.uuid4().hex[:6]}@test.example"
    with live_server.client() as browser:
        accepted = browser.post(f"/api/v1/auth/invites/{invite['token']}/accept",
                                json={"email": email, "password": "a long password"})
        assert accepted.status_code == 200, accepted.text
        csrf = accepted.json()["csrf_token"]
        claim = browser.post(f"/api/v1/projects/{pid}/tasks/claim", headers={"X-CSRF-Token": csrf})
        reused = browser.post(f"/api/v1/auth/invites/{invite['token']}/accept",
                              json={"email": "x" + email, "password": "a long password"})
    assert claim.status_code == 200 and claim.json()["task"] is not None
    assert reused.status_code == 404
    role = db.scalar(sa.select(models.User.role).where(models.User.email == email))
    assert role == "annotator"


def test_login_wrong_password_names_the_field(live_server: LiveServer, db: Session) -> None:
    user = make_user(db, "annotator")
    with live_server.client() as client:
        resp = client.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong"})
        ok = client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 401
    assert resp.json()["error"]["fields"][0]["field"] == "password"
    assert ok.status_code == 200 and "pal_session" in ok.cookies


def test_passwords_are_stored_as_argon2_hashes(db: Session) -> None:
    user = make_user(db, "admin")
    stored = db.scalar(sa.select(models.User.password_hash).where(models.User.id == user.id))
    assert stored is not None and stored.startswith("$argon2") and PASSWORD not in stored


def test_lease_renewal_extends_expiry_and_refuses_strangers(live_server: LiveServer, db: Session) -> None:
    owner, stranger = make_user(db, "annotator"), make_user(db, "annotator")
    pid = make_project(db, n_items=10, members=[owner, stranger])
    with live_server.client(owner.token) as c1, live_server.client(stranger.token) as c2:
        task = c1.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
        renewed = c1.post(f"/api/v1/tasks/{task['id']}/lease", json={"lease_token": task["lease_token"]})
        stolen = c2.post(f"/api/v1/tasks/{task['id']}/lease", json={"lease_token": task["lease_token"]})
        mine = c1.get(f"/api/v1/projects/{pid}/tasks/mine").json()
    assert renewed.status_code == 200
    assert renewed.json()["lease_expires_at"] >= task["lease_expires_at"]
    assert stolen.status_code == 409
    assert [t["id"] for t in mine] == [task["id"]]


def test_budget_raise_reopens_claims(live_server: LiveServer, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, n_items=10, members=[annotator], budget_cap=0)
    with live_server.client(annotator.token) as client, live_server.client(admin.token) as adm:
        assert client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["reason"] == "budget_exhausted"
        lowered = adm.patch(f"/api/v1/projects/{pid}", json={"budget_cap": -1})
        raised = adm.patch(f"/api/v1/projects/{pid}", json={"budget_cap": 5})
        after = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()
    assert lowered.status_code == 422 and lowered.json()["error"]["fields"][0]["field"] == "budget_cap"
    assert raised.json()["budget_cap"] == 5
    assert after["task"] is not None
