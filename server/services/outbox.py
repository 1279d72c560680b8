"""Webhook events written to the outbox table, inside the transaction that causes them.

- ``budget.threshold``: the charge that makes ``budget_spent`` reach 50, 80 or 100 % of the cap
  (``issue_task``). Spent grows by one under the project's row lock, so exactly one charge sees each
  mark; raising the cap later re-arms the thresholds above the new marks.
- ``embedding.published``: the step that makes a new embedding version current (``store_version``).
- ``trainer.lag``: more than ``PAL_TRAINER_LAG_ALERT_EDGES`` edges wait unconsumed; checked by the
  delivery worker, at most one alert per project per newest embedding version.

Nothing is written for a project without ``webhook_url``. Each row gets a unique ``dedup_key``;
inserting an event twice (two server processes checking the lag at once) keeps one.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server import models
from server.timeutil import utcnow

BUDGET_THRESHOLD = "budget.threshold"
EMBEDDING_PUBLISHED = "embedding.published"
TRAINER_LAG = "trainer.lag"
EVENT_TYPES = (BUDGET_THRESHOLD, EMBEDDING_PUBLISHED, TRAINER_LAG)
BUDGET_THRESHOLDS = (50, 80, 100)

# Set after a commit that wrote an event, so this process's worker delivers it at once.
wake = threading.Event()


def _wake_after_commit(db: Session) -> None:
    if not db.info.get("pal_outbox_listener"):
        db.info["pal_outbox_listener"] = True

        def _on_commit(_session: Session) -> None:
            wake.set()

        sa.event.listen(db, "after_commit", _on_commit)


def enqueue(db: Session, *, project_id: int, url: str, type: str, dedup_key: str, data: dict[str, Any]) -> bool:
    """Add one event to the outbox in the caller's transaction; False when ``dedup_key`` exists."""
    event_id = str(uuid.uuid4())
    now = utcnow()
    body = json.dumps(
        {"id": event_id, "type": type, "project_id": project_id, "created_at": now.isoformat(), "data": data},
        sort_keys=True, separators=(",", ":"), default=str,
    )
    values = {"event_id": event_id, "dedup_key": dedup_key, "project_id": project_id, "type": type, "url": url,
              "body": body, "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    row = db.execute(
        insert(models.WebhookEvent).values(**values).on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(models.WebhookEvent.id)
    ).first()
    _wake_after_commit(db)
    return row is not None


def threshold_mark(percent: int, cap: int) -> int:
    """The budget_spent value at which ``percent`` of ``cap`` is reached (rounded up, at least 1)."""
    return max(1, (percent * cap + 99) // 100)


def budget_charged(db: Session, *, project: models.Project) -> None:
    """Call right after a successful budget charge, in its transaction."""
    if not project.webhook_url:
        return  # the common case costs nothing
    row = db.execute(
        sa.select(models.Project.budget_spent, models.Project.budget_cap, models.Project.webhook_url)
        .where(models.Project.id == project.id)
    ).one()
    spent, cap, url = int(row[0]), int(row[1]), row[2]
    if not url:
        return
    for percent in BUDGET_THRESHOLDS:
        if spent == threshold_mark(percent, cap):
            enqueue(db, project_id=project.id, url=url, type=BUDGET_THRESHOLD,
                    dedup_key=f"budget:{project.id}:{percent}:{cap}",
                    data={"threshold_percent": percent, "budget_spent": spent, "budget_cap": cap})


def embedding_published(db: Session, *, project_id: int, version: models.EmbeddingVersion) -> None:
    """Call in the transaction that makes ``version`` current."""
    url = db.scalar(sa.select(models.Project.webhook_url).where(models.Project.id == project_id))
    if not url:
        return
    enqueue(db, project_id=project_id, url=url, type=EMBEDDING_PUBLISHED, dedup_key=f"embedding:{version.id}",
            data={"version": version.version, "embedding_id": version.id, "dim": version.dim,
                  "n_items": version.n_items, "answers_at_upload": version.answers_at_upload,
                  "metrics": version.metrics})


def check_trainer_lag(db: Session, *, limit: int) -> int:
    """Enqueue ``trainer.lag`` for projects over ``limit``; returns how many were new. Commits."""
    from server.observability import trainer_lag

    if limit <= 0:
        return 0
    projects = db.execute(
        sa.select(models.Project.id, models.Project.webhook_url).where(models.Project.webhook_url.is_not(None))
    ).all()
    added = 0
    for pid, url in projects:
        if not url:
            continue
        newest = db.execute(
            sa.select(models.EmbeddingVersion.id, models.EmbeddingVersion.version, models.EmbeddingVersion.metrics)
            .where(models.EmbeddingVersion.project_id == pid)
            .order_by(models.EmbeddingVersion.id.desc()).limit(1)
        ).first()
        lag = trainer_lag(db, project_id=pid, newest_metrics=newest.metrics if newest else None)
        if lag >= limit:
            added += enqueue(db, project_id=pid, url=url, type=TRAINER_LAG,
                             dedup_key=f"trainer_lag:{pid}:{newest.id if newest else 0}",
                             data={"lag_edges": lag, "limit": limit,
                                   "embedding_version": newest.version if newest else None})
    db.commit()
    return added
