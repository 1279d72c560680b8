"""Project exports for admins (the dashboard links here): PAL's own files (edges, embedding, clusters,
manifest: ``server/services/export.py``) and the labelled dataset in standard formats, as a streamed ZIP
(``server/services/export_formats/``); Label Studio tasks and COCO JSON also as bare JSON."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from pal.wire import NPY_MEDIA_TYPE
from server import models
from server.db import get_sessionmaker
from server.deps import AdminProject, DbSession
from server.errors import ApiError
from server.services import export, export_formats
from server.services.export_formats import coco, label_studio
from server.services.export_formats.archive import zip_stream
from server.services.export_items import ExportSnapshot, snapshot

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


# --------------------------------------------------------------------------- standard dataset formats

def _snapshot(project: models.Project, db: DbSession) -> ExportSnapshot:
    project_id = project.id
    db.rollback()  # the snapshot reads in its own short transactions; hold nothing while streaming
    return snapshot(get_sessionmaker(), project_id)


def _image_base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/label-studio.json", response_class=StreamingResponse,
            responses={200: {"content": {"application/json": {}}}})
def label_studio_json(project: AdminProject, db: DbSession, request: Request) -> StreamingResponse:
    """Label Studio tasks (import them as they are); the labelling config is in ``label-studio.zip``."""
    snap = _snapshot(project, db)
    return StreamingResponse(label_studio.iter_tasks_json(snap, _image_base(request)), media_type="application/json",
                             headers=_attachment(snap.project_id, "label-studio.json"))


@router.get("/coco.json", response_class=StreamingResponse, responses={200: {"content": {"application/json": {}}}})
def coco_json(project: AdminProject, db: DbSession) -> StreamingResponse:
    """COCO-style classification JSON: categories, images, annotations with category_id and score."""
    snap = _snapshot(project, db)
    return StreamingResponse(coco.iter_coco_json(snap), media_type="application/json",
                             headers=_attachment(snap.project_id, "coco.json"))


@router.get("/{fmt}.zip", response_class=StreamingResponse, responses={200: {"content": {"application/zip": {}}}})
def dataset_zip(fmt: str, project: AdminProject, db: DbSession, request: Request) -> StreamingResponse:
    """One format (imagefolder, hf, label-studio, coco) as a ZIP archive, streamed as it is written."""
    if fmt not in export_formats.FORMATS:
        raise ApiError(404, "unknown_format", f"unknown export format {fmt!r}; one of "
                       f"{', '.join(export_formats.FORMATS)}", field="fmt")
    if fmt == "hf":
        try:
            export_formats.hf.features([])
        except export_formats.MissingExtra as exc:
            raise ApiError(501, "missing_extra", str(exc), field="fmt") from exc
    snap = _snapshot(project, db)
    files = export_formats.FORMATS[fmt](get_sessionmaker(), snap, _image_base(request))
    prefix = f"pal-project-{snap.project_id}-{fmt}"
    return StreamingResponse(zip_stream(files, prefix), media_type="application/zip",
                             headers=_attachment(snap.project_id, f"{fmt}.zip"))
