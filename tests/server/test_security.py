"""Security over real HTTP: login throttling, session fixation, CSRF, token revocation, what an
annotator and a trainer may reach, and the secure headers on every response."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.deps import SESSION_COOKIE
from server.security_headers import CSP
from tests.conftest import LiveServer, start_server, stop_server
from tests.server.test_roles import ALLOWED
from tests.support import PASSWORD, Actor, make_project, make_user

SECURE_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
HIDDEN_FIELDS = {"label", "labels", "split", "gold", "class_names"}


def _login(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def _claim(client: httpx.Client, pid: int, **kw: Any) -> httpx.Response:
    return client.post(f"/api/v1/projects/{pid}/tasks/claim", **kw)


# ------------------------------------------------------------------------------------------ sign-in


def test_login_throttled_after_repeated_failures(live_server: LiveServer, db: Session) -> None:
    user = make_user(db, "annotator")
    with live_server.client() as client:
        codes = [_login(client, user.email, "wrong password").status_code for _ in range(10)]
        blocked = _login(client, user.email, PASSWORD)  # even the right password, while blocked
    assert codes == [401] * 10
    assert blocked.status_code == 429
    assert blocked.headers["Retry-After"] == "60"
    assert blocked.json()["error"]["code"] == "too_many_attempts"


def test_login_replaces_a_planted_session_cookie(live_server: LiveServer, db: Session) -> None:
    user = make_user(db, "annotator")
    planted = "attacker-chosen-session-id"
    with live_server.client(cookies={SESSION_COOKIE: planted}) as client:
        resp = _login(client, user.email)
    assert resp.status_code == 200
    issued = resp.cookies[SESSION_COOKIE]
    assert issued != planted
    with live_server.client(cookies={SESSION_COOKIE: planted}) as attacker:
        assert attacker.get("/api/v1/auth/me").status_code == 401


def test_second_login_issues_a_new_cookie_and_kills_the_first(live_server: LiveServer, db: Session) -> None:
    user = make_user(db, "annotator")
    with live_server.client() as client:
        _login(client, user.email)
        first = client.cookies[SESSION_COOKIE]
        _login(client, user.email)
        second = client.cookies[SESSION_COOKIE]
    assert first != second
    with live_server.client(cookies={SESSION_COOKIE: first}) as old:
        assert old.get("/api/v1/auth/me").status_code == 401
    with live_server.client(cookies={SESSION_COOKIE: second}) as new:
        assert new.get("/api/v1/auth/me").status_code == 200


def test_cookie_is_dead_after_logout(live_server: LiveServer, db: Session) -> None:
    user = make_user(db, "annotator")
    with live_server.client() as client:
        csrf = _login(client, user.email).json()["csrf_token"]
        cookie = client.cookies[SESSION_COOKIE]
        assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    with live_server.client(cookies={SESSION_COOKIE: cookie}) as replay:
        assert replay.get("/api/v1/auth/me").status_code == 401


# ------------------------------------------------------------------------------------------ CSRF


@pytest.fixture
def cookie_session(live_server: LiveServer, db: Session) -> Iterator[tuple[httpx.Client, str, int]]:
    user = make_user(db, "annotator")
    pid = make_project(db, n_items=12, members=[user])
    with live_server.client() as client:
        csrf = _login(client, user.email).json()["csrf_token"]
        yield client, csrf, pid


def test_cookie_post_without_csrf_token_is_refused(cookie_session: tuple[httpx.Client, str, int]) -> None:
    client, _csrf, pid = cookie_session
    resp = _claim(client, pid)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "csrf_failed"


def test_cookie_post_with_wrong_csrf_token_is_refused(cookie_session: tuple[httpx.Client, str, int]) -> None:
    client, csrf, pid = cookie_session
    resp = _claim(client, pid, headers={"X-CSRF-Token": csrf[::-1]})
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "csrf_failed"


def test_cookie_post_with_right_csrf_token_passes(cookie_session: tuple[httpx.Client, str, int]) -> None:
    client, csrf, pid = cookie_session
    resp = _claim(client, pid, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200
    assert resp.json()["task"] is not None


def test_bearer_post_needs_no_csrf_token(live_server: LiveServer, db: Session) -> None:
    user = make_user(db, "annotator")
    pid = make_project(db, n_items=12, members=[user])
    with live_server.client(user.token) as client:
        assert _claim(client, pid).status_code == 200


# ------------------------------------------------------------------------------------------ tokens


def _revoke_new_token(server: LiveServer, db: Session) -> tuple[str, Actor]:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    with server.client(admin.token) as client:
        created = client.post(f"/api/v1/users/{annotator.id}/tokens", json={"name": "to revoke"}).json()
        with server.client(created["token"]) as user:
            assert user.get("/api/v1/auth/me").status_code == 200
        assert client.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    return created["token"], annotator


def test_revoked_token_is_refused_at_once(live_server: LiveServer, db: Session) -> None:
    token, _ = _revoke_new_token(live_server, db)
    with live_server.client(token) as client:
        resp = client.get("/api/v1/auth/me")
    assert resp.status_code == 401
    assert resp.json()["error"]["message"] == "unknown or revoked token"


def test_revoked_token_is_refused_by_every_worker(database_url: str, db: Session, tmp_path: Path) -> None:
    server = start_server(database_url, tmp_path / "server.log", workers=2)
    try:
        token, _ = _revoke_new_token(server, db)
        codes = set()
        for _ in range(20):  # fresh connections: the kernel spreads them over both workers
            with server.client(token) as client:
                codes.add(client.get("/api/v1/auth/me").status_code)
    finally:
        stop_server(server)
    assert codes == {401}


# ------------------------------------------------------------------------------------------ reach


def test_annotator_cannot_reach_another_project(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    make_project(db, n_items=12, members=[annotator])
    other = make_project(db, n_items=12)
    item = db.scalar(sa.select(sa.func.min(models.Item.id)).where(models.Item.project_id == other))
    with live_server.client(annotator.token) as client:
        codes = {
            "project": client.get(f"/api/v1/projects/{other}").status_code,
            "claim": _claim(client, other).status_code,
            "mine": client.get(f"/api/v1/projects/{other}/tasks/mine").status_code,
            "counts": client.get(f"/api/v1/projects/{other}/me").status_code,
            "image": client.get(f"/api/v1/items/{item}/image").status_code,
        }
    assert codes == dict.fromkeys(codes, 404)


def _hidden_keys(value: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in HIDDEN_FIELDS:
                found.append(f"{path}.{key}")
            found += _hidden_keys(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            found += _hidden_keys(inner, f"{path}[{n}]")
    return found


def test_no_annotator_route_returns_labels_splits_or_gold(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, n_items=20, members=[annotator], gold_rate=1.0)
    crawled, leaks = [], []
    with live_server.client(annotator.token) as client:
        task = _claim(client, pid).json()["task"]
        answer = client.post(f"/api/v1/tasks/{task['id']}/answers", json={
            "idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": [],
        }).json()
        held = _claim(client, pid).json()["task"]
        values = {"project_id": pid, "task_id": held["id"], "answer_id": answer["id"], "item_id": task["reference"],
                  "user_id": annotator.id, "token": uuid.uuid4().hex, "token_id": 1}
        bodies = {("POST", "/api/v1/tasks/{task_id}/lease"): {"lease_token": held["lease_token"]},
                  ("POST", "/api/v1/tasks/{task_id}/answers"): {"idempotency_key": uuid.uuid4().hex,
                                                                "lease_token": held["lease_token"], "outlier_ids": []}}
        routes = sorted(r for r, roles in ALLOWED.items() if "annotator" in roles)
        # Undo last: it would change what the other routes see.
        routes.sort(key=lambda r: r == ("DELETE", "/api/v1/answers/{answer_id}"))
        for method, path in routes:
            if path in ("/api/v1/auth/logout", "/api/v1/auth/login", "/api/v1/auth/invites/{token}/accept",
                        "/api/v1/auth/password"):
                continue  # no data behind them; logout would end nothing (bearer), the others take passwords
            resp = client.request(method, path.format(**values), json=bodies.get((method, path)))
            crawled.append(f"{method} {path} {resp.status_code}")
            if resp.headers.get("content-type", "").startswith("application/json"):
                leaks += [f"{method} {path}: {k}" for k in _hidden_keys(resp.json())]
    assert len(crawled) >= 8, crawled
    assert all(not c.endswith((" 500", " 401", " 403")) for c in crawled), crawled
    assert leaks == []


def test_trainer_token_cannot_answer_tasks(live_server: LiveServer, db: Session) -> None:
    annotator, trainer = make_user(db, "annotator"), make_user(db, "trainer")
    pid = make_project(db, n_items=12, members=[annotator])
    with live_server.client(annotator.token) as client:
        task = _claim(client, pid).json()["task"]
    with live_server.client(trainer.token) as client:
        resp = client.post(f"/api/v1/tasks/{task['id']}/answers", json={
            "idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": [],
        })
        claim = _claim(client, pid)
    assert resp.status_code == 403
    assert claim.status_code == 403
    assert db.scalar(sa.select(sa.func.count()).select_from(models.Answer).where(models.Answer.project_id == pid)) == 0


# ------------------------------------------------------------------------------------------ headers


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("GET", "/healthz", {}),
    ("GET", "/openapi.json", {}),
    ("GET", "/docs", {}),
    ("GET", "/docs/init.js", {}),
    ("GET", "/static/vendor/swagger-ui/swagger-ui.css", {}),
    ("GET", "/api/v1/projects", {}),  # 401
    ("GET", "/no/such/page", {}),  # 404
    ("POST", "/api/v1/auth/login", {"json": {"email": 1}}),  # 422
    ("POST", "/api/v1/auth/login", {"content": b"x" * (2 * 1024 * 1024)}),  # 413
    ("GET", "/login", {}),
    ("GET", "/metrics", {}),
])
def test_every_response_carries_the_secure_headers(live_server: LiveServer, method: str, path: str,
                                                   kwargs: dict[str, Any]) -> None:
    with live_server.client() as client:
        resp = client.request(method, path, **kwargs)
    assert {k: resp.headers.get(k) for k in SECURE_HEADERS} == SECURE_HEADERS, (resp.status_code, path)


def test_docs_page_loads_only_vendored_assets(live_server: LiveServer) -> None:
    with live_server.client() as client:
        html = client.get("/docs").text
        refs = [part.split('"', 1)[0] for part in html.split('src="')[1:] + html.split('href="')[1:]]
        statuses = {ref: client.get(ref).status_code for ref in refs}
    assert "http" not in "".join(refs)
    assert any(ref.endswith("swagger-ui-bundle.js") for ref in refs)
    assert statuses == dict.fromkeys(refs, 200)


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.browser
def test_docs_page_renders_under_the_strict_policy(live_server: LiveServer, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("one browser run is enough")
    if not CHROMIUM.exists() or not _has_playwright():
        pytest.skip("Chromium or Playwright missing: browser test skipped")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda req: requests.append(req.url))
        page.goto(f"{live_server.url}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        operations = page.locator(".opblock").count()
        browser.close()
    assert operations >= 20
    assert [e for e in errors if "Content Security Policy" in e or "Refused" in e] == []
    assert [u for u in requests if not u.startswith((live_server.url, "data:", "blob:"))] == []


def _has_playwright() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True
