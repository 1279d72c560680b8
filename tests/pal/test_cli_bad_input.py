"""Every ``pal`` subcommand not covered by test_cli_accounts.py, given bad input as an operator
would: one line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from server import models
from tests.conftest import ROOT
from tests.pal.test_cli_accounts import pal
from tests.support import make_project


@pytest.fixture
def files(tmp_path: Path) -> Path:
    np.savez(tmp_path / "no-images.npz", labels=np.zeros(3))
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "bad.npy").write_bytes(b"not an npy file")
    (tmp_path / "folder").mkdir()
    (tmp_path / "latin1.csv").write_bytes("item_id,label\n1,caf\xe9\n".encode("latin-1"))
    return tmp_path


BAD = [
    (["import", "--project", "{project}", "{tmp}/missing"], "not found"),
    (["import", "--project", "{project}", "{tmp}/no-images.npz"], "'images'"),
    (["import", "--project", "{project}", "{tmp}/empty.npz"], "empty"),
    (["import", "--project", "no-such-project", "{tmp}/no-images.npz"], "no project"),
    (["import", "--project", "{project}"], "path"),
    (["known-labels", "--project", "{project}", "{tmp}/missing.csv"], "No such file"),
    (["known-labels", "--project", "{project}", "{tmp}/folder"], "directory"),
    (["known-labels", "--project", "{project}", "{tmp}/latin1.csv"], "UTF-8"),
    (["embeddings", "import", "{tmp}/missing.npy", "--project", "{project}"], "No such file"),
    (["embeddings", "import", "{tmp}/bad.npy", "--project", "{project}"], ".npy"),
    (["embeddings", "export", "{tmp}/bad.npy", "--project", "{project}"], "invalid choice"),
    (["migrate", "--revision", "nope"], "nope"),
    (["migrate", "--downgrade", "--revision", "zz"], "zz"),
    (["serve", "--port", "x"], "--port"),
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--workers", "0"], "--workers"),
    (["serve", "--log-level", "loud"], "--log-level"),
    (["demo", "--port", "x"], "--port"),
    (["demo", "--bogus"], "--bogus"),
    (["export", "--project", "{project}"], "--out"),
    (["export", "--project", "{project}", "--out", "{tmp}/out", "--format", "bogus"], "unknown format"),
    (["export", "--project", "no-such-project", "--out", "{tmp}/out"], "no project"),
    (["train", "--server", "http://127.0.0.1:9"], "--project"),
    (["train", "--project", "x"], "--project"),
    (["audit"], "--project"),
    (["simulate", "--bogus"], "--project"),
    (["simulate", "--project", "1", "--labels", "{tmp}/no-images.npz", "--server", "http://127.0.0.1:9",
      "--admin-token", "x"], "cannot set up"),
    (["bench", "nosuch"], "unknown benchmark"),
    (["nonsense"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a[:2]) + f" {i}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_line_and_a_nonzero_exit(db: Session, database_url: str, files: Path, argv: list[str],
                                                  says: str) -> None:
    if not database_url.startswith("sqlite"):
        # How the CLI reports bad input does not depend on the database; one process per case is
        # the cost of this matrix, so it runs once (the PostgreSQL paths have their own tests).
        pytest.skip("the bad-input matrix runs on SQLite")
    project = db.get(models.Project, make_project(db, n_items=0))
    assert project is not None
    run = pal(database_url, *[a.format(project=project.name, tmp=files) for a in argv])
    assert run.returncode != 0
    assert "Traceback" not in run.stderr + run.stdout
    assert len(run.stderr.strip().splitlines()) == 1 and says in run.stderr, run.stderr


def test_import_outside_the_repository_without_a_database_is_one_line(tmp_path: Path, files: Path) -> None:
    """No PAL_DATABASE_URL, in a folder with no database: say so and how to make one."""
    env = {k: v for k, v in os.environ.items() if k != "PAL_DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-m", "pal.cli", "import", "--project", "p", str(files / "no-images.npz")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "pal migrate" in run.stderr, run.stderr
    assert not (tmp_path / "var" / "pal.sqlite3").exists()  # no empty database left behind


def test_import_of_an_empty_folder_warns(db: Session, database_url: str, files: Path) -> None:
    project = db.get(models.Project, make_project(db, n_items=0))
    assert project is not None
    run = pal(database_url, "import", "--project", project.name, str(files / "folder"))
    assert run.returncode == 0 and "imported 0 items" in run.stdout
    assert "holds no images" in run.stderr and "Traceback" not in run.stderr
