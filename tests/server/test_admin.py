"""``pal known-labels``: known labels from a CSV file, through the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.support import make_project


def _items(db: Session, pid: int) -> list[tuple[int, str]]:
    rows = db.execute(sa.select(models.Item.id, models.Item.source).where(models.Item.project_id == pid)
                      .order_by(models.Item.id))
    return [(int(i), str(s)) for i, s in rows]


def test_known_labels_csv_by_source_goes_through_the_cli(db: Session, database_url: str, tmp_path: Path) -> None:
    pid = make_project(db, n_items=6)
    items = _items(db, pid)
    path = tmp_path / "known.csv"
    path.write_text("source,label\n" + "".join(f"{s},{'cat' if k < 3 else 'dog'}\n" for k, (_, s) in enumerate(items)))
    env = {**os.environ, "PAL_DATABASE_URL": database_url}
    run = subprocess.run([sys.executable, "-m", "pal.cli", "known-labels", "--project", str(pid), str(path)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "6 added" in run.stdout and "15 edges" in run.stdout
    db.expire_all()
    stored = dict(db.execute(sa.select(models.KnownLabel.item_id, models.KnownLabel.label).where(
        models.KnownLabel.project_id == pid)).tuples().all())
    assert stored == {i: ("cat" if k < 3 else "dog") for k, (i, _) in enumerate(items)}
    # A file naming an item the project does not have: exit 2, the line named, nothing stored.
    bad = tmp_path / "bad.csv"
    bad.write_text(f"source,label\n{items[0][1]},cat\nno-such-file.png,cat\n")
    run = subprocess.run([sys.executable, "-m", "pal.cli", "known-labels", "--project", str(pid), str(bad)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "line 3" in run.stderr and "no-such-file.png" in run.stderr

