"""``pal demo``: a working PAL on this machine in one command.

Creates the database (SQLite by default), an admin, a demo annotator, a trainer token and a project
holding the shipped demo images, then runs the server and the trainer until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pal.assets import asset_dir, checkout_root

# The server and trainer run from the checkout when there is one (a plain checkout is not installed);
# an installed PAL runs them from the current folder, where var/ then goes.
ROOT = checkout_root() or Path.cwd()
DEMO_DATA = asset_dir("demo") / "fashion-mnist-demo.npz"
DEMO_PROJECT = "fashion-demo"
ADMIN_EMAIL = "admin@pal.example"
ANNOTATOR_EMAIL = "annotator@pal.example"
TRAINER_EMAIL = "trainer@pal.example"


def setup(password: str) -> tuple[int, str]:
    """Idempotent: returns (project id, trainer token)."""
    import sqlalchemy as sa

    from server import models
    from server.admin import ensure_project, ensure_user, import_path, new_token_for
    from server.config import get_settings
    from server.db import get_sessionmaker
    from server.migrate import upgrade
    from server.schemas import ProjectCreate

    upgrade(get_settings().database_url)
    with get_sessionmaker()() as db:
        ensure_user(db, email=ADMIN_EMAIL, role="admin", password=password, name="Demo admin")
        annotator = ensure_user(db, email=ANNOTATOR_EMAIL, role="annotator", password=password,
                                name="Demo annotator")
        ensure_user(db, email=TRAINER_EMAIL, role="trainer", password=None, name="Trainer")
        project = ensure_project(db, ProjectCreate(
            name=DEMO_PROJECT, description="Fashion-MNIST sample shipped with PAL", budget_cap=2000,
        ))
        if db.get(models.ProjectMember, (project.id, annotator.id)) is None:
            db.add(models.ProjectMember(project_id=project.id, user_id=annotator.id))
            db.commit()
        count = db.scalar(sa.select(sa.func.count()).where(models.Item.project_id == project.id))
        if not count:
            result = import_path(db, project_id=project.id, path=DEMO_DATA)
            print(f"imported {result.imported} demo images")
        token = new_token_for(db, email=TRAINER_EMAIL, name="demo trainer")
        return project.id, token


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the server did not answer at {url} within {timeout:.0f} s")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace) -> int:
    password = os.environ.get("PAL_DEMO_PASSWORD", "pal-demo-password")
    from server.config import get_settings

    project_id, token = setup(password)
    if args.setup_only:
        return 0
    url = f"http://{args.host}:{args.port}"
    # SIGTERM (docker stop, systemd, kill) stops the server and trainer like Ctrl-C does; by default
    # it would end this process alone and leave both children running.
    signal.signal(signal.SIGTERM, _interrupt)
    procs = [subprocess.Popen([sys.executable, "-m", "uvicorn", "server.main:app", "--host", args.host,
                               "--port", str(args.port), "--no-proxy-headers"], cwd=ROOT)]
    try:
        wait_healthy(url)
        if not args.no_trainer:
            # The token goes through the environment: a command line is visible to every local user (ps).
            checkpoint = get_settings().data_dir.resolve() / f"trainer-{project_id}.pt"
            procs.append(subprocess.Popen([sys.executable, "-m", "pal.cli", "train", "--server", url,
                                           "--project", str(project_id), "--checkpoint", str(checkpoint)],
                                          cwd=ROOT, env={**os.environ, "PAL_TOKEN": token}))
        print(f"\nPAL is running at {url}\n"
              f"  annotate: {url}/annotate   (sign in as {ANNOTATOR_EMAIL} / {password})\n"
              f"  admin:    {url}/admin      (sign in as {ADMIN_EMAIL} / {password})\n"
              f"  API docs: {url}/docs\nPress Ctrl-C to stop.\n", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0
