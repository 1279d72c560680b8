"""A claim, end to end: an existing slot if one is claimable, else a new task from the oracle.

On PostgreSQL the router puts the request's session in autocommit and a claim is one or two
single statements, each its own transaction: the project (with the membership check) together with
the slot claim (``UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING`` joined with its task), and, when
no slot is claimable, the new task (budget charge, task and slots in one statement). The budget row is then
locked only for that one statement instead of until the end of a longer transaction, which matters
because every new task in a project charges the same row. Projects with a webhook issue their
tasks through the general path (its outbox row must commit with the charge). SQLite, and any
session already inside a transaction, take the general path of ``server/services/tasks.py``."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server import models
from server.config import Settings
from server.errors import ApiError
from server.oracle import OracleContext, TaskSpec, get_oracle
from server.oracle.base import NoTaskAvailable
from server.schemas import ClaimReason
from server.security import new_token
from server.services.project_state import ProjectState, get_state
from server.services.projects import get_project_for
from server.services.tasks import CLAIMABLE_IDS, Lease, issue_task, retry_on_conflict, take_existing_slot
from server.timeutil import utcnow

NEEDS_FEATURES = {"active", "uncertainty"}


def autocommitting(db: Session) -> bool:
    return db.in_transaction() and db.connection().get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def claim(db: Session, *, user: models.User, project_id: int, settings: Settings) -> Lease | ClaimReason:
    """A lease, or the reason there is none. 404 when the caller may not see the project."""
    user_id = user.id
    if autocommitting(db):
        try:
            return _claim_fast(db, user=user, project_id=project_id, settings=settings)
        finally:
            db.close()
    project = get_project_for(db, user, project_id)
    for attempt in range(4):
        try:
            return _claim_once(db, project=project, user_id=user_id, settings=settings)
        except IntegrityError as exc:
            retry_on_conflict(db, attempt, exc)
    raise AssertionError("unreachable")


def _choose(db: Session, project: models.Project, state: ProjectState,
            settings: Settings) -> tuple[TaskSpec, str] | str:
    """The oracle's next task for the project (its cached state refreshed first), or a reason."""
    with state.lock:
        features = None
        if state.embedding is None and project.oracle in NEEDS_FEATURES:
            features = state.ensure_pixel_features(db)
        ctx = OracleContext(
            n_candidates=project.n_candidates, item_ids=state.item_ids, graph=state.graph,
            rng=state.oracle_rng(settings.oracle_seed), target_match_share=project.target_match_share,
            gold_rate=project.gold_rate, embedding=state.embedding, pixel_features=features,
            extra={"cache": state.cache, "embedding_id": state.embedding_id},
        )
        oracle = get_oracle(project.oracle)
        try:
            return oracle.select(ctx), oracle.name
        except NoTaskAvailable:
            return "done"


def _claim_once(db: Session, *, project: models.Project, user_id: int, settings: Settings) -> Lease | ClaimReason:
    db.refresh(project)
    if project.paused:
        db.commit()
        return ClaimReason.PAUSED
    lease = take_existing_slot(db, project_id=project.id, user_id=user_id, lease_seconds=settings.lease_seconds)
    if lease is not None:
        db.commit()
        return lease
    if project.budget_spent >= project.budget_cap:
        db.commit()
        return ClaimReason.BUDGET_EXHAUSTED
    db.commit()  # release locks while the oracle thinks
    state = get_state(project.id)
    state.refresh(db, max_age=settings.graph_refresh_seconds)
    db.commit()
    if len(state.item_ids) < 2:
        return ClaimReason.NO_ITEMS
    chosen = _choose(db, project, state, settings)
    db.commit()
    if isinstance(chosen, str):
        return ClaimReason(chosen)
    spec, oracle_name = chosen
    lease = issue_task(db, project=project, spec=spec, oracle=oracle_name, user_id=user_id,
                       lease_seconds=settings.lease_seconds)
    if lease is None:
        db.rollback()
        return ClaimReason.BUDGET_EXHAUSTED
    db.commit()
    return lease


# ---------------------------------------------------------------------------- PostgreSQL fast path

_PROJECT_COLUMNS = tuple(models.Project.__table__.c)

