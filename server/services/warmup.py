"""A process's first claims on a big project: the project state builds in the background, and a
claim that would wait for it gets a cheap grid that is always correct instead.

Building the state reads every item id and edge and, before the first embedding, decodes every
image into pixel features: seconds at 100,000 items. Claims used to wait for it under the state's
lock, each holding a pooled connection, so a burst on a restarted process emptied the pool (503s
and pool-timeout tracebacks). Now the first claim starts one background build and waits for it
at most ``WAIT_SECONDS`` (a small project is ready well before that, so its grids are the oracle's
from the first one); a claim that finds the build still running is served a *warming* grid:
items no edge mentions yet, so no pair in it is implied by an answer, and none in a grid out with
another annotator."""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.core.oracle import TaskSpec
from server import models
from server.db import get_sessionmaker
from server.services.project_state import ProjectState, get_state

log = logging.getLogger("pal.warmup")

WAIT_SECONDS = 0.5
NEEDS_FEATURES = {"active", "uncertainty"}
FALLBACK_ORACLE = "warming"

_builds: dict[int, threading.Thread] = {}
_builds_lock = threading.Lock()


def is_ready(state: ProjectState, oracle: str) -> bool:
    """Built once, with the pixel features the oracle needs before any embedding."""
    if not state.refreshed_at:
        return False
    return not (state.embedding is None and oracle in NEEDS_FEATURES and state.pixel_features is None)


def _build(project_id: int, oracle: str) -> None:
    state = get_state(project_id)
    try:
        with get_sessionmaker()() as db:
            state.refresh(db, max_age=0, force=True)
            if state.embedding is None and oracle in NEEDS_FEATURES:
                state.ensure_pixel_features(db)
            db.rollback()
    except Exception:  # the next claim starts another build
        log.exception("building the state of project %s failed", project_id)
    finally:
        with _builds_lock:
            _builds.pop(project_id, None)


def ready_state(project: models.Project, wait: float = WAIT_SECONDS) -> ProjectState | None:
    """The project's state when it is built (starting the build if none runs, and waiting at most
    ``wait`` seconds for it); None while it is still building."""
    state = get_state(project.id)
    if is_ready(state, project.oracle):
        return state
    with _builds_lock:
        thread = _builds.get(project.id)
        if thread is None:
            thread = threading.Thread(target=_build, args=(project.id, project.oracle),
                                      name=f"pal-warmup-{project.id}", daemon=True)
            _builds[project.id] = thread
            thread.start()
    thread.join(wait)
    return state if is_ready(state, project.oracle) else None


_UNTOUCHED = sa.text(
    """
    SELECT id FROM items
     WHERE project_id = :project_id
       AND id NOT IN (SELECT src FROM edges WHERE project_id = :project_id
                      UNION SELECT dst FROM edges WHERE project_id = :project_id)
     ORDER BY random()
     LIMIT :limit
    """
)


def warming_task(db: Session, *, project_id: int, n_candidates: int, busy: frozenset[int]) -> TaskSpec | None:
    """A grid of items no edge mentions and no grid in flight shows (any pair of them is unknown),
    or None when too few are left (then the claim waits for the state instead)."""
    rows = db.execute(_UNTOUCHED, {"project_id": project_id, "limit": n_candidates + 1 + len(busy)}).scalars()
    items = [int(i) for i in rows if int(i) not in busy][: n_candidates + 1]
    if len(items) < 2:
        return None
    return TaskSpec(reference=items[0], candidates=items[1:])
