"""Known labels of a project's items (admin only): ``GET`` lists them, ``POST`` adds some (JSON, or
a CSV file from the dashboard)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from server.deps import AdminProject, AdminUser, DbSession
from server.errors import ApiError
from server.schemas import KnownLabelPublic, KnownLabelsIn, KnownLabelsReport
from server.services import known_labels
from server.services.known_labels_csv import parse_known_labels

MAX_CSV_BYTES = 2 * 1024 * 1024

router = APIRouter(prefix="/projects/{project_id}/known-labels", tags=["known labels"])


@router.get("", response_model=list[KnownLabelPublic])
def list_labels(project: AdminProject, db: DbSession) -> list[KnownLabelPublic]:
    return [KnownLabelPublic.model_validate(k) for k in known_labels.list_known_labels(db, project.id)]


@router.post("", response_model=KnownLabelsReport, status_code=201)
def add_labels(project: AdminProject, body: KnownLabelsIn, db: DbSession, user: AdminUser) -> KnownLabelsReport:
    """Each new known item gets weighted edges to known items of every label (same label:
    positive, other labels: negative). Re-posting a stored label is a no-op; a different label
    for a stored item is a 409 and changes nothing."""
    return known_labels.add_known_labels(db, project.id, body.labels, user.id)


@router.post("/file", response_model=KnownLabelsReport, status_code=201)
def add_labels_from_csv(
    project: AdminProject, file: Annotated[UploadFile, File(description="CSV: label, and item_id or source")],
    db: DbSession, user: AdminUser,
) -> KnownLabelsReport:
    """A CSV with a ``label`` column and an ``item_id`` or ``source`` column; a bad row rejects the
    whole file (422 naming its line) and stores nothing."""
    raw = file.file.read(MAX_CSV_BYTES + 1)
    if len(raw) > MAX_CSV_BYTES:
        raise ApiError(413, "too_large", f"the CSV is larger than {MAX_CSV_BYTES} bytes", field="file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "bad_csv", "the CSV is not UTF-8 text", field="file") from exc
    return known_labels.add_known_labels(db, project.id, parse_known_labels(db, project.id, text), user.id)
