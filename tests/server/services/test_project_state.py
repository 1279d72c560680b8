"""The per-process oracle state follows the database without a restart."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.schemas import EmbeddingMeta
from server.services.embeddings import store_version
from server.services.project_state import ProjectState
from tests.support import make_project


def test_state_sees_a_new_embedding_version_at_the_next_refresh(db: Session) -> None:
    pid = make_project(db, n_items=6)
    project = db.get(models.Project, pid)
    assert project is not None
    ids = np.array(db.execute(sa.select(models.Item.id).where(models.Item.project_id == pid)
                              .order_by(models.Item.id)).scalars().all(), dtype=np.int64)
    state = ProjectState(project_id=pid)
    state.refresh(db, max_age=0)
    assert state.embedding is None
    first = store_version(db, project=project, ids=ids, vectors=np.eye(6, 3, dtype=np.float32), meta=EmbeddingMeta())
    state.refresh(db, max_age=0)
    assert state.embedding_id == first.id
    second = store_version(db, project=project, ids=ids[::-1].copy(), vectors=np.eye(6, 3, dtype=np.float32),
                           meta=EmbeddingMeta())
    state.refresh(db, max_age=0)
    db.commit()
    assert state.embedding_id == second.id
    # Rows are re-aligned to ascending item ids: the last item got the first unit vector.
    assert state.embedding is not None and state.embedding[-1].tolist() == [1.0, 0.0, 0.0]


def test_oracle_stream_is_seeded_per_project_when_a_seed_is_set() -> None:
    def draws(project_id: int, seed: int | None) -> list[int]:
        return ProjectState(project_id=project_id).oracle_rng(seed).integers(1 << 30, size=4).tolist()

    assert draws(1, 7) == draws(1, 7)
    assert draws(1, 7) != draws(2, 7) and draws(1, 7) != draws(1, 8)
    assert draws(1, None) != draws(1, None)  # unset: fresh entropy


def test_oracle_stream_is_created_once_and_then_continues() -> None:
    state = ProjectState(project_id=3)
    first = state.oracle_rng(5).integers(1 << 30)
    second = state.oracle_rng(5).integers(1 << 30)
    assert first != second  # one stream drawn on, not restarted at every claim
