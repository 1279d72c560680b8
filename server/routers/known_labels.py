"""Known labels of a project's items (admin only): ``GET`` lists them, ``POST`` adds some."""

from __future__ import annotations

from fastapi import APIRouter

from server.deps import AdminUser, DbSession, get_project_for
from server.schemas import KnownLabelPublic, KnownLabelsIn, KnownLabelsReport
from server.services import known_labels

router = APIRouter(prefix="/projects/{project_id}/known-labels", tags=["known labels"])


@router.get("", response_model=list[KnownLabelPublic])
def list_labels(project_id: int, db: DbSession, user: AdminUser) -> list[KnownLabelPublic]:
    get_project_for(db, user, project_id)
    return [KnownLabelPublic.model_validate(k) for k in known_labels.list_known_labels(db, project_id)]


@router.post("", response_model=KnownLabelsReport, status_code=201)
def add_labels(project_id: int, body: KnownLabelsIn, db: DbSession, user: AdminUser) -> KnownLabelsReport:
    """Each new known item gets weighted edges to known items of every label (same label:
    positive, other labels: negative). Re-posting a stored label is a no-op; a different label
    for a stored item is a 409 and changes nothing."""
    get_project_for(db, user, project_id)
    return known_labels.add_known_labels(db, project_id, body.labels, user.id)
