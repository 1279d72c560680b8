"""One password policy wherever a password is set: the users API, invite acceptance and ``pal user``.
At least 10 characters, not one of the most common passwords, not the e-mail's local part."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import make_project, make_user

# (password, words of the reason); {local} is the e-mail's local part
WEAK = [
    ("password", "10 characters"),
    ("12345678", "10 characters"),
    ("a", "10 characters"),
    ("1234567890", "common"),
    ("Password123", "common"),
    ("qwertyuiop", "common"),
    ("{local}", "e-mail"),
    ("{local}@test.example", "e-mail"),
    ("my {local} secret", "e-mail"),
]


def _email() -> str:
    return f"person{uuid.uuid4().hex[:8]}@test.example"


def _users(db: Session, email: str) -> int:
    db.commit()
    return int(db.scalar(sa.select(sa.func.count()).select_from(models.User).where(models.User.email == email)) or 0)


@pytest.mark.parametrize(("password", "reason"), WEAK)
def test_users_api_refuses_weak_passwords(live_server: LiveServer, db: Session, password: str, reason: str) -> None:
    admin = make_user(db, "admin")
    email = _email()
    with live_server.client(admin.token) as client:
        resp = client.post("/api/v1/users", json={"email": email, "role": "annotator",
                                                  "password": password.format(local=email.split("@")[0])})
    assert resp.status_code == 422, resp.text
    fields = resp.json()["error"]["fields"]
    assert [f["field"] for f in fields] == ["password"] and reason in fields[0]["reason"], fields
    assert _users(db, email) == 0


def test_users_api_accepts_a_long_uncommon_password(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    with live_server.client(admin.token) as client:
        resp = client.post("/api/v1/users", json={"email": _email(), "role": "annotator",
                                                  "password": "purple monkey dishwasher"})
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize(("password", "reason"), [WEAK[0], WEAK[4], WEAK[6]])
def test_invite_acceptance_refuses_weak_passwords(live_server: LiveServer, db: Session, password: str,
                                                  reason: str) -> None:
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=0)
    with live_server.client(admin.token) as client:
        invite = client.post(f"/api/v1/projects/{pid}/invites", json={}).json()
    email = _email()
    with live_server.client() as browser:
        resp = browser.post(f"/api/v1/auth/invites/{invite['token']}/accept",
                            json={"email": email, "password": password.format(local=email.split("@")[0])})
        assert resp.status_code == 422, resp.text
        fields = resp.json()["error"]["fields"]
        assert [f["field"] for f in fields] == ["password"] and reason in fields[0]["reason"], fields
        assert _users(db, email) == 0
        good = browser.post(f"/api/v1/auth/invites/{invite['token']}/accept",
                            json={"email": email, "password": "purple monkey dishwasher"})
    assert good.status_code == 200, good.text  # the refused attempt did not use the invite up


@pytest.mark.parametrize(("password", "reason"), [WEAK[2], WEAK[3], WEAK[7]])
def test_pal_user_refuses_weak_passwords_on_one_line(db: Session, database_url: str, password: str,
                                                     reason: str) -> None:
    email = _email()
    run = subprocess.run([sys.executable, "-m", "pal.cli", "user", "--email", email, "--role", "admin",
                          "--password", password.format(local=email.split("@")[0])],
                         env={**os.environ, "PAL_DATABASE_URL": database_url}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "password" in run.stderr and reason in run.stderr
    assert _users(db, email) == 0
