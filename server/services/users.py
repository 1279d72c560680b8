"""Accounts over their lifetime: API tokens (issued, shown once, stored as a hash, optionally
expiring), disabling and enabling, ending sessions, passwords, project membership.

Shared by the API (``server/routers/users.py``, ``members.py``) and the ``pal`` command line, so both
refuse the same inputs with the same messages. Every function validates everything first and
writes in one transaction: a refused change stores nothing.

Why sessions are deleted rather than flagged: the caller lookup (``server/deps.py``) reads the
session row on every request, so a deleted row is refused at the very next request, in every
server process, with no cache to invalidate. Tokens and disabled accounts work the same way.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.errors import ApiError
from server.passwords import password_problem
from server.schemas import TokenCreated, TokenPublic
from server.schemas_accounts import MemberPublic, UserDetail
from server.security import hash_password, hash_token, new_token
from server.timeutil import utcnow


def create_token(db: Session, *, user_id: int, name: str, expires_days: int | None = None) -> TokenCreated:
    token = new_token()
    expires_at = utcnow() + timedelta(days=expires_days) if expires_days else None
    row = models.ApiToken(user_id=user_id, name=name, token_hash=hash_token(token), expires_at=expires_at)
    db.add(row)
    db.commit()
    return TokenCreated(id=row.id, user_id=user_id, name=name, created_at=row.created_at, revoked_at=None,
                        expires_at=expires_at, token=token)


def get_user(db: Session, user_id: int) -> models.User:
    user = db.get(models.User, user_id)
    if user is None:
        raise ApiError(404, "not_found", f"user {user_id} not found", field="user_id")
    return user


def user_by_email(db: Session, email: str, *, field: str = "email") -> models.User:
    """The user with this e-mail (any letter case), or 404 naming ``field``."""
    user = db.execute(sa.select(models.User).where(sa.func.lower(models.User.email) == email.strip().lower())
                      ).scalar_one_or_none()
    if user is None:
        raise ApiError(404, "not_found", f"no user with e-mail {email}", field=field)
    return user


def list_tokens(db: Session, user_id: int) -> list[models.ApiToken]:
    get_user(db, user_id)
    return list(db.execute(sa.select(models.ApiToken).where(models.ApiToken.user_id == user_id)
                           .order_by(models.ApiToken.id)).scalars())


def revoke_token(db: Session, token_id: int) -> TokenPublic:
    """Revoke a token (a second revoke changes nothing: the first time stays recorded)."""
    row = db.get(models.ApiToken, token_id)
    if row is None:
        raise ApiError(404, "not_found", f"token {token_id} not found", field="token_id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.commit()
    return TokenPublic.model_validate(row)


def _end_sessions(db: Session, user_id: int, *, keep: str | None = None) -> int:
    """Delete the user's browser sessions except the one whose token hash is ``keep``; no commit."""
    query = sa.delete(models.WebSession).where(models.WebSession.user_id == user_id)
    if keep is not None:
        query = query.where(models.WebSession.token_hash != keep)
    return int(db.execute(query).rowcount or 0)  # type: ignore[attr-defined]


def _release_leases(db: Session, user_id: int, project_id: int | None = None) -> int:
    """Give the user's unanswered grids back to the pool now (rather than when their leases run
    out), so that nobody waits on a slot its holder can no longer answer; the old lease token then
    matches nothing, so a late answer from it is refused as ``lease_lost``. No commit."""
    a = models.Assignment
    query = sa.update(a).where(a.annotator_id == user_id, a.status == "leased")
    if project_id is not None:
        query = query.where(a.project_id == project_id)
    result = db.execute(query.values(status="open", annotator_id=None, lease_token=None, lease_expires_at=None,
                                     leased_at=None))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def end_sessions(db: Session, user_id: int, *, keep: str | None = None) -> int:
    """End every browser session of the user (but ``keep``); returns how many were ended."""
    get_user(db, user_id)
    ended = _end_sessions(db, user_id, keep=keep)
    db.commit()
    return ended


def set_active(db: Session, user: models.User, active: bool) -> None:
    """Disable (sessions end, grids go back to the pool; tokens are refused while disabled and
    work again after enabling) or enable an account."""
    user.is_active = active
    if not active:
        _end_sessions(db, user.id)
        _release_leases(db, user.id)
    db.commit()


