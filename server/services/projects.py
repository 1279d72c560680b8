"""Projects: creating one, and who may see which."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.config import get_settings
from server.errors import ApiError
from server.schemas import ProjectCreate
from server.webhook_guard import refusal


def check_webhook_url(url: str | None) -> None:
    """Refuse a webhook URL on an internal address (server/webhook_guard.py), naming the field."""
    if url is None:
        return
    reason = refusal(url, get_settings().webhook_networks)
    if reason:
        raise ApiError(422, "webhook_url_refused", f"webhook_url: {reason}", field="webhook_url")


def create_project(db: Session, body: ProjectCreate) -> models.Project:
    check_webhook_url(body.webhook_url)
    if db.execute(sa.select(models.Project.id).where(models.Project.name == body.name)).first():
        raise ApiError(409, "name_taken", f"a project named {body.name!r} exists", field="name")
    project = models.Project(**body.model_dump())
    db.add(project)
    db.commit()
    return project


def update_project(db: Session, project: models.Project, changes: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Apply validated ``ProjectUpdate`` fields (``None`` leaves a field as it is, except
    ``webhook_url``, where it removes the hook); returns {field: (old, new)} for what changed.
    Checked before anything is written, so a refused update stores nothing."""
    check_webhook_url(changes.get("webhook_url"))
    cap = changes.get("budget_cap")
    if cap is not None and cap < project.budget_spent:
        raise ApiError(422, "budget_below_spent",
                       f"budget_cap {cap} is below the {project.budget_spent} tasks already issued", field="budget_cap")
    changed: dict[str, tuple[Any, Any]] = {}
    for key, value in changes.items():
        if value is None and key != "webhook_url":
            continue
        old = getattr(project, key)
        if old != value:
            changed[key] = (old, value)
            setattr(project, key, value)
    try:
        db.commit()
    except sa.exc.IntegrityError as exc:
        db.rollback()
        raise ApiError(409, "conflict", "the update conflicts with the stored project (name taken?)") from exc
    return changed


def get_project_for(db: Session, user: models.User, project_id: int) -> models.Project:
    """The project, if the caller may see it: admins and trainers see all, annotators their own.
    Unknown and forbidden projects both answer 404 so ids cannot be probed. One query."""
    member = (
        sa.exists().where(models.ProjectMember.project_id == models.Project.id,
                          models.ProjectMember.user_id == user.id)
        if user.role == "annotator" else sa.true()
    )
    row = db.execute(sa.select(models.Project, member.label("member")).where(models.Project.id == project_id)).first()
    if row is None or not row.member:
        raise ApiError(404, "not_found", f"project {project_id} not found", field="project_id")
    project: models.Project = row[0]
    return project
