"""Pydantic schema families: ``XCreate`` (input), ``XUpdate`` (partial input), ``XPublic`` (output)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from pal.core.edges import EdgeRecord
from server.passwords import password_problem

Role = Literal["admin", "annotator", "trainer"]
OracleName = Literal["random", "active", "uncertainty"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # Text the database or a hash cannot take (PostgreSQL refuses NUL; JSON may carry lone UTF-16
        # surrogates, which no UTF-8 encoder accepts) is refused here, naming the field, not with a 500.
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("must not contain NUL (\\x00) characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError("must be valid Unicode (no unpaired surrogates)") from exc
        return value


class LoginRequest(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    name: str
    role: Role
    is_active: bool


class LoginResponse(BaseModel):
    user: UserPublic
    csrf_token: str


def _check_password(value: str, info: ValidationInfo) -> None:
    """The password policy (server/passwords.py), against the e-mail given beside it."""
    problem = password_problem(value, info.data.get("email"))
    if problem:
        raise ValueError(problem)


class UserCreate(Strict):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str = Field(default="", max_length=200)
    role: Role
    password: str | None = Field(default=None, max_length=1000,
                                 description="At least 10 characters, not a common one, not the e-mail.")

    @field_validator("password")
    @classmethod
    def _policy(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _check_password(value, info)
        return value


class TokenCreate(Strict):
    name: str = Field(default="", max_length=200)
    expires_days: int | None = Field(default=None, ge=1, le=3650, strict=True,
                                     description="Days until the token stops working; none: until revoked.")


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    user_id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None


class TokenCreated(TokenPublic):
    token: str = Field(description="Shown once; only its hash is stored.")


class StrictValues(Strict):
    """No coercion: ``"paused": "yes"``, ``"budget_cap": true`` or ``"n_candidates": "8"`` is refused (422),
    not read as true, 1 or 8; a setting means what its JSON type says (an integer is still a float)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ProjectBase(StrictValues):
    description: str = Field(default="", max_length=10_000)
    n_candidates: int = Field(default=8, ge=1, le=24, description="Candidates per grid (8 gives a 3x3 grid).")
    redundancy: int = Field(default=1, ge=1, le=10, description="Different annotators who answer each task.")
    gold_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of tasks that carry control pairs.")
    oracle: OracleName = "active"
    target_match_share: float = Field(default=0.5, ge=0.0, le=1.0)
    budget_cap: int = Field(default=1000, ge=0, le=10_000_000, description="Most tasks that may be issued.")
    webhook_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")


class ProjectCreate(ProjectBase):
    name: str = Field(min_length=1, max_length=200)


class ProjectUpdate(StrictValues):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    n_candidates: int | None = Field(default=None, ge=1, le=24)
    redundancy: int | None = Field(default=None, ge=1, le=10)
    gold_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    oracle: OracleName | None = None
    target_match_share: float | None = Field(default=None, ge=0.0, le=1.0)
    budget_cap: int | None = Field(default=None, ge=0, le=10_000_000)
    paused: bool | None = None
    webhook_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")


class ProjectPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    description: str
    n_candidates: int
    redundancy: int
    gold_rate: float
    oracle: str
    target_match_share: float
    budget_cap: int
    budget_spent: int
    paused: bool
    current_embedding_id: int | None
    created_at: datetime


