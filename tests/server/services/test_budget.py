"""The budget's backstop: the database itself refuses spending past the cap."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.services.tasks import charge_budget
from tests.support import make_project


def test_check_constraint_refuses_spent_above_cap(db: Session) -> None:
    pid = make_project(db, n_items=0, budget_cap=2)
    with pytest.raises(sa.exc.IntegrityError):
        db.execute(sa.update(models.Project).where(models.Project.id == pid).values(budget_spent=3))
        db.commit()
    db.rollback()


def test_charge_budget_stops_at_cap(db: Session) -> None:
    pid = make_project(db, n_items=0, budget_cap=2)
    charged = [charge_budget(db, project_id=pid) for _ in range(4)]
    db.commit()
    assert charged == [True, True, False, False]
    assert db.scalar(sa.select(models.Project.budget_spent).where(models.Project.id == pid)) == 2
