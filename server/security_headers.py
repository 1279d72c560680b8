"""Secure response headers, the request body size limit, and the API docs page on vendored assets.

- Every response carries a strict Content-Security-Policy (scripts, styles, images and requests
  from this origin only; no framing), ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: same-origin`` (invite links hold a token), a cross-origin opener policy and a
  permissions policy; ``Strict-Transport-Security`` too when cookies are marked Secure (HTTPS).
  A route that sets one of these itself keeps its own value.
- Request bodies are limited before they are read: 1 MiB for the JSON API, ``max_upload_mb`` for
  the two upload routes (imports, embedding versions). A declared Content-Length over the limit is
  refused at once with 413; a body without one is counted as it arrives and refused once over.
- Ids in the path are checked against the range of the id columns before anything else runs: a
  number no row can have (0, negative, or past 2**31 - 1) is a 404, not a database overflow (500),
  and an ``after`` cursor past 64 bits is a 422; a value the database refuses to store (a DataError)
  is a 422 too, and a unique/foreign key collision a 409, not a 500. (Found by
  tests/server/test_schemathesis.py.)
- ``/docs`` is Swagger UI served from ``webui/static/vendor/swagger-ui`` (swagger-ui-dist, vendored
  from npm; no CDN, works offline) with its start-up script in a file of its own, so the strict CSP
  holds on that page too. ReDoc is off.
"""

from __future__ import annotations

import json
import re

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.exc import DataError, IntegrityError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.config import get_settings
from server.errors import ApiError

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
HSTS = "max-age=31536000; includeSubDomains"

JSON_BODY_LIMIT = 1024 * 1024
UPLOAD_PATHS = re.compile(r"^/api/v1/projects/[^/]+/(imports|embeddings)/?$")


class SecurityHeadersMiddleware:
    """Pure ASGI (streamed responses pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = dict(HEADERS)
        if get_settings().cookie_secure:
            self.headers["Strict-Transport-Security"] = HSTS
        self._raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                present = {k.lower() for k in headers}
                for key, value in self._raw:
                    if key.decode("latin-1") not in present:
                        headers.raw.append((key, value))
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(HTTPException):
    """Raised from the request's ``receive`` when a body outgrows its limit (FastAPI re-raises
    HTTP exceptions met while it reads a body, so this reaches the handler below)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {_size(limit)}")
        self.limit = limit


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"


def _too_large_body(limit: int) -> bytes:
    message = f"the request body exceeds {_size(limit)}"
    return json.dumps({"error": {"code": "too_large", "message": message,
                                 "fields": [{"field": "body", "reason": message}]}}).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, json_limit: int = JSON_BODY_LIMIT, upload_limit: int | None = None) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit if upload_limit is not None else get_settings().max_upload_mb * 1024 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if UPLOAD_PATHS.match(scope.get("path", "")) else self.json_limit
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                too_large = False  # the server's HTTP parser rejects a malformed length itself
            if too_large:
                body = _too_large_body(limit)
                await send({"type": "http.response.start", "status": 413, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


MAX_ID = 2**31 - 1  # the id columns are 32-bit integers
MAX_BIGINT = 2**63 - 1
_INTEGER = re.compile(r"^[+-]?\d+$")


async def ids_in_range(request: Request) -> None:
    """App-wide dependency: path ids no row can have are 404 before any query runs."""
    for name, value in request.path_params.items():
        if name.endswith("_id") and isinstance(value, str) and _INTEGER.match(value) and not 0 < int(value) <= MAX_ID:
            raise ApiError(404, "not_found", f"no {name.removesuffix('_id')} has id {value}", field=name)
    after = request.query_params.get("after")
    if after is not None and _INTEGER.match(after) and abs(int(after)) > MAX_BIGINT:
        raise ApiError(422, "validation_error", "after is out of range", field="after")


SWAGGER = "/static/vendor/swagger-ui"
DOCS_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>PAL API</title>
<link rel="stylesheet" href="{SWAGGER}/swagger-ui.css">
<link rel="icon" type="image/png" href="{SWAGGER}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER}/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""
DOCS_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
"""


def install_security(app: FastAPI) -> None:
    """Add the middleware, the id guard (call before including the routers: it applies to the routes
    included after it) and the docs page (create the app with ``docs_url=None, redoc_url=None``)."""
    app.router.dependencies.append(Depends(ids_in_range))
    app.add_middleware(BodyLimitMiddleware)
    build = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        # Outermost, outside Starlette's ServerErrorMiddleware too, so that a 500 carries them as well
        # (add_middleware would place it inside).
        return SecurityHeadersMiddleware(build())

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]

    @app.exception_handler(DataError)
    async def _unstorable(_request: object, exc: DataError) -> Response:
        # A value the database cannot hold (out of range, a NUL character from a file being imported):
        # the client's data, not a server fault. Inputs are validated before this; this is the net.
        reason = str(exc.orig).splitlines()[0][:200] if exc.orig else "invalid value"
        body = {"error": {"code": "invalid_value", "message": f"a value could not be stored: {reason}"}}
        return Response(json.dumps(body), status_code=422, media_type="application/json")

    @app.exception_handler(IntegrityError)
    async def _conflict(_request: object, _exc: IntegrityError) -> Response:
        # A unique or foreign key the request collided with (usually a race between two requests).
        body = {"error": {"code": "conflict", "message": "the request conflicts with stored data; reload and retry"}}
        return Response(json.dumps(body), status_code=409, media_type="application/json")

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_request: object, exc: BodyTooLarge) -> Response:
        return Response(_too_large_body(exc.limit), status_code=413, media_type="application/json")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_HTML)

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(DOCS_INIT, media_type="text/javascript")
