"""Browser tests: Debian's Chromium, driven by Playwright, against a real uvicorn server on PostgreSQL.

Skipped with one line when /usr/bin/chromium or PostgreSQL is missing, except under CI=true where
that is an error. Every page a test opens is served with a strict Content-Security-Policy (the
server's own, else the same policy added here, so the pages are held to it in any case),
and every request the browser makes is recorded so tests can assert that none leaves the server."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import LiveServer, _drop_pg_database, fresh_database_url, start_server, stop_server
from tests.support import PASSWORD, pg_available

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
PAGES = re.compile(r"^https?://[^/]+/(login|annotate|admin)(/|\?|$)")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium): browser tests skipped"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright): browser tests skipped"
    if not pg_available():
        return "PostgreSQL not reachable at 127.0.0.1:5432: browser tests skipped"
    return None


@pytest.fixture(scope="session")
def web_requirements() -> None:
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but " + reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def web_database_url(web_requirements: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from server.migrate import upgrade

    url, name = fresh_database_url("postgres", tmp_path_factory.mktemp("webdb"))
    upgrade(url)
    yield url
    if name:
        _drop_pg_database(name)


@pytest.fixture(scope="session")
def web_server(web_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(web_database_url, tmp_path_factory.mktemp("webserver") / "server.log")
    yield server
    stop_server(server)


@pytest.fixture
def web_db(web_database_url: str) -> Iterator[Session]:
    engine = sa.create_engine(web_database_url)
    with sessionmaker(bind=engine, expire_on_commit=False)() as session:
        yield session
    engine.dispose()


@pytest.fixture(scope="session")
def browser(web_requirements: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Watched:
    """A browser context with the CSP applied and every request and page error recorded."""

    context: Any
    origin: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def page(self) -> Any:
        page = self.context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        return page

    def login(self, email: str, password: str = PASSWORD) -> None:
        """Sign in through the API (the context's cookie jar is the browser's)."""
        resp = self.context.request.post(f"{self.origin}/api/v1/auth/login",
                                         data={"email": email, "password": password})
        assert resp.ok, resp.text()

    def external_requests(self) -> list[str]:
        allowed = (self.origin + "/", "data:", "blob:")
        return [u for u in self.requests if not u.startswith(allowed)]

    def csp_violations(self) -> list[str]:
        return [e for e in self.errors if "Content Security Policy" in e or "Refused to" in e]


@pytest.fixture
def open_context(browser: Any, web_server: LiveServer) -> Iterator[Callable[..., Watched]]:
    """Factory of watched contexts; at teardown each must have made no external request and hit no
    CSP violation."""
    made: list[Watched] = []

    def make(viewport: dict[str, int] | None = None, **options: Any) -> Watched:
        context = browser.new_context(base_url=web_server.url, viewport=viewport or DESKTOP, **options)
        watched = Watched(context=context, origin=web_server.url)
        context.on("request", lambda request: watched.requests.append(request.url))

        def with_csp(route: Any) -> None:
            response = route.fetch(max_redirects=0)
            headers = response.headers
            if "content-security-policy" not in headers:  # the server's own policy wins when it sends one
                headers = {**headers, "content-security-policy": CSP}
            route.fulfill(response=response, headers=headers)

        context.route(PAGES, with_csp)
        made.append(watched)
        return watched

    yield make
    for watched in made:
        external, violations = watched.external_requests(), watched.csp_violations()
        watched.context.close()
        assert external == [], f"requests left the server: {external}"
        assert violations == [], f"Content-Security-Policy violations: {violations}"