class ProjectAnnotatorView(BaseModel):
    """What an annotator may know of a project."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    description: str
    n_candidates: int
    paused: bool


class InviteCreate(Strict):
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$",
                              description="Only this address may accept the invite (none: anyone with the link).")
    expires_hours: int = Field(default=72, ge=1, le=24 * 90)


class InvitePublic(BaseModel):
    id: int
    project_id: int
    token: str
    url: str
    expires_at: datetime


class InviteAccept(Strict):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str = Field(default="", max_length=200)
    password: str = Field(max_length=1000, description="At least 10 characters, not a common one, not the e-mail.")

    @field_validator("password")
    @classmethod
    def _policy(cls, value: str, info: ValidationInfo) -> str:
        _check_password(value, info)
        return value


class ImportReport(BaseModel):
    imported: int
    skipped: list[dict[str, str]] = Field(description="One entry per skipped input: source and reason.")
    total_items: int


class KnownLabelIn(Strict):
    item_id: int = Field(ge=1)
    label: str = Field(min_length=1, max_length=200)


class KnownLabelsIn(Strict):
    labels: list[KnownLabelIn] = Field(min_length=1, max_length=10_000)


class KnownLabelsReport(BaseModel):
    added: int = Field(description="Items whose label was stored now.")
    unchanged: int = Field(description="Items that already had this label.")
    edges: int = Field(description="Edges written between known items.")
    total: int = Field(description="Known labels of the project.")


class KnownLabelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    item_id: int
    label: str


class ImportFromPath(Strict):
    path: str = Field(min_length=1, max_length=4000, description="Relative to the server's import root.")


class ItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    width: int
    height: int
    channels: int


class ItemPage(BaseModel):
    items: list[ItemPublic]
    next_after: int | None


class TaskPublic(BaseModel):
    """A claimed task as the annotator sees it: no labels, no gold, no other answers."""

    id: int
    project_id: int
    lease_token: str
    lease_expires_at: datetime
    reference: int
    candidates: list[int]
    question: str


class ClaimReason(str, Enum):
    """Why a claim returned no task."""

    BUDGET_EXHAUSTED = "budget_exhausted"
    PAUSED = "paused"
    NO_ITEMS = "no_items"
    DONE = "done"


class ClaimResult(BaseModel):
    task: TaskPublic | None
    reason: ClaimReason | None = None
    message: str | None = None


class LeaseRenew(Strict):
    lease_token: str = Field(min_length=1, max_length=64)


class AnswerCreate(Strict):
    idempotency_key: str = Field(min_length=8, max_length=100, description="Client-generated, e.g. a UUID.")
    lease_token: str = Field(min_length=1, max_length=64)
    outlier_ids: list[int] = Field(default_factory=list, max_length=64)
    cant_tell: bool = False
    seconds: float | None = Field(default=None, ge=0, le=86_400, description="Time spent on the grid.")

    @field_validator("outlier_ids")
    @classmethod
    def _no_duplicates(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("outlier ids must not repeat")
        return value


class AnswerPublic(BaseModel):
    id: int
    task_id: int
    outlier_ids: list[int]
    cant_tell: bool
    created_at: datetime
    edges: int
    replayed: bool = False


class UndoResult(BaseModel):
    answer_id: int
    task: TaskPublic


class HeldBackOut(BaseModel):
    """Committed edges the feed holds back (PostgreSQL) because a transaction that started before
    they committed is still open, somewhere in the database cluster."""

    edges: int = Field(description="committed edges of this project not deliverable yet")
    oldest_edge_age_s: float = Field(description="seconds since the oldest of them was written")
    blocker_pid: int | None = Field(default=None, description="backend pid of the oldest open write transaction")
    blocker_database: str | None = Field(default=None, description="the database it runs in")
    blocker_state: str | None = Field(default=None, description="its state, e.g. 'idle in transaction'")
    blocker_age_s: float | None = Field(default=None, description="seconds since it began")


class EdgePage(BaseModel):
    edges: list[EdgeRecord]
    next_cursor: str
    has_more: bool
    held_back: HeldBackOut | None = Field(
        default=None, description="set on the last page when committed edges are held back (see docs/operations.md)")


class EmbeddingMeta(Strict):
    step: int = Field(default=0, ge=0)
    edges_seen: int = Field(default=0, ge=0)
    cursor: str | None = Field(default=None, max_length=100)
    metrics: dict[str, float | int | str | None] = Field(default_factory=dict)


class EmbeddingPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project_id: int
    version: int
    dim: int
    n_items: int
    metrics: dict[str, Any]
    answers_at_upload: int
    created_at: datetime
