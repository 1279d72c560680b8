"""What the load and fault benchmarks share: a fresh PostgreSQL database, seeded users and a
project, a uvicorn server of several workers (a :class:`bench.stack.ServerProcess` that can list
its workers), the edge-feed poller, their common options."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from bench.stack import ServerProcess, free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("PAL_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# The one-INSERT baseline's table (bench.app serves POST /bench/insert into it); bench databases only.
CREATE_INSERTS_SQL = "CREATE TABLE IF NOT EXISTS bench_inserts (id bigserial PRIMARY KEY, payload integer NOT NULL)"


def pg_version() -> str:
    engine = sa.create_engine(PG_ADMIN_URL)
    with engine.connect() as conn:
        version = str(conn.execute(sa.text("SHOW server_version")).scalar())
    engine.dispose()
    return version


def create_database(prefix: str = "pal_bench") -> tuple[str, str]:
    """A new, migrated PostgreSQL database: (SQLAlchemy URL, database name)."""
    from server.migrate import upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(CREATE_INSERTS_SQL))
    engine.dispose()
    return url, name


def drop_database(name: str) -> None:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@dataclass
class Seeded:
    project_id: int
    admin_token: str
    trainer_token: str
    annotators: list[tuple[int, str]] = field(default_factory=list)  # (user id, bearer token)


def seed(url: str, *, n_annotators: int, n_items: int, budget_cap: int, redundancy: int, n_candidates: int,
         oracle: str) -> Seeded:
    """Users with tokens and a project of synthetic images, bulk-written straight into the database."""
    from sqlalchemy.orm import Session

    from server import models
    from server.schemas import ProjectCreate
    from server.security import hash_token, new_token
    from server.services import imports

    engine = sa.create_engine(url)
    tokens: dict[str, str] = {}
    with engine.begin() as conn:
        users = [{"email": f"{role}-{n}@bench.example", "name": "", "role": role, "is_active": True}
                 for role, n in [("admin", 0), ("trainer", 0)] + [("annotator", i) for i in range(n_annotators)]]
        ids = conn.execute(sa.insert(models.User).returning(models.User.id, models.User.email), users).all()
        rows = []
        for user_id, email in ids:
            token = new_token()
            tokens[email] = token
            rows.append({"user_id": user_id, "name": "bench", "token_hash": hash_token(token)})
        conn.execute(sa.insert(models.ApiToken), rows)
        by_email = {email: user_id for user_id, email in ids}
    with Session(engine) as db:
        body = ProjectCreate(name=f"bench-{uuid.uuid4().hex[:6]}", oracle=oracle,  # type: ignore[arg-type]
                             budget_cap=budget_cap, redundancy=redundancy, n_candidates=n_candidates)
        project = models.Project(**body.model_dump())
        db.add(project)
        db.commit()
        images = _synthetic_images(n_items)
        def loader(i: int) -> imports.Loader:
            return lambda: imports.decode_array(images[i])

        sources = [imports.Source(name=f"img{i}", load=loader(i), label=str(i % 10),
                                  split="test" if i % 5 == 0 else "train") for i in range(n_items)]
        imports.import_sources(db, project_id=project.id, sources=sources)
        members = [{"project_id": project.id, "user_id": by_email[f"annotator-{i}@bench.example"]}
                   for i in range(n_annotators)]
        db.execute(sa.insert(models.ProjectMember), members)
        db.commit()
        project_id = project.id
    engine.dispose()
    return Seeded(
        project_id=project_id, admin_token=tokens["admin-0@bench.example"],
        trainer_token=tokens["trainer-0@bench.example"],
        annotators=[(by_email[f"annotator-{i}@bench.example"], tokens[f"annotator-{i}@bench.example"])
                    for i in range(n_annotators)],
    )


def _synthetic_images(n: int, size: int = 16, classes: int = 10) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, size=(n, size, size), dtype=np.uint8)
    labels = np.arange(n) % classes
    for c in range(classes):
        images[labels == c, c, :] += 150
    images[:, 0, 0] = np.arange(n) % 256  # every image distinct
    images[:, 0, 1] = np.arange(n) // 256
    return images


class Server(ServerProcess):
    """A server of several workers (``--workers``), whose worker processes the fault benchmark kills."""

    def worker_pids(self) -> list[int]:
        """The processes serving requests: the supervisor's worker children (spawned; not its
        multiprocessing resource tracker), or the one process itself without --workers."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-f", "spawn_main"], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()] or [self.proc.pid]


def start_server(url: str, log: Path, *, workers: int, env: dict[str, str] | None = None,
                 app: str = "bench.app:app", port: int | None = None) -> Server:
    port = port or free_port()
    full_env = {**os.environ, "PAL_DATABASE_URL": url, "PAL_SECRET_KEY": "bench-secret", **(env or {})}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(workers), "--log-level", "warning", "--no-access-log",
             "--loop", "uvloop", "--http", "httptools", "--timeout-keep-alive", "30"],
            cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    wait_healthy(server, ready=lambda: len(server.worker_pids()) >= workers)
    return server


def start_poller(server_url: str, token: str, project_id: int, log: Path, interval: float = 0.5
                 ) -> subprocess.Popen[bytes]:
    """The stand-in trainer: polls the edge feed and logs every page it consumed."""
    with log.with_suffix(".err").open("ab") as err:
        return subprocess.Popen(
            # "--token=T": a token may begin with "-", which argparse would take for an option.
            [sys.executable, "-m", "bench.poller", "--server", server_url, f"--token={token}",
             "--project", str(project_id), "--log", str(log), "--interval", str(interval)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
        )


def add_run_arguments(parser: argparse.ArgumentParser, name: str, out_dir: Path) -> None:
    """``--out-dir`` (the report), ``--work-dir`` (the run's logs) and ``--keep-db``, for the load and fault runs."""
    parser.add_argument("--out-dir", type=Path, default=out_dir)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench" / f"{name}-run",
                        help="server log, client log and feed log of the run (not committed)")
    parser.add_argument("--keep-db", action="store_true")


def empty_work_dir(path: Path) -> Path:
    """``path``, created, without the files of a previous run."""
    path.mkdir(parents=True, exist_ok=True)
    for f in path.glob("*"):
        if f.is_file():
            f.unlink()
    return path


def install_uvloop() -> None:
    """uvloop for the simulated annotators' event loop, when it is installed."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
