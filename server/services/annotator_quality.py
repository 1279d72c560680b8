"""The dashboard's annotator quality: each annotator's estimated accuracy on pair marks
(:mod:`pal.core.annotator_quality`) from the server's knowledge graph and their gold tallies.

The estimate is a pass over every live edge, so it is cached per project and recomputed only when
the graph, the gold tallies or the team moved (the dashboard asks every few seconds)."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.core.annotator_quality import AnnotatorQuality, estimate_quality
from pal.core.graph import KnowledgeGraph
from server import models
from server.schemas_stats import AnnotatorQualityPublic
from server.services.project_state import get_state
from server.services.reliability import gold_tallies

CacheKey = tuple[int, tuple[tuple[int, tuple[int, int]], ...], tuple[int, ...]]
# {project id: (the graph it was computed from, graph version, gold and team, the rows)}. The graph
# is compared by identity: a forgotten and rebuilt state starts its version count again.
_cache: dict[int, tuple[KnowledgeGraph, CacheKey, list[AnnotatorQuality]]] = {}
_cache_lock = threading.Lock()


def _estimates(project_id: int, graph: KnowledgeGraph, version: int, gold: dict[int, tuple[int, int]],
               members: list[int]) -> list[AnnotatorQuality]:
    key: CacheKey = (version, tuple(sorted(gold.items())), tuple(sorted(members)))
    with _cache_lock:
        hit = _cache.get(project_id)
    if hit is not None and hit[0] is graph and hit[1] == key:
        return hit[2]
    rows = estimate_quality(graph, gold=gold, annotators=members)
    with _cache_lock:
        _cache[project_id] = (graph, key, rows)
    return rows


def annotator_quality(db: Session, project_id: int) -> list[AnnotatorQualityPublic]:
    """Every member (answers or not) and everyone with a live answer edge, lowest accuracy first
    (flagged ones lead: they are what the admin should look at)."""
    state = get_state(project_id)
    state.refresh(db, max_age=0)  # catch up with the feed: an exclusion's retractions show at once
    gold = gold_tallies(db, project_id=project_id)
    excluded = dict(db.execute(
        sa.select(models.ProjectMember.user_id, models.ProjectMember.excluded_at)
        .where(models.ProjectMember.project_id == project_id)
    ).tuples().all())
    db.commit()
    # The version is read before the estimate, which snapshots the graph under its lock only briefly
    # (the oracle shares that lock): should the graph move meanwhile, the next request recomputes.
    graph = state.graph
    rows = _estimates(project_id, graph, graph.version, gold, list(excluded))
    users = {uid: (email, name) for uid, email, name in db.execute(
        sa.select(models.User.id, models.User.email, models.User.name)
        .where(models.User.id.in_([r.annotator_id for r in rows]))
    ).tuples()}
    out = [
        AnnotatorQualityPublic(
            user_id=r.annotator_id, email=users.get(r.annotator_id, ("", ""))[0],
            name=users.get(r.annotator_id, ("", ""))[1], member=r.annotator_id in excluded,
            excluded=excluded.get(r.annotator_id) is not None, accuracy=r.accuracy, low=r.low, high=r.high,
            decided=r.decided, agreed=r.agreed, edges=r.edges, flagged=r.flagged,
        )
        for r in rows
    ]
    out.sort(key=lambda q: (not q.flagged, q.accuracy, q.user_id))
    return out
