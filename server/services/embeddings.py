"""Embedding versions: stored whole, evaluated against hidden labels, then made current in one step."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.wire import decode_npy, encode_npy
from server import models
from server.errors import ApiError
from server.schemas import EmbeddingMeta
from server.services import outbox
from server.services.quality import evaluate_embedding

MAX_DIM = 4096


def parse_upload(item_ids_raw: bytes, vectors_raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        ids = decode_npy(item_ids_raw)
    except (ValueError, OSError) as exc:
        raise ApiError(422, "invalid_npy", f"item_ids is not a readable .npy: {exc}", field="item_ids") from exc
    try:
        vectors = decode_npy(vectors_raw)
    except (ValueError, OSError) as exc:
        raise ApiError(422, "invalid_npy", f"vectors is not a readable .npy: {exc}", field="vectors") from exc
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ApiError(422, "invalid_shape", f"item_ids must be int (N,), got {ids.dtype} {ids.shape}",
                       field="item_ids")
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[0] != ids.shape[0]:
        raise ApiError(422, "invalid_shape",
                       f"vectors must be float32 (N, D) with N = {ids.shape[0]}, got {vectors.dtype} {vectors.shape}",
                       field="vectors")
    if not 1 <= vectors.shape[1] <= MAX_DIM:
        raise ApiError(422, "invalid_shape", f"D must be in 1..{MAX_DIM}, got {vectors.shape[1]}", field="vectors")
    if not np.isfinite(vectors).all():
        raise ApiError(422, "invalid_values", "vectors contain NaN or infinity", field="vectors")
    if len(np.unique(ids)) != len(ids):
        raise ApiError(422, "invalid_ids", "item_ids repeat", field="item_ids")
    return ids.astype(np.int64), vectors


def store_version(
    db: Session, *, project: models.Project, ids: np.ndarray, vectors: np.ndarray, meta: EmbeddingMeta
) -> models.EmbeddingVersion:
    known = set(db.execute(sa.select(models.Item.id).where(models.Item.project_id == project.id)).scalars())
    foreign = [int(i) for i in ids if int(i) not in known][:5]
    if foreign:
        raise ApiError(422, "invalid_ids", f"item ids {foreign} are not items of project {project.id}",
                       field="item_ids")
    metrics: dict[str, object] = {"step": meta.step, "edges_seen": meta.edges_seen, "cursor": meta.cursor}
    metrics.update(meta.metrics)
    metrics.update(evaluate_embedding(db, project_id=project.id, ids=ids, vectors=vectors))
    answers = db.scalar(
        sa.select(sa.func.count()).select_from(models.Answer).where(
            models.Answer.project_id == project.id, models.Answer.undone_at.is_(None)
        )
    ) or 0
    for attempt in range(3):
        version = (db.scalar(
            sa.select(sa.func.max(models.EmbeddingVersion.version)).where(
                models.EmbeddingVersion.project_id == project.id
            )
        ) or 0) + 1
        row = models.EmbeddingVersion(
            project_id=project.id, version=version, dim=int(vectors.shape[1]), n_items=int(vectors.shape[0]),
            item_ids=encode_npy(ids), vectors=encode_npy(vectors), metrics=metrics, answers_at_upload=answers,
        )
        db.add(row)
        try:
            db.commit()  # the version is complete before anyone can see it as current
            break
        except sa.exc.IntegrityError:
            db.rollback()
            if attempt == 2:
                raise
    # One step: readers see the old version or the new one, never a partial one.
    db.execute(
        sa.update(models.Project).where(models.Project.id == project.id).values(current_embedding_id=row.id)
    )
    outbox.embedding_published(db, project_id=project.id, version=row)  # commits with the switch
    db.commit()
    return row
