"""Wires the app: routers, error handlers, middleware. Nothing else lives here."""

from __future__ import annotations

from fastapi import FastAPI

from pal import __version__
from server.errors import install_error_handlers
from server.routers import auth, feed, health, items, projects, tasks, users

API_PREFIX = "/api/v1"


def create_app() -> FastAPI:
    app = FastAPI(title="PAL", version=__version__,
                  description="Label datasets from cheap 'spot the outliers' answers.")
    install_error_handlers(app)
    for module in (auth, users, projects, items, tasks, feed):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(health.router)
    return app


app = create_app()
