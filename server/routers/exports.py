"""Project exports for admins (the dashboard links here): edges, embedding, clusters, manifest.
File formats: ``server/services/export.py``."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from pal.wire import NPY_MEDIA_TYPE
from server import models
from server.db import get_sessionmaker
from server.deps import AdminProject, DbSession
from server.errors import ApiError
from server.services import export

router = APIRouter(prefix="/projects/{project_id}/exports", tags=["exports"])

CSV = "text/csv; charset=utf-8"


def _attachment(project_id: int, name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="pal-project-{project_id}-{name}"'}


@router.get("/edges.csv", response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}})
def edges_csv(project: AdminProject, db: DbSession) -> StreamingResponse:
    """Every edge up to the moment of the request, streamed in pages (any size of project)."""
    project_id = project.id
    upto = export.max_edge_id(db, project_id)
    db.rollback()  # hold nothing while the client downloads (SQLite: the write lock)
    chunks = export.iter_edges_csv(get_sessionmaker(), project_id=project_id, upto_id=upto)
    return StreamingResponse(chunks, media_type=CSV, headers=_attachment(project_id, "edges.csv"))


def _version_or_404(db: DbSession, project: models.Project) -> models.EmbeddingVersion:
    version = export.current_embedding(db, project)
    if version is None:
        raise ApiError(404, "no_embedding", "the trainer has not published an embedding for this project yet",
                       field="project_id")
    return version


@router.get("/embeddings.npy", response_class=Response, responses={200: {"content": {NPY_MEDIA_TYPE: {}}}})
def embeddings_npy(project: AdminProject, db: DbSession) -> Response:
    """The current embedding, float32 (N, D); row r is item ``embedding_index.csv[r].item_id``."""
    version = _version_or_404(db, project)
    return Response(export.embedding_npy(version), media_type=NPY_MEDIA_TYPE,
                    headers={**_attachment(project.id, "embeddings.npy"), "X-Embedding-Version": str(version.version)})


@router.get("/embedding_index.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def embedding_index_csv(project: AdminProject, db: DbSession) -> Response:
    version = _version_or_404(db, project)
    body, _rows = export.embedding_index_csv(db, version)
    return Response(body, media_type=CSV,
                    headers={**_attachment(project.id, "embedding_index.csv"),
                             "X-Embedding-Version": str(version.version)})


@router.get("/clusters.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def clusters_csv(project: AdminProject, db: DbSession) -> Response:
    """Every item's cluster: known graph clusters first, the rest by the embedding's neighbours."""
    body, _rows = export.clusters_csv(db, project.id)
    return Response(body, media_type=CSV, headers=_attachment(project.id, "clusters.csv"))


@router.get("/manifest.json", response_class=Response, responses={200: {"content": {"application/json": {}}}})
def manifest(project: AdminProject, db: DbSession) -> Response:
    """Settings, counts, embedding version and each file's size and sha256, as they are now."""
    project_id = project.id
    db.rollback()

    def discard(_name: str, chunks: Iterator[bytes]) -> None:
        collections.deque(chunks, maxlen=0)  # the tee inside export_all hashes while we drain

    body = export.export_all(get_sessionmaker(), project_id=project_id, sink=discard)
    return Response(json.dumps(body, indent=2, sort_keys=True, default=str), media_type="application/json")
