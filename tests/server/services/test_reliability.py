"""Annotator weights from control pairs."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.services.project_state import ProjectState
from server.services.reliability import gold_tallies, reliability_weight
from tests.support import make_project, make_user


def test_weight_is_one_at_the_prior_and_falls_toward_chance() -> None:
    assert reliability_weight(0, 0) == 1.0
    assert reliability_weight(50, 50) > 1.5
    assert reliability_weight(25, 50) < 0.2


def _gold_answer(db: Session, pid: int, annotator: int, outliers: list[int]) -> None:
    items = db.execute(sa.select(models.Item.id).where(models.Item.project_id == pid).limit(3)).scalars().all()
    task = models.Task(project_id=pid, reference_id=items[0], candidate_ids=items[1:], redundancy=1,
                       oracle="random", gold={str(items[1]): True, str(items[2]): False})
    db.add(task)
    db.flush()
    slot = models.Assignment(task_id=task.id, project_id=pid, status="answered", annotator_id=annotator)
    db.add(slot)
    db.flush()
    db.add(models.Answer(task_id=task.id, assignment_id=slot.id, project_id=pid, annotator_id=annotator,
                         idempotency_key=uuid.uuid4().hex, outlier_ids=[items[o] for o in outliers]))
    db.commit()


def test_gold_tallies_count_right_marks(db: Session) -> None:
    good, bad = make_user(db, "annotator"), make_user(db, "annotator")
    pid = make_project(db, n_items=4)
    _gold_answer(db, pid, good.id, outliers=[2])  # both controls right
    _gold_answer(db, pid, bad.id, outliers=[1])  # both wrong
    assert gold_tallies(db, project_id=pid) == {good.id: (2, 2), bad.id: (0, 2)}


def test_project_state_weighs_annotators_by_gold(db: Session) -> None:
    bad = make_user(db, "annotator")
    pid = make_project(db, n_items=4)
    for _ in range(5):
        _gold_answer(db, pid, bad.id, outliers=[1])
    state = ProjectState(project_id=pid)
    state.refresh(db, max_age=0, force=True)
    db.commit()
    assert state.graph.annotator_weight(bad.id) < 0.5


def test_an_always_current_state_reweighs_annotators_on_every_refresh(db: Session) -> None:
    """max_age 0 (a reproducible benchmark's setting): new gold answers count at the next refresh,
    not 30 s of wall time later."""
    bad = make_user(db, "annotator")
    pid = make_project(db, n_items=4)
    state = ProjectState(project_id=pid)
    state.refresh(db, max_age=0)
    db.commit()
    assert state.graph.annotator_weight(bad.id) == 1.0
    for _ in range(5):
        _gold_answer(db, pid, bad.id, outliers=[1])
    state.refresh(db, max_age=0)
    db.commit()
    assert state.graph.annotator_weight(bad.id) < 0.5
