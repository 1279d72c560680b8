"""Project statistics for the admin dashboard, which polls them every few seconds.

Each figure is one aggregate SQL query (grouped in the database, never a Python loop over answers
or edges), plus the knowledge graph that the server already keeps up to date per process
(``server.services.project_state``).

Time buckets are computed on epoch seconds so the same query runs on PostgreSQL and SQLite."""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.schemas import HeldBackOut, ProjectPublic
from server.schemas_stats import (
    AnnotatorStats,
    BudgetStats,
    ClusterItems,
    ClusterList,
    ClusterSummary,
    GraphStats,
    GrowthPoint,
    HourCount,
    OracleStats,
    ProjectStats,
    QualityPoint,
    ThroughputStats,
    TrainerStats,
)
from server.services.edges import held_back
from server.services.project_state import ProjectState, get_state
from server.timeutil import as_utc, utcnow

ACTIVE_MINUTES = 15
GROWTH_POINTS = 48
QUALITY_POINTS = 500


def _epoch_bucket(dialect: str, column: Any, seconds: int) -> sa.ColumnElement[int]:
    """Index of the ``seconds``-long bucket a timestamp falls in (epoch seconds // seconds)."""
    if dialect == "postgresql":
        return sa.cast(sa.func.floor(sa.extract("epoch", column) / seconds), sa.BigInteger)
    return sa.cast(sa.cast(sa.func.strftime("%s", column), sa.Integer) / seconds, sa.Integer)


def _from_bucket(index: int, seconds: int) -> datetime:
    return datetime.fromtimestamp(index * seconds, tz=timezone.utc)


# ---------------------------------------------------------------- budget and throughput


def budget_stats(db: Session, project: models.Project, now: datetime) -> BudgetStats:
    issued = db.scalar(
        sa.select(sa.func.count()).select_from(models.Task).where(
            models.Task.project_id == project.id, models.Task.created_at >= now - timedelta(hours=1)
        )
    ) or 0
    remaining = max(project.budget_cap - project.budget_spent, 0)
    hours_left = remaining / issued if issued else None
    return BudgetStats(
        cap=project.budget_cap, spent=project.budget_spent, remaining=remaining, burn_per_hour=float(issued),
        hours_left=hours_left,
        projected_exhaustion_at=now + timedelta(hours=hours_left) if hours_left is not None else None,
    )


def throughput_stats(db: Session, project_id: int, now: datetime, dialect: str) -> ThroughputStats:
    live = sa.and_(models.Answer.project_id == project_id, models.Answer.undone_at.is_(None))
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour_ago = now - timedelta(hours=1)
    totals = db.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((models.Answer.created_at >= today, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((models.Answer.created_at >= hour_ago, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((models.Answer.cant_tell, 1), else_=0)), 0),
            sa.func.count(sa.distinct(sa.case(
                (models.Answer.created_at >= now - timedelta(minutes=ACTIVE_MINUTES), models.Answer.annotator_id)
            ))),
        ).where(live)
    ).one()
    bucket = _epoch_bucket(dialect, models.Answer.created_at, 3600)
    first_hour = int(now.timestamp()) // 3600 - 23
    per_hour = dict(db.execute(
        sa.select(bucket, sa.func.count()).where(live, models.Answer.created_at >= _from_bucket(first_hour, 3600))
        .group_by(bucket)
    ).tuples().all())
    holding = db.scalar(
        sa.select(sa.func.count(sa.distinct(models.Assignment.annotator_id))).where(
            models.Assignment.project_id == project_id, models.Assignment.status == "leased",
            models.Assignment.lease_expires_at > now,
        )
    ) or 0
    return ThroughputStats(
        answers_total=int(totals[0]), answers_today=int(totals[1]), answers_last_hour=int(totals[2]),
        cant_tell_total=int(totals[3]), active_annotators=int(totals[4]), annotators_holding_tasks=int(holding),
        answers_per_hour=[HourCount(hour=_from_bucket(h, 3600), answers=int(per_hour.get(h, 0)))
                          for h in range(first_hour, first_hour + 24)],
    )


# ---------------------------------------------------------------- annotators

