"""Schemas of the account lifecycle: an admin's view of a user, changes to a user, members, and
changing one's own password. The password policy needs the account's e-mail, so the services
apply it (``server/services/users.py``), naming the field."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from server.schemas import Role, Strict


class UserDetail(BaseModel):
    """A user as the admin's user list shows them: live sessions and tokens counted, projects joined."""

    id: int
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime
    sessions: int = Field(description="Browser sessions that have not expired or been ended.")
    tokens: int = Field(description="API tokens that are neither revoked nor expired.")
    project_ids: list[int] = Field(description="Projects the user is a member of.")


class UserUpdate(Strict):
    """Fields left out stay as they are. ``strict``: ``"yes"`` is not a boolean, ``"1"`` not a role."""

    name: str | None = Field(default=None, max_length=200)
    role: Role | None = None
    is_active: bool | None = Field(default=None, strict=True,
                                   description="false disables the account: its sessions end, its tokens stop.")
    password: str | None = Field(default=None, max_length=1000,
                                 description="A new password (the policy applies); ends the user's sessions.")


class PasswordChange(Strict):
    current_password: str = Field(min_length=1, max_length=1000)
    new_password: str = Field(max_length=1000, description="At least 10 characters, not a common one, not the e-mail.")


class SessionsEnded(BaseModel):
    ended: int = Field(description="How many browser sessions were ended.")


class MemberAdd(Strict):
    email: str = Field(min_length=3, max_length=320, description="The e-mail of an existing user.")


class MemberPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    user_id: int
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime = Field(description="When the user joined the project.")
