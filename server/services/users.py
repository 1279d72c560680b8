"""API tokens: issued to a user, shown once, stored as a hash."""

from __future__ import annotations

from sqlalchemy.orm import Session

from server import models
from server.schemas import TokenCreated
from server.security import hash_token, new_token


def create_token(db: Session, *, user_id: int, name: str) -> TokenCreated:
    token = new_token()
    row = models.ApiToken(user_id=user_id, name=name, token_hash=hash_token(token))
    db.add(row)
    db.commit()
    return TokenCreated(id=row.id, user_id=user_id, name=name, created_at=row.created_at, revoked_at=None,
                        token=token)
