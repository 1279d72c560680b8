"""Item images (any role with access to the project) and bulk items/pixels (trainer, admin)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response

from pal.wire import NEXT_AFTER_HEADER, NPZ_MEDIA_TYPE, encode_pixels
from server import models
from server.deps import CurrentUser, DbSession, TrainerProject
from server.errors import ApiError
from server.schemas import ItemPage, ItemPublic
from server.services.images import load_pixels, thumbnail
from server.services.projects import get_project_for

router = APIRouter(tags=["items"])


@router.get("/items/{item_id}/image", responses={200: {"content": {"image/png": {}}}})
def image(
    item_id: int, request: Request, db: DbSession, user: CurrentUser,
    size: Annotated[int | None, Query(ge=16, le=4096, description="Longest side of a thumbnail")] = None,
) -> Response:
    item = db.get(models.Item, item_id)
    if item is None:
        raise ApiError(404, "not_found", f"item {item_id} not found", field="item_id")
    get_project_for(db, user, item.project_id)
    etag = f'"{item.sha256[:32]}-{size or 0}"'
    headers = {"Cache-Control": "private, max-age=86400, immutable", "ETag": etag}
    if request.headers.get("If-None-Match") == etag:
        return Response(status_code=304, headers=headers)
    data, mime = item.data, item.mime
    if size is not None:
        thumb = thumbnail(data, max_side=size)
        if thumb is not data:
            data, mime = thumb, "image/png"
    return Response(content=data, media_type=mime, headers=headers)


@router.get("/projects/{project_id}/items", response_model=ItemPage)
def list_items(
    project: TrainerProject, db: DbSession,
    after: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> ItemPage:
    rows = db.execute(
        sa.select(models.Item).where(models.Item.project_id == project.id, models.Item.id > after)
        .order_by(models.Item.id).limit(limit + 1)
    ).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return ItemPage(items=[ItemPublic.model_validate(r) for r in rows],
                    next_after=rows[-1].id if more and rows else None)


@router.get("/projects/{project_id}/items/pixels", responses={200: {"content": {NPZ_MEDIA_TYPE: {}}}})
def pixels(
    project: TrainerProject, db: DbSession,
    after: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=20_000)] = 2000,
    size: Annotated[int | None, Query(ge=8, le=512, description="Resize every image to size x size")] = None,
    channels: Annotated[int | None, Query(ge=1, le=3, description="1 (grayscale) or 3 (RGB)")] = None,
) -> Response:
    """Pixels in bulk as an .npz (``ids`` int64 (n,), ``images`` uint8 (n, H, W, C))."""
    project_id = project.id
    if channels not in (None, 1, 3):
        raise ApiError(422, "invalid_channels", "channels must be 1 or 3", field="channels")
    if channels is None:
        channels = 3 if db.scalar(sa.select(sa.func.max(models.Item.channels)).where(
            models.Item.project_id == project_id)) == 3 else 1
    rows = db.execute(
        sa.select(models.Item.id, models.Item.data, models.Item.width, models.Item.height)
        .where(models.Item.project_id == project_id, models.Item.id > after)
        .order_by(models.Item.id).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    if size is None and len({(r.width, r.height) for r in rows}) > 1:
        raise ApiError(422, "mixed_sizes", "items have different sizes; pass size to resize them", field="size")
    if rows:
        images = np.stack([load_pixels(r.data, size=size, channels=channels) for r in rows])
    else:
        side = size or 1
        images = np.zeros((0, side, side, channels), dtype=np.uint8)
    ids = np.asarray([r.id for r in rows], dtype=np.int64)
    headers = {NEXT_AFTER_HEADER: str(rows[-1].id) if more and rows else ""}
    return Response(content=encode_pixels(ids, images), media_type=NPZ_MEDIA_TYPE, headers=headers)
