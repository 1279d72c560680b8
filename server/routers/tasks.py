"""Claiming, renewing and answering tasks; undoing one's last answer (annotators)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Response

from server import models
from server.db import use_autocommit
from server.deps import AnnotatorProject, AnnotatorUser, DbSession, SettingsDep
from server.schemas import AnswerCreate, AnswerPublic, ClaimReason, ClaimResult, LeaseRenew, TaskPublic, UndoResult
from server.services import answers as answer_service
from server.services import tasks as task_service
from server.services.claims import claim
from server.timeutil import utcnow

router = APIRouter(tags=["tasks"])

REASONS = {
    ClaimReason.PAUSED: "This project is paused. Thank you, please come back later.",
    ClaimReason.BUDGET_EXHAUSTED: "The label budget of this project is spent. Thank you for your answers!",
    ClaimReason.NO_ITEMS: "This project has no images yet.",
}


def task_public(lease: task_service.Lease) -> TaskPublic:
    assert lease.assignment.lease_token is not None and lease.assignment.lease_expires_at is not None
    return TaskPublic(
        id=lease.task.id, project_id=lease.task.project_id, lease_token=lease.assignment.lease_token,
        lease_expires_at=lease.assignment.lease_expires_at, reference=lease.task.reference_id,
        candidates=list(lease.task.candidate_ids), question=task_service.QUESTION,
    )


@router.post("/projects/{project_id}/tasks/claim", response_model=ClaimResult)
def claim_task(project_id: int, db: DbSession, user: AnnotatorUser, settings: SettingsDep) -> ClaimResult:
    use_autocommit(db)  # PostgreSQL: each step of a claim is one statement (server/services/claims.py)
    result = claim(db, user=user, project_id=project_id, settings=settings)
    if isinstance(result, ClaimReason):
        return ClaimResult(task=None, reason=result, message=REASONS.get(result))
    return ClaimResult(task=task_public(result))


@router.get("/projects/{project_id}/tasks/mine", response_model=list[TaskPublic])
def my_tasks(project: AnnotatorProject, db: DbSession, user: AnnotatorUser) -> list[TaskPublic]:
    """Leases the caller still holds (a reloaded page resumes them)."""
    return [task_public(lease) for lease in task_service.held_leases(db, project_id=project.id, user_id=user.id)]


@router.post("/tasks/{task_id}/lease", response_model=TaskPublic)
def renew(task_id: int, body: LeaseRenew, db: DbSession, user: AnnotatorUser, settings: SettingsDep) -> TaskPublic:
    lease = task_service.renew_lease(db, task_id=task_id, user_id=user.id, lease_token=body.lease_token,
                                     lease_seconds=settings.lease_seconds)
    db.commit()
    return task_public(lease)


@router.post("/tasks/{task_id}/answers", response_model=AnswerPublic, status_code=201,
             responses={200: {"model": AnswerPublic, "description": "a replay of a stored answer"}})
def answer(task_id: int, body: AnswerCreate, response: Response, db: DbSession, user: AnnotatorUser) -> AnswerPublic:
    stored = answer_service.submit_answer(db, task_id=task_id, user_id=user.id, body=body)
    if stored.replayed:
        response.status_code = 200
    a = stored.answer
    return AnswerPublic(id=a.id, task_id=a.task_id, outlier_ids=list(a.outlier_ids), cant_tell=a.cant_tell,
                        created_at=a.created_at, edges=stored.edges, replayed=stored.replayed)


@router.delete("/answers/{answer_id}", response_model=UndoResult)
def undo(answer_id: int, db: DbSession, user: AnnotatorUser, settings: SettingsDep) -> UndoResult:
    lease = answer_service.undo_answer(db, answer_id=answer_id, user_id=user.id,
                                       window_seconds=settings.undo_window_seconds,
                                       lease_seconds=settings.lease_seconds)
    return UndoResult(answer_id=answer_id, task=task_public(lease))


@router.get("/projects/{project_id}/me", response_model=dict[str, int])
def my_counts(project: AnnotatorProject, db: DbSession, user: AnnotatorUser) -> dict[str, int]:
    """The caller's own answers in this project: today (UTC) and in all."""
    start = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    base = sa.select(sa.func.count()).select_from(models.Answer).where(
        models.Answer.project_id == project.id, models.Answer.annotator_id == user.id,
        models.Answer.undone_at.is_(None),
    )
    today = db.scalar(base.where(models.Answer.created_at >= start)) or 0
    total = db.scalar(base) or 0
    return {"today": int(today), "total": int(total)}
