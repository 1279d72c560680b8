"""Wires the app: routers, error handlers, middleware. Nothing else lives here."""

from __future__ import annotations

import gc

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from pal import __version__
from server.config import get_settings
from server.errors import install_error_handlers
from server.log_redaction import install_access_log_redaction
from server.observability import RequestContextMiddleware, configure_json_logging
from server.observability import router as metrics_router
from server.routers import (
    annotators,
    auth,
    embedding_import,
    exports,
    feed,
    health,
    items,
    known_labels,
    members,
    pages,
    projects,
    stats,
    tasks,
    users,
)
from server.security_headers import install_security
from server.webhooks import webhook_lifespan

API_PREFIX = "/api/v1"


def create_app() -> FastAPI:
    if get_settings().log_json:
        configure_json_logging()
    install_access_log_redaction()
    app = FastAPI(title="PAL", version=__version__, lifespan=webhook_lifespan,
                  description="Label datasets from cheap 'spot the outliers' answers.",
                  docs_url=None, redoc_url=None)  # /docs: server/security_headers.py (vendored, strict CSP)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    install_security(app)
    if proxies := get_settings().trusted_proxy_list:
        # Added last, so it runs first: the access log and the sign-in throttle see the forwarded client.
        # uvicorn's own proxy handling is off (pal serve), so nobody else is trusted by default.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
    for module in (auth, users, projects, members, known_labels, annotators, items, tasks, feed, embedding_import,
                   stats, exports):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    return app


app = create_app()


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    # Right after a full collection everything left is reachable: freeze it too, so the next full
    # pass scans only what is newer (the knowledge graph of each project grows with every answer).
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


# What the process has built so far (modules, the app) lives as long as it does: keep it, and later
# the survivors of each full collection, out of the collector's full passes. Without this, a full
# pass stopped every request of a worker for 100-250 ms every few seconds under load (bench/load.py).
gc.freeze()
gc.callbacks.append(_freeze_survivors)
