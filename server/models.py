"""SQLAlchemy models. The schema is made and changed only by the Alembic migrations in
``migrations/``; a test fails when these models and the migrations disagree."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column
from sqlalchemy.types import TypeDecorator, UserDefinedType

from pal.core.edges import EdgeKind
from server.timeutil import utcnow


class XID8(UserDefinedType[str]):
    """PostgreSQL's 64-bit transaction id, the edge feed's commit-order watermark."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


class TxId(TypeDecorator[str]):
    """``xid8`` on PostgreSQL; a plain nullable integer on SQLite, where commit order is id order."""

    impl = sa.BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(XID8())
        return dialect.type_descriptor(sa.BigInteger())


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on PostgreSQL; on SQLite, which keeps no offset, values read back are
    marked UTC (PAL writes UTC only), so the API never serves a date-time without its offset."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


TIMESTAMP = UTCDateTime()


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (sa.CheckConstraint("role IN ('admin', 'annotator', 'trainer')", name="ck_users_role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    role: Mapped[str] = mapped_column(sa.String(16))
    password_hash: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    # None: valid until revoked. Checked on every request, like revocation.
    expires_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)


class WebSession(Base):
    """A browser session. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TIMESTAMP)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        sa.CheckConstraint("budget_spent >= 0 AND budget_spent <= budget_cap", name="ck_projects_budget"),
        sa.CheckConstraint("n_candidates >= 1 AND n_candidates <= 24", name="ck_projects_n"),
        sa.CheckConstraint("redundancy >= 1", name="ck_projects_redundancy"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    n_candidates: Mapped[int] = mapped_column(default=8)
    redundancy: Mapped[int] = mapped_column(default=1)
    gold_rate: Mapped[float] = mapped_column(default=0.0)
    oracle: Mapped[str] = mapped_column(sa.String(32), default="active")
    target_match_share: Mapped[float] = mapped_column(default=0.5)
    budget_cap: Mapped[int] = mapped_column(default=1000)
    budget_spent: Mapped[int] = mapped_column(default=0)
    paused: Mapped[bool] = mapped_column(default=False)
    webhook_url: Mapped[str | None] = mapped_column(sa.String(2000), nullable=True)
    current_embedding_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("embedding_versions.id", use_alter=True, name="fk_projects_current_embedding"),
        nullable=True,
    )
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class ProjectMember(Base):
    """An annotator's place in a project. ``excluded_at``: set while an admin has excluded them
    (their answer edges were retracted; new claims and answers are refused); None otherwise."""

    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    excluded_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)


class Invite(Base):
    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    email: Mapped[str | None] = mapped_column(sa.String(320), nullable=True)
    created_by: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TIMESTAMP)
    used_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    used_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    # Refused acceptances (wrong e-mail, taken e-mail): the link dies after a few, so one link cannot
    # be used to probe which addresses have accounts.
    failed_attempts: Mapped[int] = mapped_column(default=0, server_default="0")


class Item(Base):
    """One image. ``label`` and ``split`` are hidden ground truth for evaluation only:
    no annotator-facing route ever reads them."""

    __tablename__ = "items"
    __table_args__ = (sa.UniqueConstraint("project_id", "sha256", name="uq_items_project_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(1000), default="")
    width: Mapped[int] = mapped_column()
    height: Mapped[int] = mapped_column()
    channels: Mapped[int] = mapped_column()
    mime: Mapped[str] = mapped_column(sa.String(50), default="image/png")
    data: Mapped[bytes] = deferred(mapped_column(sa.LargeBinary))
    label: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    split: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class KnownLabel(Base):
    """A label an admin knows for one item (the paper's loop starts from one known item per
    class). Each becomes weighted edges to other known items (see ``services.known_labels``);
    admin-only, never shown to annotators."""

    __tablename__ = "known_labels"

    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(200))
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class Task(Base):
    """A served query: one reference and n candidates, answered by ``redundancy`` annotators.
    Budget is charged once, when the task is issued."""

    __tablename__ = "tasks"
    __table_args__ = (
        # The grids in flight (``services.tasks.items_in_flight``), read on every new task.
        sa.Index("ix_tasks_open", "project_id", "id", postgresql_where=sa.text("completed_at IS NULL"),
                 sqlite_where=sa.text("completed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    reference_id: Mapped[int] = mapped_column(sa.ForeignKey("items.id"))
    candidate_ids: Mapped[list[int]] = mapped_column(JSONType)
    redundancy: Mapped[int] = mapped_column()
    answers_count: Mapped[int] = mapped_column(default=0)
    oracle: Mapped[str] = mapped_column(sa.String(32))
    # Known answers for control pairs: {candidate_id: true if it matches the reference}. Never served.
    gold: Mapped[dict[str, bool] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)


class Assignment(Base):
    """One of a task's ``redundancy`` slots. Claiming leases a slot to one annotator."""

    __tablename__ = "assignments"
    __table_args__ = (
        sa.UniqueConstraint("task_id", "annotator_id", name="uq_assignments_task_annotator"),
        sa.CheckConstraint("status IN ('open', 'leased', 'answered')", name="ck_assignments_status"),
        sa.Index("ix_assignments_claimable", "project_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    annotator_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    leased_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    leases_issued: Mapped[int] = mapped_column(default=0)


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (
        sa.UniqueConstraint("annotator_id", "idempotency_key", name="uq_answers_idempotency"),
        # One live answer per slot: a late answer to a re-issued task cannot complete it twice.
        sa.Index(
            "uq_answers_live_assignment",
            "assignment_id",
            unique=True,
            postgresql_where=sa.text("undone_at IS NULL"),
            sqlite_where=sa.text("undone_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int] = mapped_column(sa.ForeignKey("assignments.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    idempotency_key: Mapped[str] = mapped_column(sa.String(100))
    outlier_ids: Mapped[list[int]] = mapped_column(JSONType)
    cant_tell: Mapped[bool] = mapped_column(default=False)
    seconds: Mapped[float | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)


class Edge(Base):
    """Append-only. ``kind='answer'`` rows are what a human asserted; an undo appends a
    ``kind='retract'`` row naming the edge it withdraws. ``txid`` is the commit-order
    watermark of the edge feed (xid8 on PostgreSQL)."""

    __tablename__ = "edges"
    __table_args__ = (
        sa.CheckConstraint("sign IN (-1, 1)", name="ck_edges_sign"),
        sa.UniqueConstraint("answer_id", "src", "dst", "kind", name="uq_edges_answer_pair"),
        sa.Index("ix_edges_project_id", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    src: Mapped[int] = mapped_column(sa.ForeignKey("items.id"))
    dst: Mapped[int] = mapped_column(sa.ForeignKey("items.id"))
    sign: Mapped[int] = mapped_column(sa.SmallInteger)
    weight: Mapped[float] = mapped_column(default=1.0)
    kind: Mapped[str] = mapped_column(sa.String(16), default=EdgeKind.ANSWER.value)  # an EdgeKind value
    answer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("answers.id"), nullable=True)
    annotator_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    retracts_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    txid: Mapped[str | None] = mapped_column(TxId, nullable=True, server_default=sa.FetchedValue())


class EmbeddingVersion(Base):
    """N x D float32 published by the trainer. Written whole, then made current by one UPDATE
    of ``projects.current_embedding_id``."""

    __tablename__ = "embedding_versions"
    __table_args__ = (sa.UniqueConstraint("project_id", "version", name="uq_embedding_project_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column()
    dim: Mapped[int] = mapped_column()
    n_items: Mapped[int] = mapped_column()
    item_ids: Mapped[bytes] = deferred(mapped_column(sa.LargeBinary))
    vectors: Mapped[bytes] = deferred(mapped_column(sa.LargeBinary))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    answers_at_upload: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class WebhookEvent(Base):
    """Outbox of outbound webhooks. A row is written in the transaction that causes the event (a
    budget charge, an embedding made current), so an event exists exactly when its cause committed;
    a background worker delivers it, retrying with backoff. ``body`` is the exact JSON sent (and
    signed) on every attempt; ``event_id`` is the idempotency key receivers deduplicate on;
    ``dedup_key`` makes enqueueing the same event twice a no-op."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="ck_webhook_events_status"),
        sa.Index("ix_webhook_events_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    dedup_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(sa.String(64))
    url: Mapped[str] = mapped_column(sa.String(2000))
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    last_status: Mapped[int | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)


class LoginFailure(Base):
    """One refused sign-in (or wrong current password). Kept in the database, not in process memory,
    so that every server process counts the same attempts; rows older than the window are deleted
    as new ones arrive."""

    __tablename__ = "login_failures"
    __table_args__ = (
        sa.Index("ix_login_failures_client_at", "client", "at"),
        sa.Index("ix_login_failures_at", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client: Mapped[str] = mapped_column(sa.String(64))  # the client's address (see server/client_address.py)
    email: Mapped[str] = mapped_column(sa.String(320))  # lower-cased
    at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
