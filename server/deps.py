"""Request dependencies as ``Annotated`` aliases: the database session, the caller, role checks,
the project of the path.

A caller authenticates with ``Authorization: Bearer <token>`` (scripts, the trainer) or with the
session cookie (browser). Cookie-authenticated requests that change state must carry the
session's CSRF token in ``X-CSRF-Token``; bearer requests need none (a browser never adds them).

Performance notes (these run on every request):
- Dependencies that do no I/O are ``async def``: a sync dependency costs a thread-pool hop each.
- The caller is looked up with one plain SQL statement on the event loop (PostgreSQL: an
  autocommit psycopg ``AsyncConnection`` of ``server.db.LoopReader``): no thread-pool hop, no ORM
  loading, and no pooled connection held by the request before its endpoint runs. (With the lookup
  on the request's session, a burst bigger than the pool deadlocked until the pool timeout:
  connections held by requests waiting for threads, threads held by requests waiting for
  connections.) SQLite uses one thread-pool hop on a short session of its own.
- No cache: a revoked token, ended session or disabled account is refused on the very next request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from server import models
from server.config import Settings, get_settings
from server.db import get_autocommit_sessionmaker, get_db, get_loop_reader
from server.errors import ApiError
from server.security import constant_time_equal, hash_token
from server.services import projects
from server.timeutil import as_utc, utcnow

SESSION_COOKIE = "pal_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


async def settings_dependency() -> Settings:
    return get_settings()


DbSession = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(settings_dependency)]


_USER_COLUMNS = tuple(models.User.__table__.c)


_BEARER_SQL = (
    f"SELECT {', '.join('u.' + c.name for c in _USER_COLUMNS)}, t.expires_at"
    " FROM api_tokens t JOIN users u ON u.id = t.user_id"
    " WHERE t.token_hash = %s AND t.revoked_at IS NULL"
)
_COOKIE_SQL = (
    f"SELECT {', '.join('u.' + c.name for c in _USER_COLUMNS)}, s.csrf_token, s.expires_at"
    " FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = %s"
)
_N_USER = len(_USER_COLUMNS)


@dataclass(frozen=True)
class Credentials:
    """What the request carries to prove who it is; read from headers without any I/O."""

    bearer: str | None
    cookie: str | None
    method: str
    csrf_sent: str

    def accept(self, row: Any) -> models.User | None:
        """The caller from the lookup's row (user columns, then for a token its expiry, for a cookie
        its CSRF token and expiry), or None for an ended session. Raises 401 for an unknown, revoked
        or expired token or a disabled account, 403 for a cookie session's missing or wrong CSRF token."""
        if self.bearer is not None and row is None:
            raise ApiError(401, "unauthenticated", "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        if row is None:
            return None
        user = models.User(**{c.key: row[i] for i, c in enumerate(_USER_COLUMNS)})
        if self.bearer is not None:
            # Compared here, not in SQL: SQLite stores date-times as text, and the clock is the server's.
            token_expires = row[_N_USER]
            if token_expires is not None and as_utc(token_expires) <= utcnow():
                raise ApiError(401, "unauthenticated", "this token has expired; ask an admin for a new one",
                               headers={"WWW-Authenticate": "Bearer"})
        else:
            csrf_token, expires_at = row[_N_USER], row[_N_USER + 1]
            if as_utc(expires_at) < utcnow():
                return None
            if self.method not in SAFE_METHODS and (
                    not self.csrf_sent or not constant_time_equal(self.csrf_sent, csrf_token)):
                raise ApiError(403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header for a cookie session")
        if not user.is_active:
            raise ApiError(401, "unauthenticated", "this account is disabled")
        return user

    def query(self) -> tuple[str, tuple[str]]:
        token = self.bearer if self.bearer is not None else self.cookie
        assert token is not None
        return (_BEARER_SQL if self.bearer is not None else _COOKIE_SQL), (hash_token(token),)


async def credentials(request: Request) -> Credentials:
    auth = request.headers.get("Authorization", "")
    bearer = cookie = None
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthenticated", "Authorization must be 'Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        bearer = token.strip()
    else:
        cookie = request.cookies.get(SESSION_COOKIE) or None
    return Credentials(bearer=bearer, cookie=cookie, method=request.method,
                       csrf_sent=request.headers.get(CSRF_HEADER, ""))


CredentialsDep = Annotated[Credentials, Depends(credentials)]


def lookup_in_thread(creds: Credentials) -> models.User | None:
    """SQLite: the same lookup on a short session of its own, which gives its connection back at once."""
    if creds.bearer is not None:
        query = (sa.select(*_USER_COLUMNS, models.ApiToken.expires_at)
                 .join(models.ApiToken, models.ApiToken.user_id == models.User.id)
                 .where(models.ApiToken.token_hash == hash_token(creds.bearer), models.ApiToken.revoked_at.is_(None)))
    else:
        assert creds.cookie is not None
        query = (sa.select(*_USER_COLUMNS, models.WebSession.csrf_token, models.WebSession.expires_at)
                 .join(models.WebSession, models.WebSession.user_id == models.User.id)
                 .where(models.WebSession.token_hash == hash_token(creds.cookie)))
    with get_autocommit_sessionmaker()() as db:
        row = db.execute(query).first()
    return creds.accept(row)


async def optional_user(request: Request, creds: CredentialsDep) -> models.User | None:
    if creds.bearer is None and creds.cookie is None:
        return None
    reader = get_loop_reader()
    if reader is None:
        user = await run_in_threadpool(lookup_in_thread, creds)
    else:
        import psycopg

        try:
            row = await reader.fetchone(*creds.query())
        except psycopg.OperationalError as exc:
            raise ApiError(503, "database_unavailable", "the database is unavailable or timed out; retry shortly",
                           headers={"Retry-After": "2"}) from exc
        user = creds.accept(row)
    if user is not None:
        request.state.user_id = user.id
    return user


OptionalUser = Annotated[models.User | None, Depends(optional_user)]


async def current_user(user: OptionalUser) -> models.User:
    if user is None:
        raise ApiError(401, "unauthenticated", "sign in or send a bearer token", headers={"WWW-Authenticate": "Bearer"})
    return user


CurrentUser = Annotated[models.User, Depends(current_user)]


def require_roles(*roles: str) -> Callable[[models.User], Awaitable[models.User]]:
    async def check(user: CurrentUser) -> models.User:
        if user.role not in roles:
            raise ApiError(403, "forbidden", f"this route needs role {' or '.join(roles)}; you are {user.role}")
        return user

    check.__name__ = f"require_{'_or_'.join(roles)}"
    return check


AdminUser = Annotated[models.User, Depends(require_roles("admin"))]
AnnotatorUser = Annotated[models.User, Depends(require_roles("annotator", "admin"))]
TrainerUser = Annotated[models.User, Depends(require_roles("trainer", "admin"))]


def visible_project(project_id: int, db: DbSession, user: CurrentUser) -> models.Project:
    return projects.get_project_for(db, user, project_id)


def admin_project(project_id: int, db: DbSession, user: AdminUser) -> models.Project:
    return projects.get_project_for(db, user, project_id)


def trainer_project(project_id: int, db: DbSession, user: TrainerUser) -> models.Project:
    return projects.get_project_for(db, user, project_id)


def annotator_project(project_id: int, db: DbSession, user: AnnotatorUser) -> models.Project:
    return projects.get_project_for(db, user, project_id)


# The ``{project_id}`` of the path, for a caller who may see it (404 otherwise). Each takes the same
# role check as the route's user alias, so a wrong role still answers 403 before the project is read.
# They are plain ``def``: the lookup is a query on the request's session, so it belongs in a thread.
ProjectDep = Annotated[models.Project, Depends(visible_project)]
AdminProject = Annotated[models.Project, Depends(admin_project)]
TrainerProject = Annotated[models.Project, Depends(trainer_project)]
AnnotatorProject = Annotated[models.Project, Depends(annotator_project)]
