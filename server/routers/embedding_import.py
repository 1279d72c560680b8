"""Embeddings you bring (admin only): vectors computed elsewhere become the project's current
embedding version (``server/services/embedding_import.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from server import models
from server.deps import AdminProject, DbSession, SettingsDep
from server.errors import ApiError
from server.schemas import EmbeddingPublic
from server.services.embedding_import import import_embedding

MAX_INDEX_BYTES = 64 * 1024 * 1024

router = APIRouter(prefix="/projects/{project_id}/embeddings", tags=["embeddings you bring"])


def _read(upload: UploadFile, limit: int, field: str) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"{field} exceeds {limit // (1024 * 1024)} MB", field=field)
    return data


@router.post("/import", response_model=EmbeddingPublic, status_code=201)
def import_vectors(
    project: AdminProject, db: DbSession, settings: SettingsDep,
    vectors: Annotated[UploadFile, File(description=".npy float (N, D): one row per item")],
    index: Annotated[UploadFile | None, File(description="CSV with an item_id or a source column, one line per "
                                                         "row; without it rows follow the items in id order")] = None,
) -> models.EmbeddingVersion:
    """Publish the vectors as the project's current embedding version: the oracle uses them from
    the next grid. A bad row or line is refused with a 422 naming it, and nothing is stored."""
    raw = _read(vectors, settings.max_upload_mb * 1024 * 1024, "vectors")
    text = None
    if index is not None:
        try:
            text = _read(index, MAX_INDEX_BYTES, "index").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(422, "bad_csv", "the index is not UTF-8 text", field="index") from exc
    return import_embedding(db, project=project, vectors_raw=raw, index_text=text)
