"""Accounts and API tokens (admin)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Response

from server import models
from server.deps import AdminUser, DbSession
from server.errors import ApiError
from server.schemas import TokenCreate, TokenCreated, TokenPublic, UserCreate, UserPublic
from server.security import hash_password
from server.services.users import create_token
from server.timeutil import utcnow

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


@router.get("/users", response_model=list[UserPublic])
def list_users(db: DbSession, _admin: AdminUser) -> list[models.User]:
    return list(db.execute(sa.select(models.User).order_by(models.User.id)).scalars())


@router.post("/users/{user_id}/tokens", response_model=TokenCreated, status_code=201)
def issue_token(user_id: int, body: TokenCreate, db: DbSession, _admin: AdminUser) -> TokenCreated:
    if db.get(models.User, user_id) is None:
        raise ApiError(404, "not_found", f"user {user_id} not found", field="user_id")
    return create_token(db, user_id=user_id, name=body.name)


@router.get("/users/{user_id}/tokens", response_model=list[TokenPublic])
def list_tokens(user_id: int, db: DbSession, _admin: AdminUser) -> list[models.ApiToken]:
    return list(db.execute(sa.select(models.ApiToken).where(models.ApiToken.user_id == user_id)).scalars())


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, db: DbSession, _admin: AdminUser) -> Response:
    row = db.get(models.ApiToken, token_id)
    if row is None:
        raise ApiError(404, "not_found", f"token {token_id} not found", field="token_id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.commit()
    return Response(status_code=204)
