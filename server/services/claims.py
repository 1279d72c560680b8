"""A claim, end to end: an existing slot if one is claimable, else a new task from the oracle."""

from __future__ import annotations

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server import models
from server.config import Settings
from server.oracle import OracleContext, get_oracle
from server.services.project_state import get_state
from server.services.tasks import Lease, issue_task, retry_on_conflict, take_existing_slot

NEEDS_FEATURES = {"active", "uncertainty"}


def claim(db: Session, *, project: models.Project, user_id: int, settings: Settings) -> Lease | str:
    """A lease, or the reason there is none: 'paused', 'budget_exhausted' or 'no_items'."""
    for attempt in range(4):
        try:
            return _claim_once(db, project=project, user_id=user_id, settings=settings)
        except IntegrityError as exc:
            retry_on_conflict(db, attempt, exc)
    raise AssertionError("unreachable")


def _claim_once(db: Session, *, project: models.Project, user_id: int, settings: Settings) -> Lease | str:
    db.refresh(project)
    if project.paused:
        db.commit()
        return "paused"
    lease = take_existing_slot(db, project_id=project.id, user_id=user_id, lease_seconds=settings.lease_seconds)
    if lease is not None:
        db.commit()
        return lease
    if project.budget_spent >= project.budget_cap:
        db.commit()
        return "budget_exhausted"
    db.commit()  # release locks while the oracle thinks
    state = get_state(project.id)
    state.refresh(db, max_age=settings.graph_refresh_seconds)
    db.commit()
    if len(state.item_ids) < 2:
        return "no_items"
    with state.lock:
        features = None
        if state.embedding is None and project.oracle in NEEDS_FEATURES:
            features = state.ensure_pixel_features(db)
            db.commit()
        ctx = OracleContext(
            n_candidates=project.n_candidates, item_ids=state.item_ids, graph=state.graph,
            rng=np.random.default_rng(), target_match_share=project.target_match_share,
            gold_rate=project.gold_rate, embedding=state.embedding, pixel_features=features,
            extra={"cache": state.cache, "embedding_id": state.embedding_id},
        )
        oracle = get_oracle(project.oracle)
        spec = oracle.select(ctx)
    lease = issue_task(db, project=project, spec=spec, oracle=oracle.name, user_id=user_id,
                       lease_seconds=settings.lease_seconds)
    if lease is None:
        db.rollback()
        return "budget_exhausted"
    db.commit()
    return lease