_MEDIAN_SQL = sa.text(
    """
    WITH ranked AS (
      SELECT annotator_id, seconds,
             ROW_NUMBER() OVER (PARTITION BY annotator_id ORDER BY seconds) AS rn,
             COUNT(*) OVER (PARTITION BY annotator_id) AS n
        FROM answers
       WHERE project_id = :pid AND undone_at IS NULL AND seconds IS NOT NULL
    )
    SELECT annotator_id, AVG(seconds) FROM ranked
     WHERE rn IN ((n + 1) / 2, (n + 2) / 2)
     GROUP BY annotator_id
    """
)

# Gold: Task.gold = {candidate id: matches?}. A control pair is answered right when the candidate
# is among the outliers exactly when it does not match. The JSON functions differ per database.
_GOLD_SQL = {
    "postgresql": sa.text(
        """
        SELECT a.annotator_id, COUNT(*) AS checked,
               SUM(CASE WHEN (g.value = 'true'::jsonb) <> (a.outlier_ids @> to_jsonb(g.key::bigint))
                        THEN 1 ELSE 0 END) AS correct
          FROM answers a
          JOIN tasks t ON t.id = a.task_id
          CROSS JOIN LATERAL jsonb_each(t.gold) AS g
         WHERE a.project_id = :pid AND a.undone_at IS NULL AND NOT a.cant_tell
           AND t.gold IS NOT NULL AND jsonb_typeof(t.gold) = 'object'
         GROUP BY a.annotator_id
        """
    ),
    "sqlite": sa.text(
        """
        SELECT a.annotator_id, COUNT(*) AS checked,
               SUM(CASE WHEN (g.type = 'true') <> EXISTS (
                          SELECT 1 FROM json_each(a.outlier_ids) AS o WHERE o.value = CAST(g.key AS INTEGER))
                        THEN 1 ELSE 0 END) AS correct
          FROM answers a
          JOIN tasks t ON t.id = a.task_id, json_each(t.gold) AS g
         WHERE a.project_id = :pid AND a.undone_at IS NULL AND NOT a.cant_tell
           AND t.gold IS NOT NULL AND json_type(t.gold) = 'object'
         GROUP BY a.annotator_id
        """
    ),
}

# Agreement: for redundant tasks, each answer edge (reference, candidate, sign) is compared with the
# other live answers' edges on the same task and candidate.
_AGREEMENT_SQL = sa.text(
    """
    SELECT a1.annotator_id, COUNT(*) AS pairs,
           SUM(CASE WHEN e1.sign = e2.sign THEN 1 ELSE 0 END) AS agree
      FROM answers a1
      JOIN answers a2 ON a2.task_id = a1.task_id AND a2.annotator_id <> a1.annotator_id
      JOIN edges e1 ON e1.answer_id = a1.id AND e1.kind = 'answer'
      JOIN edges e2 ON e2.answer_id = a2.id AND e2.kind = 'answer' AND e2.dst = e1.dst
     WHERE a1.project_id = :pid AND a1.undone_at IS NULL AND a2.undone_at IS NULL
       AND NOT a1.cant_tell AND NOT a2.cant_tell
     GROUP BY a1.annotator_id
    """
)


def annotator_stats(db: Session, project_id: int, now: datetime, dialect: str) -> list[AnnotatorStats]:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    a = models.Answer
    counts = {
        int(r[0]): r for r in db.execute(
            sa.select(
                a.annotator_id, sa.func.count(),
                sa.func.coalesce(sa.func.sum(sa.case((a.created_at >= today, 1), else_=0)), 0),
                sa.func.coalesce(sa.func.sum(sa.case((a.created_at >= now - timedelta(hours=1), 1), else_=0)), 0),
                sa.func.coalesce(sa.func.sum(sa.case((a.cant_tell, 1), else_=0)), 0),
                sa.func.max(a.created_at),
            ).where(a.project_id == project_id, a.undone_at.is_(None)).group_by(a.annotator_id)
        ).tuples()
    }
    params = {"pid": project_id}
    medians = {int(k): float(v) for k, v in db.execute(_MEDIAN_SQL, params).tuples() if v is not None}
    gold: dict[int, tuple[int, int]] = {}
    if dialect in _GOLD_SQL:
        gold = {int(k): (int(n), int(c or 0)) for k, n, c in db.execute(_GOLD_SQL[dialect], params).tuples()}
    agreement = {int(k): (int(n), int(c or 0)) for k, n, c in db.execute(_AGREEMENT_SQL, params).tuples()}
    members = set(db.execute(
        sa.select(models.ProjectMember.user_id).where(models.ProjectMember.project_id == project_id)
    ).scalars())
    users = db.execute(
        sa.select(models.User.id, models.User.email, models.User.name).where(models.User.id.in_(members | set(counts)))
        .order_by(models.User.id)
    ).tuples().all()
    out = []
    for uid, email, name in users:
        row = counts.get(uid)
        g_n, g_ok = gold.get(uid, (0, 0))
        ag_n, ag_ok = agreement.get(uid, (0, 0))
        out.append(AnnotatorStats(
            id=uid, email=email, name=name, member=uid in members,
            answers=int(row[1]) if row else 0, answers_today=int(row[2]) if row else 0,
            answers_last_hour=int(row[3]) if row else 0, cant_tell=int(row[4]) if row else 0,
            median_seconds=medians.get(uid), gold_checked=g_n, gold_accuracy=g_ok / g_n if g_n else None,
            agreement_pairs=ag_n, agreement=ag_ok / ag_n if ag_n else None,
            last_answer_at=as_utc(row[5]) if row and row[5] is not None else None,
        ))
    out.sort(key=lambda s: (-s.answers, s.id))
    return out


