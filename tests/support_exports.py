"""A project whose exported labels are known in advance, for the export format tests.

24 synthetic images of 4 hidden classes. Classes 0-2 get 3 known labels each, with names that are not
safe as folder names or plain ASCII (``T-shirt/top``, ``Trouser``, ``Bag é``); the embedding (one-hot of
the class) covers those three classes only, so their other items take their class by the embedding's
vote and the 6 items of class 3 stay unlabelled (no known label, no embedding row)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server import models
from server.schemas import EmbeddingMeta, KnownLabelIn
from server.services import project_state
from server.services.embeddings import store_version
from server.services.known_labels import add_known_labels
from tests.support import item_labels, make_project

NAMES = {"0": "T-shirt/top", "1": "Trouser", "2": "Bag é"}
CLASS_NAMES = sorted(NAMES.values())  # the exports' class order: known names alphabetically
UNLABELLED_CLASS = "3"


@dataclass(frozen=True)
class LabelledProject:
    pid: int
    sessions: sessionmaker[Session]
    classes: dict[int, str]  # item id -> hidden class
    database_url: str

    def expected_name(self, item_id: int) -> str | None:
        return NAMES.get(self.classes[item_id])


def make_labelled_project(db: Session, engine: sa.Engine, database_url: str) -> LabelledProject:
    pid = make_project(db, n_items=24)
    # SQLite and PostgreSQL runs share this process and may reuse a project id: start from a fresh state.
    project_state._states.pop(pid, None)
    classes = item_labels(db, pid)
    entries = []
    for cls in NAMES:
        members = sorted(i for i, c in classes.items() if c == cls)
        entries += [KnownLabelIn(item_id=i, label=NAMES[cls]) for i in members[:3]]
    add_known_labels(db, pid, entries, user_id=None)
    covered = np.asarray(sorted(i for i, c in classes.items() if c != UNLABELLED_CLASS), dtype=np.int64)
    vectors = np.random.default_rng(0).normal(0, 0.05, size=(len(covered), 4)).astype(np.float32)
    for row, i in enumerate(covered.tolist()):
        vectors[row, int(classes[i])] += 1.0
    project = db.get(models.Project, pid)
    assert project is not None
    store_version(db, project=project, ids=covered, vectors=vectors, meta=EmbeddingMeta())
    db.commit()
    return LabelledProject(pid=pid, sessions=sessionmaker(bind=engine, expire_on_commit=False), classes=classes,
                           database_url=database_url)