# The project (with the caller's membership), and a claimable slot of it leased to the caller, in one
# statement. No row: no such project for this caller. Slot columns NULL: none claimable (or paused).
_PROJECT_AND_SLOT = sa.text(
    f"""
    WITH project AS (
        SELECT {", ".join("p." + c.name for c in _PROJECT_COLUMNS)} FROM projects p
         WHERE p.id = :project_id
           AND (CAST(:any_project AS boolean) OR EXISTS (
                SELECT 1 FROM project_members m WHERE m.project_id = p.id AND m.user_id = :user_id))
    ), pick AS (
        SELECT a.id FROM assignments a, project
         WHERE a.project_id = project.id AND NOT project.paused
           AND a.id IN ({CLAIMABLE_IDS})
           AND (a.status = 'open' OR (a.status = 'leased' AND a.lease_expires_at < :now))
           AND NOT EXISTS (SELECT 1 FROM assignments b
                            WHERE b.task_id = a.task_id AND b.annotator_id = :user_id AND b.id <> a.id)
         ORDER BY a.id
         LIMIT 1
           FOR UPDATE OF a SKIP LOCKED
    ), leased AS (
        UPDATE assignments s
           SET status = 'leased', annotator_id = :user_id, lease_token = :token, lease_expires_at = :expires,
               leased_at = :now, leases_issued = s.leases_issued + 1
          FROM pick WHERE s.id = pick.id
        RETURNING s.id, s.task_id, s.lease_token, s.lease_expires_at
    )
    SELECT project.*, leased.id AS slot_id, leased.task_id AS slot_task_id, leased.lease_token AS slot_token,
           leased.lease_expires_at AS slot_expires, t.reference_id AS slot_reference,
           t.candidate_ids AS slot_candidates
      FROM project LEFT JOIN leased ON true LEFT JOIN tasks t ON t.id = leased.task_id
    """
)

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


def _lease(*, slot_id: int, task_id: int, project_id: int, reference: int, candidates: list[int], token: str,
           expires: object, user_id: int) -> Lease:
    """Plain model instances (never added to a session) carrying what the response needs."""
    task = models.Task(id=task_id, project_id=project_id, reference_id=reference, candidate_ids=candidates)
    slot = models.Assignment(id=slot_id, task_id=task_id, project_id=project_id, status="leased",
                             annotator_id=user_id, lease_token=token, lease_expires_at=expires)
    return Lease(task=task, assignment=slot)


def _project_and_slot(db: Session, *, user: models.User, project_id: int,
                      lease_seconds: int) -> tuple[models.Project, Lease | None]:
    """The project (404 unless the caller may see it) and, when one is claimable, a slot leased now."""
    now = utcnow()
    params = {"project_id": project_id, "user_id": user.id, "any_project": user.role != "annotator",
              "token": new_token(), "expires": now + timedelta(seconds=lease_seconds), "now": now}
    for attempt in range(4):
        try:
            # Core on the session's connection: Session.execute would run it through the ORM's machinery.
            row = db.connection().execute(_PROJECT_AND_SLOT, params).first()
            break
        except IntegrityError:
            # Two tabs of one annotator raced for two slots of one task (unique task/annotator): retry.
            if attempt == 3:
                raise
    if row is None:
        raise ApiError(404, "not_found", f"project {project_id} not found", field="project_id")
    project = models.Project(**{c.key: row._mapping[c.name] for c in _PROJECT_COLUMNS})
    if row.slot_id is None:
        return project, None
    return project, _lease(slot_id=row.slot_id, task_id=row.slot_task_id, project_id=project_id,
                           reference=row.slot_reference, candidates=list(row.slot_candidates),
                           token=row.slot_token, expires=row.slot_expires, user_id=user.id)


def _issue_fast(db: Session, *, project: models.Project, spec: TaskSpec, oracle: str, user_id: int,
                lease_seconds: int) -> Lease | None:
    now = utcnow()
    token = new_token()
    expires = now + timedelta(seconds=lease_seconds)
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


def _claim_fast(db: Session, *, user: models.User, project_id: int, settings: Settings) -> Lease | ClaimReason:
    project, lease = _project_and_slot(db, user=user, project_id=project_id, lease_seconds=settings.lease_seconds)
    user_id = user.id
    if lease is not None:
        return lease
    if project.paused:
        return ClaimReason.PAUSED
    if project.budget_spent >= project.budget_cap:
        return ClaimReason.BUDGET_EXHAUSTED
    state = get_state(project.id)
    state.refresh(db, max_age=settings.graph_refresh_seconds)
    if len(state.item_ids) < 2:
        return ClaimReason.NO_ITEMS
    chosen = _choose(db, project, state, settings)
    if isinstance(chosen, str):
        return ClaimReason(chosen)
    spec, oracle_name = chosen
    if project.webhook_url:
        db.close()  # the webhook outbox row must commit with the charge: one ordinary transaction
        issued = issue_task(db, project=project, spec=spec, oracle=oracle_name, user_id=user_id,
                            lease_seconds=settings.lease_seconds)
        if issued is None:
            db.rollback()
            return ClaimReason.BUDGET_EXHAUSTED
        db.commit()
        return issued
    issued = _issue_fast(db, project=project, spec=spec, oracle=oracle_name, user_id=user_id,
                         lease_seconds=settings.lease_seconds)
    return issued if issued is not None else ClaimReason.BUDGET_EXHAUSTED
