"""Claiming tasks: leased slots, expiry, and issuing new tasks against the budget.

Rules (each has a test):
- A claim takes one claimable slot with ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)
  RETURNING``: open slots and slots whose lease expired, of a project the caller may see that is
  not paused; never a second slot of a task the annotator already holds or answered.
- When no slot is claimable, the oracle proposes a new task: the task and its slots are inserted,
  then the budget is charged by ``UPDATE projects SET budget_spent = budget_spent + 1 WHERE
  budget_spent < budget_cap RETURNING``, all in one transaction (the CHECK constraint is the
  backstop). The charge comes last because it locks the project's row, which every new task of the
  project charges: the lock is then held only until the commit.
  On PostgreSQL in autocommit, for a project without a webhook, the same rows are written by one
  statement instead (``issue_task_at_once``).
On SQLite, BEGIN IMMEDIATE serialises the whole transaction, which is the single-process equivalent
of the row locks (``FOR UPDATE SKIP LOCKED`` compiles to nothing there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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


def _lease(*, slot_id: int, task_id: int, project_id: int, reference: int, candidates: list[int], token: str,
           expires: datetime, user_id: int) -> Lease:
    """Plain model instances (never added to a session) carrying what the response needs."""
    task = models.Task(id=task_id, project_id=project_id, reference_id=reference, candidate_ids=candidates)
    slot = models.Assignment(id=slot_id, task_id=task_id, project_id=project_id, status="leased",
                             annotator_id=user_id, lease_token=token, lease_expires_at=expires)
    return Lease(task=task, assignment=slot)


_SLOTS = models.Base.metadata.tables["assignments"]
_TASKS = models.Base.metadata.tables["tasks"]
# Not named after a column: those names are the UPDATE's own for its SET clause.
_PROJECT_ID = sa.bindparam("claim_project", type_=sa.Integer)
_USER_ID = sa.bindparam("claimant", type_=sa.Integer)
_NOW = sa.bindparam("now", type_=models.TIMESTAMP)


def _first_claimable(status: str, name: str) -> sa.Subquery:
    # Each kind through the (project_id, status, id) index in id order. (With "status = 'open' OR
    # status = 'leased' AND ..." in one WHERE, PostgreSQL walked the primary key from the first slot
    # ever issued and filtered out every answered one: 80,000 rows and 8.5 ms per claim at 40,000
    # tasks, growing with the project. bench/load.py found it.) The few claimable slots skipped by
    # the limit (all locked, or all of tasks the caller already holds) are taken by later claims.
    s = _SLOTS.alias(f"{name}_s")
    query = sa.select(s.c.id).where(s.c.project_id == _PROJECT_ID, s.c.status == status)
    if status == "leased":
        query = query.where(s.c.lease_expires_at < _NOW)
    return query.order_by(s.c.id).limit(64).subquery(name)


def _of_slot_task(name: str) -> sa.Label[Any]:
    # A subquery, not UPDATE ... FROM tasks: SQLite's RETURNING may not name the FROM's tables. On
    # SQLite every column of a RETURNING clause is written unqualified, this subquery's too: there
    # ``id`` is the task's (the inner table has one) and ``task_id`` the slot's (it has none).
    t = _TASKS.alias("t")
    return sa.select(t.c[name]).where(t.c.id == _SLOTS.c.task_id).scalar_subquery().label(name)


def _claim_statement(*, members_only: bool) -> sa.Update:
    """Lease the first claimable slot of the project to the caller; one row (the slot and its task)
    or none. ``members_only``: the caller is an annotator, who may claim in their projects only."""
    a, b, p = _SLOTS.alias("a"), _SLOTS.alias("b"), models.Project.__table__.alias("p")
    open_slots, expired_slots = _first_claimable("open", "open_slots"), _first_claimable("leased", "expired_slots")
    pick = (
        sa.select(a.c.id).select_from(a.join(p, p.c.id == a.c.project_id))
        .where(
            a.c.project_id == _PROJECT_ID, sa.not_(p.c.paused),
            a.c.id.in_(sa.union_all(sa.select(open_slots.c.id), sa.select(expired_slots.c.id))),
            sa.or_(a.c.status == "open", sa.and_(a.c.status == "leased", a.c.lease_expires_at < _NOW)),
            ~sa.exists().where(b.c.task_id == a.c.task_id, b.c.annotator_id == _USER_ID, b.c.id != a.c.id),
        )
        .order_by(a.c.id).limit(1).with_for_update(of=a, skip_locked=True)
    )
    m = models.ProjectMember.__table__
    # An excluded member is issued nothing (server/services/exclusions.py).
    pick = pick.where(~sa.exists().where(m.c.project_id == p.c.id, m.c.user_id == _USER_ID,
                                         m.c.excluded_at.is_not(None)))
    if members_only:
        pick = pick.where(sa.exists().where(m.c.project_id == p.c.id, m.c.user_id == _USER_ID))
    return (
        sa.update(_SLOTS).where(_SLOTS.c.id == pick.scalar_subquery())
        .values(status="leased", annotator_id=_USER_ID, lease_token=sa.bindparam("token", type_=sa.String),
                lease_expires_at=sa.bindparam("expires", type_=models.TIMESTAMP), leased_at=_NOW,
                leases_issued=_SLOTS.c.leases_issued + 1)
        .returning(_SLOTS.c.id, _SLOTS.c.task_id, _SLOTS.c.lease_expires_at,
                   _of_slot_task("reference_id"), _of_slot_task("candidate_ids"))
    )


_CLAIM_ANY = _claim_statement(members_only=False)
_CLAIM_MEMBER = _claim_statement(members_only=True)


def take_slot(db: Session, *, user: models.User, project_id: int, lease_seconds: int) -> Lease | None:
    """Lease an open or expired slot of the project to the user; None when there is none, the
    project is paused, or the user may not see it. One statement, in the session's transaction (or
    on its own in autocommit)."""
    now = utcnow()
    token, expires = new_token(), now + timedelta(seconds=lease_seconds)
    statement = _CLAIM_MEMBER if user.role == "annotator" else _CLAIM_ANY
    # Core on the session's connection: Session.execute would run it through the ORM's machinery.
    row = db.connection().execute(statement, {
        "claim_project": project_id, "claimant": user.id, "token": token, "expires": expires, "now": now,
    }).first()
    if row is None:
        return None
    return _lease(slot_id=row.id, task_id=row.task_id, project_id=project_id, reference=row.reference_id,
                  candidates=list(row.candidate_ids), token=token, expires=row.lease_expires_at, user_id=user.id)


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
    """Insert a task from the oracle's choice with its slots, the first leased to the user, and charge
    the budget; None when the budget is spent, and the caller rolls back. Runs in the caller's
    transaction, which must not be in autocommit: the rows and the charge commit together."""
    now = utcnow()
    token, expires = new_token(), now + timedelta(seconds=lease_seconds)
    candidates = [int(c) for c in spec.candidates]
    conn = db.connection()
    task_id = conn.execute(sa.insert(_TASKS).values(
        project_id=project.id, reference_id=int(spec.reference), candidate_ids=candidates,
        redundancy=project.redundancy, answers_count=0, oracle=oracle,
        gold={str(k): v for k, v in spec.gold.items()} if spec.gold else None, created_at=now,
    ).returning(_TASKS.c.id)).scalar_one()
    leased = {"status": "leased", "annotator_id": user_id, "lease_token": token, "lease_expires_at": expires,
              "leased_at": now, "leases_issued": 1}
    unleased = {"status": "open", "annotator_id": None, "lease_token": None, "lease_expires_at": None,
                "leased_at": None, "leases_issued": 0}
    slots = conn.execute(sa.insert(_SLOTS).values([
        {"task_id": task_id, "project_id": project.id, **(leased if n == 0 else unleased)}
        for n in range(project.redundancy)
    ]).returning(_SLOTS.c.id, _SLOTS.c.status)).all()
    if not charge_budget(db, project_id=project.id):
        return None
    outbox.budget_charged(db, project=project)  # a threshold event commits with the charge
    slot_id = next(slot.id for slot in slots if slot.status == "leased")
    return _lease(slot_id=slot_id, task_id=task_id, project_id=project.id, reference=int(spec.reference),
                  candidates=candidates, token=token, expires=expires, user_id=user_id)


# PostgreSQL in autocommit: the charge, the task and its slots in one statement (data-modifying
# CTEs, which SQLite does not have), so the project's row is locked for that statement only and a
# new task costs one round trip instead of a five-statement transaction (a new-task claim took a
# median 7.5 ms against 16 ms on a busy test machine), holding the pooled connection that much less.
_ISSUE_TASK = sa.text(
    """
    WITH charge AS (
        UPDATE projects SET budget_spent = budget_spent + 1
         WHERE id = :project_id AND budget_spent < budget_cap
        RETURNING id
    ), task AS (
        INSERT INTO tasks (project_id, reference_id, candidate_ids, redundancy, answers_count, oracle, gold,
                           created_at)
        SELECT charge.id, CAST(:reference AS integer), CAST(:candidates AS jsonb), CAST(:redundancy AS integer), 0,
               CAST(:oracle AS varchar), CAST(:gold AS jsonb), CAST(:now AS timestamptz)
          FROM charge
        RETURNING id
    ), slots AS (
        INSERT INTO assignments (task_id, project_id, status, annotator_id, lease_token, lease_expires_at,
                                 leased_at, leases_issued)
        SELECT task.id, CAST(:project_id AS integer),
               CASE WHEN g = 1 THEN 'leased' ELSE 'open' END,
               CASE WHEN g = 1 THEN CAST(:user_id AS integer) END,
               CASE WHEN g = 1 THEN CAST(:token AS varchar) END,
               CASE WHEN g = 1 THEN CAST(:expires AS timestamptz) END,
               CASE WHEN g = 1 THEN CAST(:now AS timestamptz) END,
               CASE WHEN g = 1 THEN 1 ELSE 0 END
          FROM task, generate_series(1, CAST(:redundancy AS integer)) AS g
        RETURNING id, status
    )
    SELECT task.id AS task_id, (SELECT id FROM slots WHERE status = 'leased') AS slot_id FROM task
    """
)




def issue_task_at_once(db: Session, *, project: models.Project, spec: TaskSpec, oracle: str, user_id: int,
                       lease_seconds: int) -> Lease | None:
    """``issue_task`` as one statement, for a PostgreSQL session in autocommit and a project without
    a webhook (whose budget events must commit with the charge); None when the budget is spent."""
    now = utcnow()
    token, expires = new_token(), now + timedelta(seconds=lease_seconds)
    candidates = [int(c) for c in spec.candidates]
    gold = json.dumps({str(k): v for k, v in spec.gold.items()}) if spec.gold else None
    row = db.connection().execute(_ISSUE_TASK, {
        "project_id": project.id, "reference": int(spec.reference), "candidates": json.dumps(candidates),
        "redundancy": project.redundancy, "oracle": oracle, "gold": gold, "now": now, "user_id": user_id,
        "token": token, "expires": expires,
    }).first()
    if row is None:
        return None
    return _lease(slot_id=row.slot_id, task_id=row.task_id, project_id=project.id, reference=int(spec.reference),
                  candidates=candidates, token=token, expires=expires, user_id=user_id)


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


# Grids out at once beyond this many are a crowd far bigger than a grid's choice needs to know about.
IN_FLIGHT_LIMIT = 2000


def items_in_flight(db: Session, *, project_id: int) -> frozenset[int]:
    """Reference and candidate items of the project's tasks issued but not fully answered (the most
    recent ``IN_FLIGHT_LIMIT``): answers about them are on the way. One indexed query per new task;
    a task whose lease lapsed stays in flight, since the next claim is served its slot first."""
    rows = db.execute(
        sa.select(models.Task.reference_id, models.Task.candidate_ids)
        .where(models.Task.project_id == project_id, models.Task.completed_at.is_(None))
        .order_by(models.Task.id.desc()).limit(IN_FLIGHT_LIMIT)
    ).all()
    busy: set[int] = set()
    for reference, candidates in rows:
        busy.add(int(reference))
        busy.update(int(c) for c in candidates)
    return frozenset(busy)


def retry_on_conflict(db: Session, attempt: int, exc: IntegrityError) -> None:
    """Two tabs of one annotator racing for slots of the same task hit the unique constraint; retry."""
    db.rollback()
    if attempt >= 3:
        raise ApiError(409, "conflict", "could not claim a task, please retry") from exc