def check_password(user: models.User, password: str, *, field: str = "password") -> None:
    problem = password_problem(password, user.email)
    if problem:
        raise ApiError(422, "weak_password", f"{field}: {problem}", field=field)


def set_password(db: Session, user: models.User, password: str, *, keep: str | None = None,
                 field: str = "password") -> int:
    """Set a new password and end the user's other sessions (all but ``keep``, the caller's own
    session when users change their own password): whoever knew the old one is signed out."""
    check_password(user, password, field=field)
    user.password_hash = hash_password(password)
    ended = _end_sessions(db, user.id, keep=keep)
    db.commit()
    return ended


def update_user(db: Session, user: models.User, *, name: str | None = None, role: str | None = None,
                is_active: bool | None = None, password: str | None = None, keep: str | None = None) -> None:
    """Apply the given changes in one transaction, after checking them all (a refused change stores
    nothing). A new password ends the user's sessions but ``keep``; disabling ends all of them."""
    if password is not None:
        check_password(user, password)
    if name is not None:
        user.name = name
    if role is not None:
        user.role = role
    if password is not None:
        user.password_hash = hash_password(password)
        _end_sessions(db, user.id, keep=keep)
    if is_active is not None:
        user.is_active = is_active
        if not is_active:
            _end_sessions(db, user.id)
            _release_leases(db, user.id)
    db.commit()


def user_details(db: Session, user_ids: list[int] | None = None) -> list[UserDetail]:
    """Users with their live sessions, live tokens and projects, in four queries whatever their number."""
    now = utcnow()
    query = sa.select(models.User).order_by(models.User.id)
    if user_ids is not None:
        query = query.where(models.User.id.in_(user_ids))
    users = list(db.execute(query).scalars())
    ws, tok, pm = models.WebSession, models.ApiToken, models.ProjectMember
    sessions = dict(db.execute(sa.select(ws.user_id, sa.func.count()).where(ws.expires_at > now)
                               .group_by(ws.user_id)).tuples().all())
    tokens = dict(db.execute(
        sa.select(tok.user_id, sa.func.count())
        .where(tok.revoked_at.is_(None), sa.or_(tok.expires_at.is_(None), tok.expires_at > now))
        .group_by(tok.user_id)).tuples().all())
    projects: dict[int, list[int]] = {}
    for uid, pid in db.execute(sa.select(pm.user_id, pm.project_id).order_by(pm.project_id)).tuples():
        projects.setdefault(uid, []).append(pid)
    return [UserDetail(id=u.id, email=u.email, name=u.name, role=u.role, is_active=u.is_active,  # type: ignore[arg-type]
                       created_at=u.created_at, sessions=int(sessions.get(u.id, 0)),
                       tokens=int(tokens.get(u.id, 0)), project_ids=projects.get(u.id, []))
            for u in users]


def list_members(db: Session, project_id: int) -> list[MemberPublic]:
    rows = db.execute(
        sa.select(models.User, models.ProjectMember.created_at)
        .join(models.ProjectMember, models.ProjectMember.user_id == models.User.id)
        .where(models.ProjectMember.project_id == project_id).order_by(models.User.id)
    ).all()
    return [MemberPublic(user_id=u.id, email=u.email, name=u.name, role=u.role,  # type: ignore[arg-type]
                         is_active=u.is_active, created_at=joined) for u, joined in rows]


def add_member(db: Session, project_id: int, user: models.User) -> bool:
    """Make the user a member; False when they already were."""
    if db.get(models.ProjectMember, (project_id, user.id)) is not None:
        return False
    db.add(models.ProjectMember(project_id=project_id, user_id=user.id))
    db.commit()
    return True


def remove_member(db: Session, project_id: int, user_id: int) -> None:
    """Take the user out of the project: its pages and routes answer 404 to them from the next
    request on, and the grids they hold there go back to the pool. Their answers stay."""
    member = db.get(models.ProjectMember, (project_id, user_id))
    if member is None:
        get_user(db, user_id)
        raise ApiError(404, "not_a_member", f"user {user_id} is not a member of project {project_id}",
                       field="user_id")
    db.delete(member)
    _release_leases(db, user_id, project_id)
    db.commit()
