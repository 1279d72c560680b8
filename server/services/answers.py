"""Storing answers as edges, idempotently, and undoing them.

- The client sends an idempotency key; the same key from the same annotator returns the stored
  answer (a retried POST after a lost response changes nothing).
- The slot is locked (``FOR UPDATE``) and must still carry the lease token the answer names: an
  answer to a lease that expired and was re-issued to someone else is refused with 409.
- The answer, the slot's status, the task's count and the edges are written in one transaction.
- PostgreSQL fast path: the common case (a fresh answer to a slot the caller holds) is one
  statement in autocommit (data-modifying CTEs: lock the slot, insert the answer, mark the slot,
  count it on the task, insert the edges), one round trip. Anything else (a replay, a lost lease,
  bad outliers, a race) makes that statement write nothing, and the general path below, which
  explains the refusal or returns the stored answer, runs in its own transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from server import models
from server.db import use_autocommit
from server.errors import ApiError
from server.schemas import AnswerCreate
from server.security import new_token
from server.services.exclusions import refuse_if_excluded
from server.services.tasks import Lease
from server.timeutil import as_utc, utcnow


@dataclass(frozen=True)
class StoredAnswer:
    answer: models.Answer
    edges: int
    replayed: bool


def answer_edges(reference: int, candidates: list[int], outliers: set[int]) -> list[tuple[int, int, int]]:
    """What the human asserted: (reference, match, +1) and (reference, outlier, -1)."""
    return [(reference, c, -1 if c in outliers else 1) for c in candidates]


def _replay(db: Session, *, user_id: int, task_id: int, body: AnswerCreate) -> StoredAnswer | None:
    """The answer already stored under the body's key, or None. A retry gets it back; a key that
    stands for something else is refused, so that no client believes an answer that is not stored:
    another task (409), another answer to this task (422), an answer since undone (409)."""
    answer = db.execute(
        sa.select(models.Answer).where(models.Answer.annotator_id == user_id,
                                       models.Answer.idempotency_key == body.idempotency_key)
    ).scalar_one_or_none()
    if answer is None:
        return None
    if answer.task_id != task_id:
        raise ApiError(409, "idempotency_key_reused", "this idempotency key was used for another task",
                       field="idempotency_key")
    if sorted(set(body.outlier_ids)) != sorted(answer.outlier_ids) or body.cant_tell != answer.cant_tell:
        raise ApiError(422, "idempotency_key_mismatch",
                       "this idempotency key was used for another answer to this task; send a new key",
                       field="idempotency_key")
    if answer.undone_at is not None:
        raise ApiError(409, "answer_undone",
                       "the answer stored under this idempotency key was undone; answer the grid again "
                       "with a new key", field="idempotency_key")
    n_edges = db.scalar(
        sa.select(sa.func.count()).select_from(models.Edge).where(
            models.Edge.answer_id == answer.id, models.Edge.kind == "answer"
        )
    )
    return StoredAnswer(answer=answer, edges=int(n_edges or 0), replayed=True)


_FAST_ANSWER = sa.text(
    """
    WITH slot AS (
        SELECT s.id, t.project_id, t.reference_id, t.candidate_ids
          FROM assignments s JOIN tasks t ON t.id = s.task_id
         WHERE s.task_id = :task_id AND s.lease_token = :lease_token AND s.annotator_id = :user_id
           AND s.status = 'leased'
           AND CAST(:outliers AS bigint[]) <@ ARRAY(SELECT CAST(jsonb_array_elements_text(t.candidate_ids) AS bigint))
           AND NOT EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = t.project_id
                              AND m.user_id = :user_id AND m.excluded_at IS NOT NULL)
           FOR UPDATE OF s
    ), answer AS (
        INSERT INTO answers (task_id, assignment_id, project_id, annotator_id, idempotency_key, outlier_ids,
                             cant_tell, seconds, created_at)
        SELECT CAST(:task_id AS integer), slot.id, slot.project_id, CAST(:user_id AS integer),
               CAST(:key AS varchar), CAST(:outliers_json AS jsonb), CAST(:cant_tell AS boolean),
               CAST(:seconds AS double precision), CAST(:now AS timestamptz)
          FROM slot
        ON CONFLICT DO NOTHING
        RETURNING id, assignment_id
    ), slot_done AS (
        UPDATE assignments SET status = 'answered' WHERE id IN (SELECT assignment_id FROM answer)
    ), task_done AS (
        UPDATE tasks
           SET answers_count = answers_count + 1,
               completed_at = CASE WHEN answers_count + 1 >= redundancy THEN CAST(:now AS timestamptz)
                                   ELSE completed_at END
         WHERE id = :task_id AND EXISTS (SELECT 1 FROM answer)
    ), edge AS (
        INSERT INTO edges (project_id, src, dst, sign, weight, kind, answer_id, annotator_id, created_at)
        SELECT slot.project_id, slot.reference_id, c.id,
               CASE WHEN c.id = ANY(CAST(:outliers AS bigint[])) THEN -1 ELSE 1 END, 1.0, 'answer', answer.id,
               CAST(:user_id AS integer), CAST(:now AS timestamptz)
          FROM answer, slot,
               LATERAL (SELECT CAST(jsonb_array_elements_text(slot.candidate_ids) AS bigint) AS id) c
         WHERE NOT CAST(:cant_tell AS boolean)
        RETURNING 1
    )
    SELECT answer.id, (SELECT count(*) FROM edge) AS n_edges FROM answer
    """
)


def _submit_fast(db: Session, *, task_id: int, user_id: int, body: AnswerCreate) -> StoredAnswer | None:
    """PostgreSQL: the whole answer in one autocommit statement; None when it wrote nothing."""
    if not use_autocommit(db):
        return None
    now = utcnow()
    outliers = sorted(set(body.outlier_ids))
    try:
        row = db.connection().execute(_FAST_ANSWER, {
            "task_id": task_id, "lease_token": body.lease_token, "user_id": user_id, "key": body.idempotency_key,
            "outliers": outliers, "outliers_json": json.dumps(outliers), "cant_tell": body.cant_tell,
            "seconds": body.seconds, "now": now,
        }).first()
    finally:
        db.close()  # back to ordinary transactions for whatever runs next on this session
    if row is None:
        return None
    answer = models.Answer(id=row.id, task_id=task_id, annotator_id=user_id, idempotency_key=body.idempotency_key,
                           outlier_ids=outliers, cant_tell=body.cant_tell, seconds=body.seconds, created_at=now)
    return StoredAnswer(answer=answer, edges=int(row.n_edges), replayed=False)


def submit_answer(db: Session, *, task_id: int, user_id: int, body: AnswerCreate) -> StoredAnswer:
    if not (body.cant_tell and body.outlier_ids):
        stored = _submit_fast(db, task_id=task_id, user_id=user_id, body=body)
        if stored is not None:
            return stored
    for attempt in range(3):
        try:
            return _submit_once(db, task_id=task_id, user_id=user_id, body=body)
        except IntegrityError:
            # A concurrent retry with the same key won the race: answer with what it stored.
            db.rollback()
            replay = _replay(db, user_id=user_id, task_id=task_id, body=body)
            db.commit()
            if replay is not None:
                return replay
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _submit_once(db: Session, *, task_id: int, user_id: int, body: AnswerCreate) -> StoredAnswer:
    project_id = db.scalar(sa.select(models.Task.project_id).where(models.Task.id == task_id))
    if project_id is not None:  # before the replay too: an excluded annotator's answers all stop here
        refuse_if_excluded(db, project_id=project_id, user_id=user_id)
    replay = _replay(db, user_id=user_id, task_id=task_id, body=body)
    if replay is not None:
        db.commit()
        return replay
    task = db.get(models.Task, task_id)
    if task is None:
        raise ApiError(404, "not_found", f"task {task_id} not found", field="task_id")
    assignment = db.execute(
        sa.select(models.Assignment)
        .where(models.Assignment.task_id == task_id, models.Assignment.lease_token == body.lease_token)
        .with_for_update()
    ).scalar_one_or_none()
    if assignment is None or assignment.annotator_id != user_id:
        raise ApiError(409, "lease_lost",
                       "this task was re-issued after your lease expired; your answer was not stored",
                       field="lease_token")
    # Re-check under the row lock: a concurrent retry may have committed meanwhile.
    replay = _replay(db, user_id=user_id, task_id=task_id, body=body)
    if replay is not None:
        db.commit()
        return replay
    if assignment.status != "leased":
        raise ApiError(409, "already_answered", "this task slot is already answered", field="lease_token")
    candidates = list(task.candidate_ids)
    outliers = set(body.outlier_ids)
    unknown = sorted(outliers - set(candidates))
    if unknown:
        raise ApiError(422, "invalid_outliers", f"ids {unknown} are not candidates of task {task_id}",
                       field="outlier_ids")
    if body.cant_tell and outliers:
        raise ApiError(422, "invalid_answer", "a 'can't tell' answer carries no outliers", field="outlier_ids")
    now = utcnow()
    answer = models.Answer(
        task_id=task_id, assignment_id=assignment.id, project_id=task.project_id, annotator_id=user_id,
        idempotency_key=body.idempotency_key, outlier_ids=sorted(outliers), cant_tell=body.cant_tell,
        seconds=body.seconds, created_at=now,
    )
    db.add(answer)
    db.flush()
    assignment.status = "answered"
    # In SQL, not in Python: two answers to two slots of one task may commit concurrently, and a
    # read-modify-write of the count would lose one of them.
    db.execute(
        sa.update(models.Task).where(models.Task.id == task_id).values(
            answers_count=models.Task.answers_count + 1,
            completed_at=sa.case((models.Task.answers_count + 1 >= models.Task.redundancy, now),
                                 else_=models.Task.completed_at),
        ).execution_options(synchronize_session=False)
    )
    n_edges = 0
    if not body.cant_tell:
        rows = [
            {"project_id": task.project_id, "src": s, "dst": d, "sign": sign, "weight": 1.0, "kind": "answer",
             "answer_id": answer.id, "annotator_id": user_id, "created_at": now}
            for s, d, sign in answer_edges(task.reference_id, candidates, outliers)
        ]
        db.execute(sa.insert(models.Edge), rows)
        n_edges = len(rows)
    db.commit()
    return StoredAnswer(answer=answer, edges=n_edges, replayed=False)


def undo_answer(db: Session, *, answer_id: int, user_id: int, window_seconds: int, lease_seconds: int) -> Lease:
    """Withdraw the annotator's own latest answer: its edges get retraction rows (edges are
    append-only) and the slot goes back to the annotator under a fresh lease."""
    answer = db.execute(
        sa.select(models.Answer).where(models.Answer.id == answer_id).with_for_update()
    ).scalar_one_or_none()
    if answer is None or answer.annotator_id != user_id:
        raise ApiError(404, "not_found", f"answer {answer_id} not found", field="answer_id")
    if answer.undone_at is not None:
        raise ApiError(409, "already_undone", "this answer was already undone", field="answer_id")
    refuse_if_excluded(db, project_id=answer.project_id, user_id=user_id)
    now = utcnow()
    if as_utc(answer.created_at) < now - timedelta(seconds=window_seconds):
        raise ApiError(409, "undo_window_passed", f"answers can be undone for {window_seconds} s only",
                       field="answer_id")
    latest = db.scalar(
        sa.select(sa.func.max(models.Answer.id)).where(
            models.Answer.annotator_id == user_id, models.Answer.project_id == answer.project_id,
            models.Answer.undone_at.is_(None),
        )
    )
    if latest != answer.id:
        raise ApiError(409, "not_last_answer", "only your last answer can be undone", field="answer_id")
    task = db.get(models.Task, answer.task_id, with_for_update=True)
    assignment = db.get(models.Assignment, answer.assignment_id, with_for_update=True)
    assert task is not None and assignment is not None
    retract = aliased(models.Edge)
    edges = db.execute(
        sa.select(models.Edge).where(
            models.Edge.answer_id == answer.id, models.Edge.kind == "answer",
            # an exclusion (since lifted) may have retracted them already: a retraction is final
            ~sa.exists().where(retract.kind == "retract", retract.retracts_id == models.Edge.id),
        )
    ).scalars().all()
    if edges:
        db.execute(
            sa.insert(models.Edge),
            [
                {"project_id": e.project_id, "src": e.src, "dst": e.dst, "sign": e.sign, "weight": e.weight,
                 "kind": "retract", "answer_id": answer.id, "annotator_id": user_id, "retracts_id": e.id,
                 "created_at": now}
                for e in edges
            ],
        )
    answer.undone_at = now
    task.answers_count = task.answers_count - 1
    task.completed_at = None
    assignment.status = "leased"
    assignment.lease_token = new_token()
    assignment.leased_at = now
    assignment.lease_expires_at = now + timedelta(seconds=lease_seconds)
    db.commit()
    return Lease(task=task, assignment=assignment)
