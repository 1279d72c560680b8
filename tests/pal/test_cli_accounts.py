"""``pal user``, ``pal users``, ``pal token``, ``pal member`` and ``pal project`` on an existing name,
run as the operator runs them (a subprocess on the test database). Every refused input is one line
on stderr, a non-zero exit and no traceback, and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.security import hash_token, new_token
from server.timeutil import utcnow
from tests.support import make_project, make_user


def pal(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAL_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "pal.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def add_session(db: Session, user_id: int) -> str:
    token_hash = hash_token(new_token())
    db.add(models.WebSession(token_hash=token_hash, user_id=user_id, csrf_token="x",
                             expires_at=utcnow() + timedelta(hours=1)))
    db.commit()
    return token_hash


def sessions(db: Session, user_id: int) -> int:
    db.expire_all()
    return int(db.scalar(sa.select(sa.func.count()).select_from(models.WebSession)
                         .where(models.WebSession.user_id == user_id)) or 0)


def test_user_disable_enable_and_end_sessions(db: Session, database_url: str) -> None:
    user = make_user(db, "annotator")
    add_session(db, user.id)
    off = pal(database_url, "user", "--email", user.email, "--disable")
    assert off.returncode == 0 and "disabled" in off.stdout, off.stderr
    db.expire_all()
    assert db.get(models.User, user.id).is_active is False and sessions(db, user.id) == 0  # type: ignore[union-attr]
    on = pal(database_url, "user", "--email", user.email, "--enable")
    assert on.returncode == 0 and db.get(models.User, user.id).is_active is not False  # type: ignore[union-attr]
    db.expire_all()
    assert db.get(models.User, user.id).is_active is True  # type: ignore[union-attr]
    add_session(db, user.id)
    add_session(db, user.id)
    ended = pal(database_url, "user", "--email", user.email, "--end-sessions")
    assert ended.returncode == 0 and "2 session(s) ended" in ended.stdout
    assert sessions(db, user.id) == 0


def test_user_password_change_ends_their_sessions(db: Session, database_url: str) -> None:
    user = make_user(db, "annotator")
    add_session(db, user.id)
    run = pal(database_url, "user", "--email", user.email, "--password", "a brand new phrase")
    assert run.returncode == 0, run.stderr
    assert sessions(db, user.id) == 0


def test_users_lists_state_sessions_tokens_and_projects(db: Session, database_url: str) -> None:
    user = make_user(db, "annotator")
    pid = make_project(db, n_items=0, members=[user])
    add_session(db, user.id)
    run = pal(database_url, "users")
    line = next(row for row in run.stdout.splitlines() if user.email in row)
    assert line.split()[-4:] == ["active", "1", "1", str(pid)]


def test_token_issue_list_revoke(db: Session, database_url: str) -> None:
    user = make_user(db, "trainer")
    issued = pal(database_url, "token", "--email", user.email, "--name", "gpu", "--expires-days", "30")
    assert issued.returncode == 0 and len(issued.stdout.strip()) > 30
    row = db.execute(sa.select(models.ApiToken).where(models.ApiToken.token_hash == hash_token(issued.stdout.strip()))
                     ).scalar_one()
    assert row.expires_at is not None
    listed = pal(database_url, "token", "list", "--email", user.email)
    assert issued.stdout.strip() not in listed.stdout
    assert [r.split()[-1] for r in listed.stdout.splitlines()[1:]] == ["active", "active"]
    revoked = pal(database_url, "token", "revoke", str(row.id))
    assert revoked.returncode == 0 and f"token {row.id}" in revoked.stdout
    db.expire_all()
    assert db.get(models.ApiToken, row.id).revoked_at is not None  # type: ignore[union-attr]


def test_member_add_list_remove(db: Session, database_url: str) -> None:
    user = make_user(db, "annotator")
    pid = make_project(db, n_items=0)
    assert pal(database_url, "member", "add", "--project", str(pid), "--email", user.email).returncode == 0
    assert user.email in pal(database_url, "member", "list", "--project", str(pid)).stdout
    removed = pal(database_url, "member", "remove", "--project", str(pid), "--email", user.email)
    assert removed.returncode == 0, removed.stderr
    assert db.get(models.ProjectMember, (pid, user.id)) is None


def test_project_with_an_existing_name_updates_the_given_settings(db: Session, database_url: str) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert "created" in pal(database_url, "project", "--name", name, "--budget", "100").stdout
    same = pal(database_url, "project", "--name", name)
    changed = pal(database_url, "project", "--name", name, "--budget", "50", "--n", "4")
    refused = pal(database_url, "project", "--name", name, "--budget", "70", "--gold-rate", "3")
    assert "nothing changed" in same.stdout
    assert "updated --n 8 -> 4, --budget 100 -> 50" in changed.stdout, changed.stdout
    assert refused.returncode == 2 and "--gold-rate" in refused.stderr
    project = db.execute(sa.select(models.Project).where(models.Project.name == name)).scalar_one()
    assert (project.budget_cap, project.n_candidates, project.gold_rate) == (50, 4, 0.0)


BAD = [
    (["user", "--email", "nobody-{u}@test.example"], "--role"),
    (["user", "--email", "{email}", "--password", "a"], "10 characters"),
    (["user", "--email", "{email}", "--disable", "--enable"], "not allowed"),
    (["user"], "--email"),
    (["token", "--email", "nobody-{u}@test.example"], "no user"),
    (["token", "revoke"], "token's id"),
    (["token", "revoke", "999999999"], "not found"),
    (["token", "revoke", "x"], "whole number"),
    (["token", "--email", "{email}", "--expires-days", "0"], "1 or more"),
    (["token", "list"], "--email"),
    (["member", "add", "--project", "no-such-{u}", "--email", "{email}"], "no project"),
    (["member", "remove", "--project", "{pid}", "--email", "{email}"], "not a member"),
    (["member", "add", "--project", "{pid}"], "--email"),
    (["project", "--name", "{project}", "--budget", "-5"], "--budget"),
    (["project", "--name", "{project}", "--n", "0"], "--n"),
    (["project", "--name", "new-{u}", "--gold-rate", "3"], "--gold-rate"),
]


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a[:2]) + f" {i}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_line_and_a_nonzero_exit(db: Session, database_url: str, argv: list[str],
                                                  says: str) -> None:
    user = make_user(db, "annotator")
    pid = make_project(db, n_items=0)
    project = db.get(models.Project, pid)
    assert project is not None
    values = {"u": uuid.uuid4().hex[:8], "email": user.email, "pid": str(pid), "project": project.name}
    before = db.execute(sa.select(models.User.is_active, models.User.password_hash).where(models.User.id == user.id)
                        ).one()
    run = pal(database_url, *[a.format(**values) for a in argv])
    assert run.returncode != 0
    assert "Traceback" not in run.stderr + run.stdout
    assert len(run.stderr.strip().splitlines()) == 1 and says in run.stderr, run.stderr
    db.expire_all()
    assert db.execute(sa.select(models.User.is_active, models.User.password_hash)
                      .where(models.User.id == user.id)).one() == before
    assert db.get(models.Project, pid).budget_cap == project.budget_cap  # type: ignore[union-attr]


def test_unmigrated_database_is_one_line(tmp_path: Path) -> None:
    run = pal(f"sqlite:///{tmp_path / 'empty.sqlite3'}", "users")
    assert run.returncode == 2 and "pal migrate" in run.stderr and "Traceback" not in run.stderr


def test_projects_lists_every_project_with_its_figures(db: Session, database_url: str) -> None:
    from tests.support import make_project

    pid = make_project(db, n_items=3, budget_cap=7)
    project = db.get(models.Project, pid)
    assert project is not None
    run = pal(database_url, "projects")
    assert run.returncode == 0, run.stderr
    line = next(row for row in run.stdout.splitlines() if row.split()[:2] == [str(pid), project.name])
    assert line.split()[3:6] == ["3", "0/7", "0"] and line.endswith("open")
