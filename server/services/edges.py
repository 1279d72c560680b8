"""The edge feed: every committed edge exactly once, in commit order, even when transactions
commit out of id order.

PostgreSQL: each edge row carries the ``xid8`` of the transaction that wrote it. A page holds only
edges whose transaction id is below ``pg_snapshot_xmin(pg_current_snapshot())``: every transaction
below that horizon has finished, so no edge can later appear behind the cursor. Rows are ordered by
(txid, id) and the cursor is the last delivered (txid, id).

SQLite: writers are serialised (BEGIN IMMEDIATE), so ids are assigned in commit order and the id
alone is a correct cursor for one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.core.edges import EdgeKind, EdgeRecord
from pal.wire import format_cursor, parse_cursor
from server.db import is_postgres

_PG_PAGE = sa.text(
    """
    SELECT id, src, dst, sign, weight, kind, retracts_id, annotator_id, txid::text::bigint AS tx
      FROM edges
     WHERE project_id = :project_id
       AND txid < pg_snapshot_xmin(pg_current_snapshot())
       AND (txid > (:tx)::text::xid8 OR (txid = (:tx)::text::xid8 AND id > :after_id))
     ORDER BY txid, id
     LIMIT :limit
    """
)

_SQLITE_PAGE = sa.text(
    """
    SELECT id, src, dst, sign, weight, kind, retracts_id, annotator_id, 0 AS tx
      FROM edges
     WHERE project_id = :project_id AND id > :after_id
     ORDER BY id
     LIMIT :limit
    """
)


def edge_page(db: Session, *, project_id: int, cursor: str, limit: int) -> tuple[list[EdgeRecord], str, bool]:
    tx, after_id = parse_cursor(cursor)
    query = _PG_PAGE if is_postgres(db) else _SQLITE_PAGE
    rows = db.execute(
        query, {"project_id": project_id, "tx": tx, "after_id": after_id, "limit": limit + 1}
    ).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    edges = [
        EdgeRecord(id=r.id, src=r.src, dst=r.dst, sign=r.sign, weight=float(r.weight), kind=EdgeKind(r.kind),
                   retracts_id=r.retracts_id, annotator_id=r.annotator_id)
        for r in rows
    ]
    next_cursor = format_cursor(int(rows[-1].tx), int(rows[-1].id)) if rows else format_cursor(tx, after_id)
    return edges, next_cursor, has_more


# Committed rows the watermark still holds back: their transaction id is at or above the oldest
# transaction still running anywhere in the cluster (an index range scan on (project_id, txid, id)).
_PG_HELD = sa.text(
    """
    SELECT count(*) AS n, EXTRACT(EPOCH FROM now() - min(created_at)) AS oldest_s
      FROM edges
     WHERE project_id = :project_id AND txid >= pg_snapshot_xmin(pg_current_snapshot())
    """
)

# The oldest transaction that holds a transaction id, in any database of the cluster: it sets the
# watermark. (Visible to every role: pid, database, state and start time are not privileged.)
_PG_BLOCKER = sa.text(
    """
    SELECT pid, datname, state, EXTRACT(EPOCH FROM now() - xact_start) AS age_s
      FROM pg_stat_activity
     WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
     ORDER BY age(backend_xid) DESC
     LIMIT 1
    """
)


@dataclass(frozen=True)
class HeldBack:
    """Committed edges the feed cannot deliver yet, and the transaction that holds them back."""

    edges: int
    oldest_edge_age_s: float
    blocker_pid: int | None = None
    blocker_database: str | None = None
    blocker_state: str | None = None
    blocker_age_s: float | None = None


def held_back(db: Session, *, project_id: int) -> HeldBack | None:
    """On PostgreSQL, the project's committed edges below no watermark yet (None when there are
    none, and always on SQLite, whose feed never holds rows back). A transaction left open in any
    database of the cluster holds every new edge back until it ends: this names it."""
    if not is_postgres(db):
        return None
    row = db.execute(_PG_HELD, {"project_id": project_id}).one()
    if not row.n:
        return None
    blocker = db.execute(_PG_BLOCKER).first()
    return HeldBack(
        edges=int(row.n), oldest_edge_age_s=round(float(row.oldest_s or 0.0), 3),
        blocker_pid=None if blocker is None else int(blocker.pid),
        blocker_database=None if blocker is None else blocker.datname,
        blocker_state=None if blocker is None else blocker.state,
        blocker_age_s=None if blocker is None or blocker.age_s is None else round(float(blocker.age_s), 3),
    )


def iter_edges(db: Session, *, project_id: int, cursor: str, page: int = 5000) -> Iterator[tuple[EdgeRecord, str]]:
    """All edges after ``cursor`` visible now, with the cursor after each page."""
    while True:
        edges, cursor, has_more = edge_page(db, project_id=project_id, cursor=cursor, limit=page)
        for e in edges:
            yield e, cursor
        if not has_more:
            return
