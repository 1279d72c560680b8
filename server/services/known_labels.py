"""Known labels: what an admin already knows about a few items, turned into graph edges.

The edge rule lives in :mod:`pal.core.known_labels`; this module stores the labels and appends
their edges to the feed.

Admin-only: annotators never see these labels (nor the edges' origin).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.core.edges import EdgeKind
from pal.core.known_labels import KNOWN_LABEL_WEIGHT, known_label_pairs
from server import models
from server.errors import ApiError
from server.schemas import KnownLabelIn, KnownLabelsReport
from server.timeutil import utcnow


def list_known_labels(db: Session, project_id: int) -> list[models.KnownLabel]:
    return list(db.execute(
        sa.select(models.KnownLabel).where(models.KnownLabel.project_id == project_id)
        .order_by(models.KnownLabel.created_at, models.KnownLabel.item_id)
    ).scalars())


def add_known_labels(
    db: Session, project_id: int, entries: Sequence[KnownLabelIn], user_id: int | None
) -> KnownLabelsReport:
    """Store the labels and their edges in one transaction; a bad entry rejects the whole request
    (4xx naming the entry) and changes nothing."""
    wanted: dict[int, str] = {}
    for i, e in enumerate(entries):
        if wanted.setdefault(e.item_id, e.label) != e.label:
            raise ApiError(422, "conflicting_labels", f"item {e.item_id} is given two labels in this request",
                           field=f"labels.{i}.label")
    present = set(db.execute(
        sa.select(models.Item.id).where(models.Item.project_id == project_id, models.Item.id.in_(list(wanted)))
    ).scalars())
    for i, e in enumerate(entries):
        if e.item_id not in present:
            raise ApiError(422, "unknown_item", f"item {e.item_id} is not in project {project_id}",
                           field=f"labels.{i}.item_id")
    known = list_known_labels(db, project_id)
    stored = {k.item_id: k.label for k in known}
    for i, e in enumerate(entries):
        old = stored.get(e.item_id)
        if old is not None and old != e.label:
            raise ApiError(409, "label_conflict", f"item {e.item_id} already has the known label {old!r}",
                           field=f"labels.{i}.label")
    now = utcnow()
    added = {item: label for item, label in wanted.items() if item not in stored}
    edges = [{"project_id": project_id, "src": src, "dst": dst, "sign": sign, "weight": KNOWN_LABEL_WEIGHT,
              "kind": EdgeKind.KNOWN.value, "answer_id": None, "annotator_id": None, "created_at": now}
             for src, dst, sign in known_label_pairs([(k.item_id, k.label) for k in known], added.items())]
    new_rows = [{"project_id": project_id, "item_id": item, "label": label, "created_by": user_id,
                 "created_at": now} for item, label in added.items()]
    if new_rows:
        db.execute(sa.insert(models.KnownLabel), new_rows)
    if edges:
        db.execute(sa.insert(models.Edge), edges)
    try:
        db.commit()
    except sa.exc.IntegrityError as exc:  # a concurrent request stored one of these items first
        db.rollback()
        raise ApiError(409, "label_conflict", "another request stored known labels for these items; retry") from exc
    return KnownLabelsReport(added=len(new_rows), unchanged=len(wanted) - len(new_rows), edges=len(edges),
                             total=len(known) + len(new_rows))
