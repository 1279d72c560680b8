"""Fixtures shared by the whole suite.

Every database test runs twice: on SQLite and on the PostgreSQL at ``PAL_TEST_PG`` (default
127.0.0.1:5432, trust auth). The suite creates a fresh PostgreSQL database per run and drops it at
the end. Without a reachable PostgreSQL the PostgreSQL half is skipped with one line, except when
``CI=true``, where that is an error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.support import PG_ADMIN_URL, pg_available

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", "postgres"]


def _create_pg_database() -> str:
    name = f"pal_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name


def _drop_pg_database(name: str) -> None:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def pg_ready() -> bool:
    if pg_available():
        return True
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but no PostgreSQL answers at " + PG_ADMIN_URL)
    return False


def fresh_database_url(backend: str, tmp_dir: Path) -> tuple[str, str | None]:
    """(url, postgres database name to drop) for a new, empty database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_dir / f'pal-{uuid.uuid4().hex[:8]}.sqlite3'}", None
    name = _create_pg_database()
    return pg_url(name), name


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 pg_ready: bool) -> Iterator[str]:
    """A migrated database for the whole run, one per backend."""
    backend = request.param
    if backend == "postgres" and not pg_ready:
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432: PostgreSQL half skipped")
    from server.migrate import upgrade

    url, pg_name = fresh_database_url(backend, tmp_path_factory.mktemp("db"))
    upgrade(url)
    yield url
    if pg_name:
        _drop_pg_database(pg_name)


@pytest.fixture(scope="session")
def backend(database_url: str) -> str:
    return "postgres" if database_url.startswith("postgresql") else "sqlite"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[sa.Engine]:
    # The test's own connection uses plain transactions: on SQLite the server's BEGIN IMMEDIATE
    # would let a test that only reads block the server under test.
    eng = sa.create_engine(database_url, connect_args={"timeout": 30} if database_url.startswith("sqlite") else {})
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: sa.Engine) -> Iterator[Session]:
    with sessionmaker(bind=engine, expire_on_commit=False)() as session:
        yield session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log

    def client(self, token: str | None = None, **kw: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def start_server(database_url: str, log: Path, *, workers: int = 1, env: dict[str, str] | None = None,
                 log_level: str = "warning", pal_serve: bool = False) -> LiveServer:
    """uvicorn on a free port; ``pal_serve``: through ``pal serve``, the command deployments run."""
    port = free_port()
    # Every test signs in from 127.0.0.1, and the fuzzing tests fail sign-ins by the hundred: the
    # per-address limit would throttle whatever test comes next. The throttle's own tests set it.
    full_env = {**os.environ, "PAL_DATABASE_URL": database_url, "PAL_SECRET_KEY": "test-secret",
                "PAL_GRAPH_REFRESH_SECONDS": "0", "PAL_LOGIN_ATTEMPTS_PER_IP_PER_MINUTE": "1000000", **(env or {})}
    out = log.open("wb")
    common = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", log_level]
    # Like pal serve, uvicorn's own proxy headers off: the app decides whom to trust (PAL_TRUSTED_PROXIES).
    argv = [sys.executable, "-m", "pal.cli", "serve", *common] if pal_serve else \
        [sys.executable, "-m", "uvicorn", "server.main:app", "--no-proxy-headers", *common]
    proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return LiveServer(url, proc, log)
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-3000:]}")


def stop_server(server: LiveServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture(scope="session")
def live_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real uvicorn process on the session's database."""
    server = start_server(database_url, tmp_path_factory.mktemp("server") / "server.log")
    yield server
    stop_server(server)
