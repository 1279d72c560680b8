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
from dataclasses import dataclass, field

import numpy as np
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


# Edges may commit out of id order (PostgreSQL assigns ids at insert): each catch-up re-reads this
# many ids below the last one seen, so a late commit is not missed.
REREAD_IDS = 1000


@dataclass
class _Untouched:
    """Per project and process, while its state builds: every item id, and those an edge mentions."""

    ids: np.ndarray  # (N,) int64
    touched: set[int] = field(default_factory=set)
    last_edge: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


_untouched: dict[int, _Untouched] = {}
_rng = np.random.default_rng()


def _untouched_for(db: Session, project_id: int) -> _Untouched:
    with _builds_lock:
        cache = _untouched.get(project_id)
    if cache is None:
        ids = np.asarray(db.execute(sa.select(models.Item.id).where(models.Item.project_id == project_id))
                         .scalars().all(), dtype=np.int64)
        cache = _Untouched(ids=ids)
        with _builds_lock:
            cache = _untouched.setdefault(project_id, cache)
    return cache


def _catch_up(db: Session, project_id: int, cache: _Untouched) -> None:
    rows = db.execute(sa.select(models.Edge.id, models.Edge.src, models.Edge.dst).where(
        models.Edge.project_id == project_id, models.Edge.id > cache.last_edge - REREAD_IDS)).all()
    for edge_id, src, dst in rows:
        cache.touched.update((int(src), int(dst)))
        cache.last_edge = max(cache.last_edge, int(edge_id))


def warming_task(db: Session, *, project_id: int, n_candidates: int, busy: frozenset[int]) -> TaskSpec | None:
    """A grid of items no edge mentions and no grid in flight shows (any pair of them is unknown),
    or None when too few are left (then the claim waits for the state instead). The item ids and
    the edges are read once per process and then only the new edges, so a burst of claims on a big
    project costs one index range scan each."""
    cache = _untouched_for(db, project_id)
    with cache.lock:
        _catch_up(db, project_id, cache)
        want = n_candidates + 1
        picked: list[int] = []
        for draw in (_rng.choice(cache.ids, min(len(cache.ids), 8 * want), replace=False), _rng.permutation(cache.ids)):
            for item in draw.tolist():
                if item not in cache.touched and item not in busy and item not in picked:
                    picked.append(item)
                    if len(picked) == want:
                        break
            if len(picked) == want:
                break
        if len(picked) < 2:
            return None
        cache.touched.update(picked)  # shown now: never again in a warming grid of this process
    return TaskSpec(reference=picked[0], candidates=picked[1:])


def forget_untouched() -> None:
    """Drop the per-project caches (tests, and a process whose states were reset)."""
    with _builds_lock:
        _untouched.clear()
