"""Accounts and API tokens (admin): create, list, change, disable and enable users, end their
sessions, issue, list and revoke their tokens. The rules live in ``server/services/users.py``."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response

from server import models
from server.deps import SESSION_COOKIE, AdminUser, DbSession
from server.errors import ApiError
from server.schemas import TokenCreate, TokenCreated, TokenPublic, UserCreate, UserPublic
from server.schemas_accounts import SessionsEnded, UserDetail, UserUpdate
from server.security import hash_password, hash_token
from server.services import users

router = APIRouter(tags=["users"])


@router.post("/users", response_model=UserPublic, status_code=201)
def create_user(body: UserCreate, db: DbSession, _admin: AdminUser) -> models.User:
    if db.execute(sa.select(models.User.id).where(sa.func.lower(models.User.email) == body.email.lower())).first():
        raise ApiError(409, "email_taken", f"a user with e-mail {body.email} exists", field="email")
    user = models.User(email=body.email, name=body.name, role=body.role,
                       password_hash=hash_password(body.password) if body.password else None)
    db.add(user)
    try:
        db.commit()
    except sa.exc.IntegrityError as exc:  # the same address in another letter case (SQLite's lower() is ASCII-only)
        db.rollback()
        raise ApiError(409, "email_taken", f"a user with e-mail {body.email} exists", field="email") from exc
    return user


@router.get("/users", response_model=list[UserDetail])
def list_users(db: DbSession, _admin: AdminUser) -> list[UserDetail]:
    return users.user_details(db)


@router.get("/users/{user_id}", response_model=UserDetail)
def read_user(user_id: int, db: DbSession, _admin: AdminUser) -> UserDetail:
    users.get_user(db, user_id)
    return users.user_details(db, [user_id])[0]


@router.patch("/users/{user_id}", response_model=UserDetail)
def update_user(user_id: int, body: UserUpdate, request: Request, db: DbSession, admin: AdminUser) -> UserDetail:
    """Change name, role, password or whether the account is active. A new password ends the user's
    sessions (all but the caller's own when admins change their own); disabling ends all of them and
    refuses the user's tokens until the account is enabled again."""
    user = users.get_user(db, user_id)
    if user.id == admin.id and body.is_active is False:
        raise ApiError(409, "self_disable", "you cannot disable your own account; ask another admin",
                       field="is_active")
    if user.id == admin.id and body.role not in (None, "admin"):
        raise ApiError(409, "self_demote", "you cannot take the admin role from yourself; ask another admin",
                       field="role")
    cookie = request.cookies.get(SESSION_COOKIE)
    keep = hash_token(cookie) if cookie and user.id == admin.id else None
    users.update_user(db, user, name=body.name, role=body.role, is_active=body.is_active,
                      password=body.password, keep=keep)
    return users.user_details(db, [user_id])[0]


@router.delete("/users/{user_id}/sessions", response_model=SessionsEnded)
def end_sessions(user_id: int, request: Request, db: DbSession, admin: AdminUser) -> SessionsEnded:
    """Sign the user out everywhere (an admin ending their own sessions keeps the current one)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    keep = hash_token(cookie) if cookie and user_id == admin.id else None
    return SessionsEnded(ended=users.end_sessions(db, user_id, keep=keep))


@router.post("/users/{user_id}/tokens", response_model=TokenCreated, status_code=201)
def issue_token(user_id: int, body: TokenCreate, db: DbSession, _admin: AdminUser) -> TokenCreated:
    users.get_user(db, user_id)
    return users.create_token(db, user_id=user_id, name=body.name, expires_days=body.expires_days)


@router.get("/users/{user_id}/tokens", response_model=list[TokenPublic])
def list_tokens(user_id: int, db: DbSession, _admin: AdminUser) -> list[models.ApiToken]:
    return users.list_tokens(db, user_id)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, db: DbSession, _admin: AdminUser) -> Response:
    users.revoke_token(db, token_id)
    return Response(status_code=204)
