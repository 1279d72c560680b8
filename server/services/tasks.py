"""Claiming tasks: leased slots, expiry, and issuing new tasks against the budget.

Rules (each has a test):
- A claim takes one claimable slot with ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)
  RETURNING``: open slots and slots whose lease expired; never a second slot of a task the annotator
  already holds or answered.
- When no slot is claimable, the oracle proposes a new task; the budget is charged by
  ``UPDATE projects SET budget_spent = budget_spent + 1 WHERE budget_spent < budget_cap RETURNING`` in
  the same transaction that inserts the task (the CHECK constraint is the backstop).
On SQLite, BEGIN IMMEDIATE serialises the whole transaction, which is the single-process equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pal.core.oracle import TaskSpec
from server import models
from server.errors import ApiError
from server.security import new_token
from server.services import outbox
from server.timeutil import as_utc, utcnow

QUESTION = "Click every image that is NOT the same kind of thing as the reference."


@dataclass(frozen=True)
class Lease:
    task: models.Task
    assignment: models.Assignment


# The first claimable slots of a project, each kind through the (project_id, status, id) index in id
# order. (With "status = 'open' OR status = 'leased' AND ..." in one WHERE, PostgreSQL walked the
# primary key from the first slot ever issued and filtered out every answered one: 80,000 rows and
# 8.5 ms per claim at 40,000 tasks, growing with the project. bench/load.py found it.) The few
# claimable slots skipped by the limits (all locked, or all of tasks the caller already holds) are
# taken by later claims.
CLAIMABLE_IDS = """
    SELECT id FROM (SELECT id FROM assignments WHERE project_id = :project_id AND status = 'open'
                     ORDER BY id LIMIT 64) AS open_slots
    UNION ALL
    SELECT id FROM (SELECT id FROM assignments WHERE project_id = :project_id AND status = 'leased'
                       AND lease_expires_at < :now ORDER BY id LIMIT 64) AS expired_slots
"""

_CLAIM_SQL = sa.text(
    """
    UPDATE assignments
       SET status = 'leased', annotator_id = :user_id, lease_token = :token,
           lease_expires_at = :expires, leased_at = :now, leases_issued = leases_issued + 1
     WHERE id = (
        SELECT a.id FROM assignments a
         WHERE a.project_id = :project_id
           AND a.id IN ({claimable})
           AND (a.status = 'open' OR (a.status = 'leased' AND a.lease_expires_at < :now))
           AND NOT EXISTS (SELECT 1 FROM assignments b
                            WHERE b.task_id = a.task_id AND b.annotator_id = :user_id AND b.id <> a.id)
         ORDER BY a.id
         LIMIT 1
         {lock}
     )
    RETURNING id
    """
)


def _claim_sql(dialect: str) -> sa.TextClause:
    lock = "FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
    return sa.text(str(_CLAIM_SQL.text).replace("{lock}", lock).replace("{claimable}", CLAIMABLE_IDS))


def take_existing_slot(db: Session, *, project_id: int, user_id: int, lease_seconds: int) -> Lease | None:
    """Lease an open or expired slot to the user, or return None. Runs inside the caller's transaction."""
    now = utcnow()
    row = db.execute(
        _claim_sql(db.get_bind().dialect.name),
        {
            "user_id": user_id, "token": new_token(), "expires": now + timedelta(seconds=lease_seconds),
            "now": now, "project_id": project_id,
        },
    ).first()
    if row is None:
        return None
    assignment = db.get(models.Assignment, row[0], populate_existing=True)
    assert assignment is not None
    task = db.get(models.Task, assignment.task_id)
    assert task is not None
    return Lease(task=task, assignment=assignment)


def charge_budget(db: Session, *, project_id: int) -> bool:
    """Charge one task to the project's budget; False when the cap is reached."""
    row = db.execute(
        sa.update(models.Project)
        .where(models.Project.id == project_id, models.Project.budget_spent < models.Project.budget_cap)
        .values(budget_spent=models.Project.budget_spent + 1)
        .returning(models.Project.budget_spent)
    ).first()
    return row is not None


def issue_task(
    db: Session, *, project: models.Project, spec: TaskSpec, oracle: str, user_id: int, lease_seconds: int
) -> Lease | None:
    """Insert a task from the oracle's choice and lease its first slot; None when the budget is spent."""
    if not charge_budget(db, project_id=project.id):
        return None
    outbox.budget_charged(db, project=project)  # a threshold event commits with the charge
    now = utcnow()
    task = models.Task(
        project_id=project.id, reference_id=spec.reference, candidate_ids=list(spec.candidates),
        redundancy=project.redundancy, oracle=oracle,
        gold={str(k): v for k, v in spec.gold.items()} if spec.gold else None, created_at=now,
    )
    db.add(task)
    db.flush()
    slots = [
        models.Assignment(task_id=task.id, project_id=project.id, status="open")
        for _ in range(project.redundancy)
    ]
    first = slots[0]
    first.status = "leased"
    first.annotator_id = user_id
    first.lease_token = new_token()
    first.leased_at = now
    first.lease_expires_at = now + timedelta(seconds=lease_seconds)
    first.leases_issued = 1
    db.add_all(slots)
    db.flush()
    return Lease(task=task, assignment=first)


def renew_lease(db: Session, *, task_id: int, user_id: int, lease_token: str, lease_seconds: int) -> Lease:
    assignment = db.execute(
        sa.select(models.Assignment)
        .where(models.Assignment.task_id == task_id, models.Assignment.lease_token == lease_token)
        .with_for_update()
    ).scalar_one_or_none()
    if assignment is None or assignment.annotator_id != user_id:
        raise ApiError(409, "lease_lost", "this lease is no longer yours; claim a new task", field="lease_token")
    if assignment.status != "leased":
        raise ApiError(409, "already_answered", "this task slot is already answered", field="lease_token")
    assignment.lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)
    task = db.get(models.Task, task_id)
    assert task is not None
    return Lease(task=task, assignment=assignment)


def held_leases(db: Session, *, project_id: int, user_id: int) -> list[Lease]:
    """Unexpired leases the user holds in the project (a reloaded page resumes them)."""
    now = utcnow()
    rows = db.execute(
        sa.select(models.Assignment, models.Task)
        .join(models.Task, models.Task.id == models.Assignment.task_id)
        .where(
            models.Assignment.project_id == project_id, models.Assignment.annotator_id == user_id,
            models.Assignment.status == "leased",
        )
        .order_by(models.Assignment.leased_at)
    ).all()
    return [
        Lease(task=t, assignment=a) for a, t in rows
        if a.lease_expires_at is not None and as_utc(a.lease_expires_at) > now
    ]


def retry_on_conflict(db: Session, attempt: int, exc: IntegrityError) -> None:
    """Two tabs of one annotator racing for slots of the same task hit the unique constraint; retry."""
    db.rollback()
    if attempt >= 3:
        raise ApiError(409, "conflict", "could not claim a task, please retry") from exc
