"""HTML pages: sign-in, the annotator grid and the admin dashboard.

Pages are thin shells: the server renders the layout and passes what the scripts need through
``data-`` attributes and a ``csrf-token`` meta tag (no inline script or style, so a strict
Content-Security-Policy holds); the scripts in ``webui/static/js`` talk to the JSON API. A page
that needs a session redirects to ``/login?next=...`` without one."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from pal import __version__
from pal.assets import asset_dir
from server import models
from server.deps import SESSION_COOKIE, DbSession
from server.security import hash_token
from server.timeutil import as_utc, utcnow

WEBUI = asset_dir("webui")  # installed package or checkout (pal/assets.py)
STATIC_DIR = WEBUI / "static"

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=WEBUI / "templates")


@lru_cache
def _asset_version(path: str) -> str:
    """Content hash of a static file: a changed file gets a new URL, so browsers never run stale code."""
    try:
        return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:10]
    except OSError:
        return __version__


def static_url(path: str) -> str:
    return f"/static/{path}?v={_asset_version(path)}"


templates.env.globals["static_url"] = static_url


def _session(request: Request, db: DbSession) -> tuple[models.User | None, str]:
    """The signed-in user and the session's CSRF token, from the session cookie only."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None, ""
    ws = db.get(models.WebSession, hash_token(cookie))
    if ws is None or as_utc(ws.expires_at) < utcnow():
        return None, ""
    user = db.get(models.User, ws.user_id)
    if user is None or not user.is_active:
        return None, ""
    return user, ws.csrf_token


def _home(user: models.User) -> str:
    return "/admin" if user.role == "admin" else "/annotate"


_STRIPPED = str.maketrans("", "", "\t\n\r")  # browsers drop these anywhere in a URL


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a path on this server, else None (the caller goes to the home page).
    A path starts with one ``/`` not followed by ``/`` or ``\\`` (``//host`` and ``/\\host`` are other
    hosts); tab, newline and carriage return are removed first, as browsers do, and any other
    control character or a space refuses it."""
    if not value:
        return None
    path = value.translate(_STRIPPED)
    if not path.startswith("/") or path[1:2] in ("/", "\\"):
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return None
    return path


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _render(request: Request, template: str, user: models.User | None, csrf: str, **context: object) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, {"user": user, "csrf": csrf, **context})
    # The page carries the session's CSRF token: never cache it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@router.get("/")
def root(request: Request, db: DbSession) -> Response:
    user, _ = _session(request, db)
    return RedirectResponse(_home(user) if user else "/login", status_code=303)


@router.get("/login")
def login_page(request: Request, db: DbSession) -> Response:
    user, csrf = _session(request, db)
    invite = request.query_params.get("invite")
    if user is not None and user.role in ("admin", "annotator") and not invite and not request.query_params.get("next"):
        return RedirectResponse(_home(user), status_code=303)
    return _render(request, "login.html", None, "", invite=invite or "",
                   next=safe_next(request.query_params.get("next")) or "", title="Sign in")


@router.get("/annotate")
@router.get("/annotate/{project_id}")
def annotate_page(request: Request, db: DbSession, project_id: int | None = None) -> Response:
    user, csrf = _session(request, db)
    if user is None:
        return _to_login(request)
    if user.role not in ("annotator", "admin"):
        return RedirectResponse("/login?role=1", status_code=303)
    return _render(request, "annotate.html", user, csrf, project_id=project_id or "", title="Annotate")


def _admin_only(request: Request, db: DbSession, template: str, title: str) -> Response:
    """An admin page: sign-in first, other roles to their own home."""
    user, csrf = _session(request, db)
    if user is None:
        return _to_login(request)
    if user.role != "admin":
        return RedirectResponse(_home(user), status_code=303)
    return _render(request, template, user, csrf, title=title)


@router.get("/admin")
def admin_page(request: Request, db: DbSession) -> Response:
    return _admin_only(request, db, "admin.html", "Projects")


@router.get("/admin/users")
def users_page(request: Request, db: DbSession) -> Response:
    return _admin_only(request, db, "users.html", "Users")


@router.get("/admin/projects/{project_id}")
def project_page(request: Request, project_id: int, db: DbSession) -> Response:
    user, csrf = _session(request, db)
    if user is None:
        return _to_login(request)
    if user.role != "admin":
        return RedirectResponse(_home(user), status_code=303)
    project = db.get(models.Project, project_id)
    if project is None:
        return RedirectResponse("/admin", status_code=303)
    return _render(request, "project.html", user, csrf, project=project, title=project.name)
