"""What a benchmark that drives one real server needs (annotator latency, the research label-efficiency
harness): a fresh database, a real server process, an admin token.

- :func:`fresh_database`: a new SQLite file in a work folder (default), or a new database created on
  the PostgreSQL server that ``base_url`` points at (dropped again by :meth:`Database.drop`);
  migrated to head either way.
- :func:`start_server`: ``uvicorn server.main:app`` in a subprocess on a free port, waited for on
  ``/healthz``; its output goes to a log file in the work folder.
- :func:`bootstrap_admin`: the first admin and its token, written straight into the database the
  way ``pal user`` / ``pal token`` do (there is no admin yet to ask the API).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Database:
    url: str
    pg_admin_url: str | None = None  # set when this database was created on a PostgreSQL server
    pg_name: str | None = None

    def drop(self) -> None:
        if self.pg_admin_url and self.pg_name:
            engine = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'))
            engine.dispose()


def fresh_database(base_url: str | None, workdir: Path) -> Database:
    """A new, migrated database: SQLite in ``workdir`` when ``base_url`` is None or SQLite, else a new
    database on the PostgreSQL server of ``base_url`` (its own database name is only used to connect)."""
    from server.migrate import upgrade

    if base_url is None or base_url.startswith("sqlite"):
        db = Database(url=f"sqlite:///{workdir / 'pal-bench.sqlite3'}")
    elif base_url.startswith("postgresql"):
        name = f"pal_le_{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        db = Database(url=base_url.rsplit("/", 1)[0] + f"/{name}", pg_admin_url=base_url, pg_name=name)
    else:
        raise ValueError(f"database URL must be sqlite:/// or postgresql+psycopg://, got {base_url!r}")
    upgrade(db.url)
    return db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL when it is still running after ``timeout`` seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def wait_healthy(server: ServerProcess, timeout: float = 90.0, ready: Callable[[], bool] | None = None) -> None:
    """Return once ``/healthz`` answers 200 (and ``ready()`` holds, when given); stop the server and
    raise, with the end of its log, when it exits or does not get there within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited: {server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200 and (ready is None or ready()):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the server did not get ready within {timeout:.0f} s: {server.log.read_text()[-3000:]}")


def start_server(database_url: str, workdir: Path, env: dict[str, str] | None = None,
                 timeout: float = 90.0, workers: int = 1) -> ServerProcess:
    """uvicorn on a free port; ``workers`` > 1: that many server processes behind one port."""
    port = free_port()
    log = workdir / "server.log"
    full_env = {**os.environ, "PAL_DATABASE_URL": database_url, "PAL_DATA_DIR": str(workdir / "var"),
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                **(env or {})}
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "server.main:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", *(["--workers", str(workers)] if workers > 1 else [])],
        cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
    )
    out.close()
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log)
    wait_healthy(server, timeout)
    return server


def bootstrap_admin(database_url: str, email: str = "bench-admin@pal.invalid") -> str:
    """Create the admin account and return a fresh API token for it."""
    from server.admin import ensure_user
    from server.services.users import create_token

    engine = sa.create_engine(database_url)
    try:
        with Session(engine, expire_on_commit=False) as db:
            user = ensure_user(db, email=email, role="admin", password=None, name="Benchmark admin")
            return create_token(db, user_id=user.id, name="bench").token
    finally:
        engine.dispose()
