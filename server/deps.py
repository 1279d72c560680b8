"""Request dependencies as ``Annotated`` aliases: the database session, the caller, role checks.

A caller authenticates with ``Authorization: Bearer <token>`` (scripts, the trainer) or with the
session cookie (browser). Cookie-authenticated requests that change state must carry the
session's CSRF token in ``X-CSRF-Token``; bearer requests need none (a browser never adds them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server import models
from server.config import Settings, get_settings
from server.db import get_db
from server.errors import ApiError
from server.security import constant_time_equal, hash_token
from server.timeutil import as_utc, utcnow

SESSION_COOKIE = "pal_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

DbSession = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _user_from_bearer(db: Session, token: str) -> models.User | None:
    row = db.execute(
        sa.select(models.User)
        .join(models.ApiToken, models.ApiToken.user_id == models.User.id)
        .where(models.ApiToken.token_hash == hash_token(token), models.ApiToken.revoked_at.is_(None))
    ).scalar_one_or_none()
    return row


def _user_from_cookie(db: Session, request: Request, token: str) -> models.User | None:
    ws = db.get(models.WebSession, hash_token(token))
    if ws is None or as_utc(ws.expires_at) < utcnow():
        return None
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not constant_time_equal(sent, ws.csrf_token):
            raise ApiError(403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header for a cookie session")
    return db.get(models.User, ws.user_id)


def optional_user(request: Request, db: DbSession) -> models.User | None:
    auth = request.headers.get("Authorization", "")
    user: models.User | None = None
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthenticated", "Authorization must be 'Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        user = _user_from_bearer(db, token.strip())
        if user is None:
            raise ApiError(401, "unauthenticated", "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    elif cookie := request.cookies.get(SESSION_COOKIE):
        user = _user_from_cookie(db, request, cookie)
    if user is not None and not user.is_active:
        raise ApiError(401, "unauthenticated", "this account is disabled")
    if user is not None:
        request.state.user_id = user.id
    return user


OptionalUser = Annotated[models.User | None, Depends(optional_user)]


def current_user(user: OptionalUser) -> models.User:
    if user is None:
        raise ApiError(401, "unauthenticated", "sign in or send a bearer token", headers={"WWW-Authenticate": "Bearer"})
    return user


CurrentUser = Annotated[models.User, Depends(current_user)]


def require_roles(*roles: str) -> Callable[[models.User], models.User]:
    def check(user: CurrentUser) -> models.User:
        if user.role not in roles:
            raise ApiError(403, "forbidden", f"this route needs role {' or '.join(roles)}; you are {user.role}")
        return user

    check.__name__ = f"require_{'_or_'.join(roles)}"
    return check


AdminUser = Annotated[models.User, Depends(require_roles("admin"))]
AnnotatorUser = Annotated[models.User, Depends(require_roles("annotator", "admin"))]
TrainerUser = Annotated[models.User, Depends(require_roles("trainer", "admin"))]


def get_project_for(db: Session, user: models.User, project_id: int) -> models.Project:
    """The project, if the caller may see it: admins and trainers see all, annotators their own.
    Unknown and forbidden projects both answer 404 so ids cannot be probed."""
    project = db.get(models.Project, project_id)
    if project is None:
        raise ApiError(404, "not_found", f"project {project_id} not found", field="project_id")
    if user.role == "annotator":
        member = db.get(models.ProjectMember, (project_id, user.id))
        if member is None:
            raise ApiError(404, "not_found", f"project {project_id} not found", field="project_id")
    return project
