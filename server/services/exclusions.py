"""Excluding an annotator from a project, and letting them back in.

Excluding withdraws every live answer edge of the annotator in the project the way an undo does:
one ``kind='retract'`` row per edge, naming it in ``retracts_id``. The edge feed delivers those rows
like any other, so the server's graph, the trainer and every export forget the edges, and the
labels are inferred again from what remains. Nothing else is rolled back: the answers stay stored
(history), and the budget their tasks used stays spent.

While excluded (``project_members.excluded_at`` set), the annotator is issued no task and their
answers and undos are refused with 403 ``annotator_excluded``; the leases they hold are expired at
once, so others take those grids. Including them again lifts that for what they answer next; the
edges retracted by the exclusion stay retracted (a retraction is final in the feed).

An answer being stored at the very instant of an exclusion can slip past it on PostgreSQL (its
statement started before the exclusion committed). Excluding is idempotent and retracts whatever is
live, so excluding again catches it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from pal.core.edges import EdgeKind
from server import models
from server.errors import ApiError
from server.timeutil import utcnow


@dataclass(frozen=True)
class Exclusion:
    user_id: int
    excluded_at: datetime | None
    retracted_edges: int
    released_leases: int


def member_row(db: Session, *, project_id: int, user_id: int, lock: bool = False) -> models.ProjectMember:
    """The membership, or 404 naming ``user_id`` (an unknown user and a non-member alike)."""
    query = sa.select(models.ProjectMember).where(models.ProjectMember.project_id == project_id,
                                                  models.ProjectMember.user_id == user_id)
    row = db.execute(query.with_for_update() if lock else query).scalar_one_or_none()
    if row is None:
        raise ApiError(404, "not_found", f"user {user_id} is not a member of project {project_id}", field="user_id")
    return row


def refuse_if_excluded(db: Session, *, project_id: int, user_id: int) -> None:
    """403 ``annotator_excluded`` when an admin excluded the user from the project."""
    excluded = db.scalar(sa.select(models.ProjectMember.excluded_at).where(
        models.ProjectMember.project_id == project_id, models.ProjectMember.user_id == user_id))
    if excluded is not None:
        raise ApiError(403, "annotator_excluded",
                       f"an admin excluded you from project {project_id}: your answers are no longer accepted")


def live_answer_edges(db: Session, *, project_id: int, user_id: int) -> list[models.Edge]:
    """The user's answer edges in the project that no retract row withdraws yet."""
    retract = aliased(models.Edge)
    return list(db.execute(
        sa.select(models.Edge).where(
            models.Edge.project_id == project_id, models.Edge.annotator_id == user_id,
            models.Edge.kind == EdgeKind.ANSWER.value,
            ~sa.exists().where(retract.kind == EdgeKind.RETRACT.value, retract.retracts_id == models.Edge.id),
        ).order_by(models.Edge.id)
    ).scalars())


def exclude(db: Session, *, project_id: int, user_id: int) -> Exclusion:
    """Mark the member excluded, expire their leases, then retract their live answer edges."""
    member = member_row(db, project_id=project_id, user_id=user_id, lock=True)
    now = utcnow()
    if member.excluded_at is None:
        member.excluded_at = now
    released = len(db.execute(
        sa.update(models.Assignment).where(
            models.Assignment.project_id == project_id, models.Assignment.annotator_id == user_id,
            models.Assignment.status == "leased", models.Assignment.lease_expires_at >= now,
        ).values(lease_expires_at=now - timedelta(seconds=1)).returning(models.Assignment.id)
        .execution_options(synchronize_session=False)
    ).all())
    excluded_at = member.excluded_at
    # Committed first: an answer that starts after this sees the exclusion and is refused, so the
    # scan below misses nothing that commits later (except the instant noted in the docstring).
    db.commit()
    retracted = retract_all(db, project_id=project_id, user_id=user_id)
    return Exclusion(user_id=user_id, excluded_at=excluded_at, retracted_edges=retracted,
                     released_leases=released)


def retract_all(db: Session, *, project_id: int, user_id: int) -> int:
    """One retract row per live answer edge of the user (the shape of an undo's); how many."""
    for attempt in range(3):
        edges = live_answer_edges(db, project_id=project_id, user_id=user_id)
        now = utcnow()
        try:
            if edges:
                db.execute(sa.insert(models.Edge), [
                    {"project_id": e.project_id, "src": e.src, "dst": e.dst, "sign": e.sign, "weight": e.weight,
                     "kind": EdgeKind.RETRACT.value, "answer_id": e.answer_id, "annotator_id": user_id,
                     "retracts_id": e.id, "created_at": now}
                    for e in edges
                ])
            db.commit()
            return len(edges)
        except IntegrityError:
            # An undo committed meanwhile retracted one of these edges (uq_edges_answer_pair): scan again.
            db.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def include(db: Session, *, project_id: int, user_id: int) -> Exclusion:
    """Lift the exclusion for what the user answers from now on."""
    member = member_row(db, project_id=project_id, user_id=user_id, lock=True)
    member.excluded_at = None
    db.commit()
    return Exclusion(user_id=user_id, excluded_at=None, retracted_edges=0, released_leases=0)
