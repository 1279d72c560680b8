"""Liveness with a database check, for load balancers and compose healthchecks."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from server.deps import DbSession

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(db: DbSession) -> JSONResponse:
    try:
        db.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
