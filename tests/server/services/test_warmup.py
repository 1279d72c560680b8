"""A cold process serves correct grids while its project state builds in the background."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.config import Settings
from server.services import claims, warmup
from server.services.project_state import forget_states, get_state
from server.services.tasks import Lease
from tests.support import make_project, make_user


def _items(db: Session, pid: int) -> list[int]:
    return list(db.execute(sa.select(models.Item.id).where(models.Item.project_id == pid)
                           .order_by(models.Item.id)).scalars())


def _add_edge(db: Session, pid: int, src: int, dst: int) -> None:
    db.add(models.Edge(project_id=pid, src=src, dst=dst, sign=1, weight=1.0, kind="answer"))
    db.commit()


def test_warming_grid_shows_only_items_no_edge_or_grid_mentions(db: Session) -> None:
    warmup.forget_untouched()
    pid = make_project(db, n_items=20)
    items = _items(db, pid)
    _add_edge(db, pid, items[0], items[1])
    _add_edge(db, pid, items[2], items[0])
    busy = frozenset(items[3:6])
    for _ in range(5):
        warmup.forget_untouched()
        spec = warmup.warming_task(db, project_id=pid, n_candidates=4, busy=busy)
        assert spec is not None and len(spec.candidates) == 4
        shown = {spec.reference, *spec.candidates}
        assert len(shown) == 5 and not shown & ({items[0], items[1], items[2]} | busy)
    # A grid shown by this process is never shown again; an edge written meanwhile is seen.
    _add_edge(db, pid, items[7], items[8])
    again = warmup.warming_task(db, project_id=pid, n_candidates=1, busy=busy)
    assert again is not None and not {again.reference, *again.candidates} & (shown | {items[7], items[8]})
    assert warmup.warming_task(db, project_id=pid, n_candidates=4, busy=frozenset(items[2:])) is None


@pytest.fixture
def stalled_build(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The background build waits for the test: the process stays cold as long as it likes."""
    release = threading.Event()
    monkeypatch.setattr(warmup, "_build", lambda project_id, oracle: release.wait(30))
    monkeypatch.setattr(warmup, "WAIT_SECONDS", 0.0)
    forget_states()
    warmup.forget_untouched()
    yield release
    release.set()
    forget_states()
    warmup.forget_untouched()


def _claim(db: Session, user_id: int, pid: int, url: str) -> models.Task:
    user = db.get(models.User, user_id)
    assert user is not None
    lease = claims.claim(db, user=user, project_id=pid, settings=Settings(database_url=url))
    assert isinstance(lease, Lease)
    task = db.get(models.Task, lease.task.id)
    assert task is not None
    return task


def test_cold_claims_get_warming_grids_then_the_oracles(db: Session, database_url: str,
                                                       stalled_build: threading.Event) -> None:
    people = [make_user(db, "annotator") for _ in range(3)]
    pid = make_project(db, n_items=30, members=people, oracle="random")
    items = _items(db, pid)
    _add_edge(db, pid, items[0], items[1])
    first = _claim(db, people[0].id, pid, database_url)
    second = _claim(db, people[1].id, pid, database_url)
    assert first.oracle == second.oracle == warmup.FALLBACK_ORACLE
    a = {first.reference_id, *first.candidate_ids}
    b = {second.reference_id, *second.candidate_ids}
    assert not a & b and not (a | b) & {items[0], items[1]}
    state = get_state(pid)
    state.refresh(db, max_age=0, force=True)  # what the build does
    db.commit()
    assert _claim(db, people[2].id, pid, database_url).oracle == "random"
