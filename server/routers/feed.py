"""What the trainer reads and writes: the edge feed and embedding versions."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from pydantic import ValidationError

from pal.wire import NPY_MEDIA_TYPE, START_CURSOR
from server import models
from server.deps import DbSession, SettingsDep, TrainerProject, TrainerUser
from server.errors import ApiError
from server.schemas import EdgePage, EmbeddingMeta, EmbeddingPublic, HeldBackOut
from server.services.edges import edge_page, held_back
from server.services.embeddings import parse_upload, store_version
from server.services.quality import without_hidden_label_metrics

router = APIRouter(tags=["trainer feed"])


@router.get("/projects/{project_id}/edges", response_model=EdgePage)
def edges(
    project: TrainerProject, db: DbSession,
    cursor: Annotated[str, Query(max_length=60, pattern=r"^\d{1,20}:\d{1,20}$")] = START_CURSOR,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 5000,
) -> EdgePage:
    """A page of committed edges after ``cursor``, in commit order; pass ``next_cursor`` back.
    ``kind='retract'`` rows withdraw edge ``retracts_id`` (an undone answer)."""
    page, next_cursor, has_more = edge_page(db, project_id=project.id, cursor=cursor, limit=limit)
    # Only on the last page: there a consumer would otherwise read "nothing new" and not know why.
    held = None if has_more else held_back(db, project_id=project.id)
    return EdgePage(edges=page, next_cursor=next_cursor, has_more=has_more,
                    held_back=None if held is None else HeldBackOut(**asdict(held)))


async def _read_limited(upload: UploadFile, limit: int, field: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"{field} exceeds {limit // (1024 * 1024)} MB", field=field)
    return data


@router.post("/projects/{project_id}/embeddings", response_model=EmbeddingPublic, status_code=201)
async def upload_embedding(
    project: TrainerProject,
    meta: Annotated[str, Form(description="JSON: step, edges_seen, cursor, metrics")],
    item_ids: Annotated[UploadFile, File(description=".npy int64 (N,)")],
    vectors: Annotated[UploadFile, File(description=".npy float32 (N, D), rows follow item_ids")],
    db: DbSession, settings: SettingsDep, user: TrainerUser,
) -> EmbeddingPublic:
    from starlette.concurrency import run_in_threadpool

    try:
        parsed = EmbeddingMeta.model_validate(json.loads(meta))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ApiError(422, "invalid_meta", f"meta must be JSON matching EmbeddingMeta: {exc}", field="meta") from exc
    limit = settings.max_upload_mb * 1024 * 1024
    ids, vecs = parse_upload(await _read_limited(item_ids, limit, "item_ids"),
                             await _read_limited(vectors, limit, "vectors"))
    version = await run_in_threadpool(store_version, db, project=project, ids=ids, vectors=vecs, meta=parsed)
    return _for_caller(version, user)


def _for_caller(version: models.EmbeddingVersion, user: models.User) -> EmbeddingPublic:
    """The version as the caller may see it: a trainer gets no score against the hidden labels."""
    public = EmbeddingPublic.model_validate(version)
    if user.role != "admin":
        public.metrics = without_hidden_label_metrics(public.metrics)
    return public


@router.get("/projects/{project_id}/embeddings", response_model=list[EmbeddingPublic])
def list_embeddings(project: TrainerProject, db: DbSession, user: TrainerUser) -> list[EmbeddingPublic]:
    return [_for_caller(version, user) for version in db.execute(
        sa.select(models.EmbeddingVersion).where(models.EmbeddingVersion.project_id == project.id)
        .order_by(models.EmbeddingVersion.version)
    ).scalars()]


@router.get("/projects/{project_id}/embeddings/current/vectors", responses={200: {"content": {NPY_MEDIA_TYPE: {}}}})
def current_vectors(project: TrainerProject, db: DbSession) -> Response:
    """The current version's vectors (.npy float32 (N, D)); item ids in ``.../current/item_ids``."""
    return _current_blob(db, project, "vectors")


@router.get("/projects/{project_id}/embeddings/current/item_ids", responses={200: {"content": {NPY_MEDIA_TYPE: {}}}})
def current_item_ids(project: TrainerProject, db: DbSession) -> Response:
    return _current_blob(db, project, "item_ids")


def _current_blob(db: DbSession, project: models.Project, which: str) -> Response:
    if project.current_embedding_id is None:
        raise ApiError(404, "no_embedding", "the trainer has not published an embedding yet")
    version = db.get(models.EmbeddingVersion, project.current_embedding_id)
    assert version is not None
    data = version.vectors if which == "vectors" else version.item_ids
    return Response(content=data, media_type=NPY_MEDIA_TYPE,
                    headers={"X-Embedding-Version": str(version.version)})