# ---------------------------------------------------------------- graph


def _edge_growth(db: Session, project_id: int, now: datetime, dialect: str) -> tuple[list[GrowthPoint], int, int]:
    """Cumulative live +/- edges over time and the current totals. A retract row carries the sign of
    the edge it withdraws, so it counts -1 in that sign's column."""
    e = models.Edge
    first = db.scalar(sa.select(sa.func.min(e.created_at)).where(e.project_id == project_id))
    if first is None:
        return [], 0, 0
    span = max((now - as_utc(first)).total_seconds(), 1.0)
    seconds = max(60, math.ceil(span / GROWTH_POINTS))
    bucket = _epoch_bucket(dialect, e.created_at, seconds)
    delta = sa.case((e.kind == "retract", -1), else_=1)
    rows = db.execute(
        sa.select(
            bucket,
            sa.func.coalesce(sa.func.sum(sa.case((e.sign > 0, delta), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((e.sign < 0, delta), else_=0)), 0),
        ).where(e.project_id == project_id).group_by(bucket).order_by(bucket)
    ).tuples().all()
    points, pos, neg = [], 0, 0
    if rows:  # start from zero, so even one bucket draws a line
        points.append(GrowthPoint(t=_from_bucket(int(rows[0][0]), seconds), positive=0, negative=0))
    for index, d_pos, d_neg in rows:
        pos, neg = pos + int(d_pos), neg + int(d_neg)
        points.append(GrowthPoint(t=min(_from_bucket(int(index) + 1, seconds), now), positive=pos, negative=neg))
    return points, pos, neg


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None


def graph_stats(db: Session, state: ProjectState, project_id: int, now: datetime, dialect: str) -> GraphStats:
    growth, pos, neg = _edge_growth(db, project_id, now, dialect)
    figures = state.graph.stats()
    known = {"edges", "positive_edges", "negative_edges", "items_with_edges", "known_clusters", "items_in_clusters",
             "largest_clusters", "cannot_links", "contradictions"}
    largest = figures.get("largest_clusters") or []
    return GraphStats(
        items=len(state.item_ids), edges=pos + neg, positive_edges=pos, negative_edges=neg,
        items_with_edges=_opt_int(figures.get("items_with_edges")),
        known_clusters=_opt_int(figures.get("known_clusters")),
        items_in_clusters=_opt_int(figures.get("items_in_clusters")),
        largest_clusters=[int(s) for s in largest][:10],
        cannot_links=_opt_int(figures.get("cannot_links")), contradictions=_opt_int(figures.get("contradictions")),
        growth=growth,
        extra={k: v for k, v in figures.items() if k not in known and isinstance(v, (int, float, str))},
    )


# ---------------------------------------------------------------- trainer and quality


def _metric(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def trainer_and_quality(db: Session, project: models.Project, now: datetime) -> tuple[TrainerStats, list[QualityPoint]]:
    ev = models.EmbeddingVersion
    rows = db.execute(
        sa.select(ev.id, ev.version, ev.dim, ev.n_items, ev.metrics, ev.answers_at_upload, ev.created_at)
        .where(ev.project_id == project.id).order_by(ev.version.desc()).limit(QUALITY_POINTS)
    ).all()
    count = db.scalar(sa.select(sa.func.count()).select_from(ev).where(ev.project_id == project.id)) or 0
    quality = [
        QualityPoint(version=r.version, answers_at_upload=r.answers_at_upload, created_at=as_utc(r.created_at),
                     knn_accuracy=_metric(r.metrics or {}, "knn_accuracy"),
                     cluster_accuracy=_metric(r.metrics or {}, "cluster_accuracy"))
        for r in reversed(rows)
    ]
    current = next((r for r in rows if r.id == project.current_embedding_id), None)
    if current is None and project.current_embedding_id is not None:
        current = db.execute(
            sa.select(ev.id, ev.version, ev.dim, ev.n_items, ev.metrics, ev.answers_at_upload, ev.created_at)
            .where(ev.id == project.current_embedding_id)
        ).first()
    if current is None:
        return TrainerStats(versions=int(count), current_version=None, embedding_id=None, created_at=None,
                            age_seconds=None, dim=None, n_items=None, answers_at_upload=None, answers_since=None,
                            metrics={}), quality
    created = as_utc(current.created_at)
    since = db.scalar(
        sa.select(sa.func.count()).select_from(models.Answer).where(
            models.Answer.project_id == project.id, models.Answer.undone_at.is_(None),
            models.Answer.created_at > created,
        )
    ) or 0
    return TrainerStats(
        versions=int(count), current_version=current.version, embedding_id=current.id, created_at=created,
        age_seconds=(now - created).total_seconds(), dim=current.dim, n_items=current.n_items,
        answers_at_upload=current.answers_at_upload, answers_since=int(since), metrics=dict(current.metrics or {}),
    ), quality


# ---------------------------------------------------------------- the whole document


def project_stats(db: Session, project: models.Project, *, graph_max_age: float = 0.0) -> ProjectStats:
    now = utcnow()
    dialect = db.get_bind().dialect.name
    state = get_state(project.id)
    state.refresh(db, max_age=graph_max_age)
    db.commit()  # the refresh's reads end here; the figures below read a fresh snapshot
    db.refresh(project)
    graph = graph_stats(db, state, project.id, now, dialect)
    trainer, quality = trainer_and_quality(db, project, now)
    edges = graph.positive_edges + graph.negative_edges
    held = held_back(db, project_id=project.id)
    return ProjectStats(
        generated_at=now, project=ProjectPublic.model_validate(project), items=len(state.item_ids),
        budget=budget_stats(db, project, now), throughput=throughput_stats(db, project.id, now, dialect),
        annotators=annotator_stats(db, project.id, now, dialect), graph=graph, trainer=trainer, quality=quality,
        oracle=OracleStats(name=project.oracle, target_match_share=project.target_match_share,
                           match_rate=graph.positive_edges / edges if edges else None, answer_edges=edges),
        feed_held_back=None if held is None else HeldBackOut(**asdict(held)),
    )


# ---------------------------------------------------------------- cluster browser


def _members(state: ProjectState, item: int) -> list[int]:
    return sorted(int(m) for m in state.graph.members(item))


def cluster_list(db: Session, project_id: int, *, limit: int, sample: int = 4) -> ClusterList:
    state = get_state(project_id)
    state.refresh(db, max_age=0)
    db.commit()
    sizes = state.graph.cluster_sizes()
    largest = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return ClusterList(
        known_clusters=len(sizes),
        clusters=[ClusterSummary(root=root, size=size, sample=_members(state, root)[:sample])
                  for root, size in largest],
    )


def cluster_items(db: Session, project_id: int, *, item: int, offset: int, limit: int) -> ClusterItems | None:
    """A page of the members of ``item``'s cluster; None when the item is not in the project."""
    state = get_state(project_id)
    state.refresh(db, max_age=0)
    db.commit()
    ids = state.item_ids  # ascending
    pos = int(np.searchsorted(ids, item))
    if pos >= len(ids) or int(ids[pos]) != item:
        return None
    members = _members(state, item)
    root = state.graph.find(item)
    return ClusterItems(root=root, size=len(members), offset=offset, limit=limit, items=members[offset:offset + limit])
