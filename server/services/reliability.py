"""Annotator reliability from control pairs (gold), used to weigh their edges in the graph.

Each control pair an annotator marked is right or wrong. The accuracy estimate shrinks toward a
prior of 0.8 (four virtual right answers in five), so one slip does not silence a newcomer; the
weight is the log-odds of that accuracy relative to the prior's, so an annotator at the prior
weighs 1, a perfect one more, and one at chance (0.5) close to nothing."""

from __future__ import annotations

import math

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models

PRIOR_RIGHT, PRIOR_TOTAL = 4.0, 5.0
MIN_WEIGHT, MAX_WEIGHT = 0.05, 2.0


def gold_tallies(db: Session, *, project_id: int) -> dict[int, tuple[int, int]]:
    """{annotator id: (right, total)} over the control pairs of their live answers."""
    rows = db.execute(
        sa.select(models.Answer.annotator_id, models.Answer.outlier_ids, models.Task.gold)
        .join(models.Task, models.Task.id == models.Answer.task_id)
        .where(models.Answer.project_id == project_id, models.Answer.undone_at.is_(None),
               models.Answer.cant_tell.is_(False), models.Task.gold.is_not(None))
    ).all()
    tallies: dict[int, tuple[int, int]] = {}
    for annotator, outliers, gold in rows:
        marked = set(outliers)
        right, total = tallies.get(annotator, (0, 0))
        for candidate, matches in (gold or {}).items():
            total += 1
            right += int((int(candidate) not in marked) == bool(matches))
        tallies[annotator] = (right, total)
    return tallies


def reliability_weight(right: int, total: int) -> float:
    accuracy = (right + PRIOR_RIGHT) / (total + PRIOR_TOTAL)
    accuracy = min(max(accuracy, 1e-3), 1 - 1e-3)
    prior = PRIOR_RIGHT / PRIOR_TOTAL
    weight = math.log(accuracy / (1 - accuracy)) / math.log(prior / (1 - prior))
    return min(max(weight, MIN_WEIGHT), MAX_WEIGHT)
