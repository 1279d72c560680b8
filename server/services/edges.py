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


def iter_edges(db: Session, *, project_id: int, cursor: str, page: int = 5000) -> Iterator[tuple[EdgeRecord, str]]:
    """All edges after ``cursor`` visible now, with the cursor after each page."""
    while True:
        edges, cursor, has_more = edge_page(db, project_id=project_id, cursor=cursor, limit=page)
        for e in edges:
            yield e, cursor
        if not has_more:
            return
