"""Known labels from CSV text: by item id or by import name, every bad row named by its line."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.errors import ApiError
from server.services.known_labels_csv import parse_known_labels
from tests.support import make_project


def _items(db: Session, pid: int) -> list[tuple[int, str]]:
    rows = db.execute(sa.select(models.Item.id, models.Item.source).where(models.Item.project_id == pid)
                      .order_by(models.Item.id))
    return [(int(i), str(s)) for i, s in rows]


def test_rows_by_item_id_or_by_source(db: Session) -> None:
    pid = make_project(db, n_items=3)
    (a, sa_), (b, sb) = _items(db, pid)[:2]
    by_id = parse_known_labels(db, pid, f"\ufeffitem_id,label\n{a},cat\n{b}, dog \n")
    by_source = parse_known_labels(db, pid, f"source , label\n{sa_},cat\n{sb},dog\n")
    assert [(k.item_id, k.label) for k in by_id] == [(a, "cat"), (b, "dog")]
    assert [(k.item_id, k.label) for k in by_source] == [(a, "cat"), (b, "dog")]


@pytest.mark.parametrize(("text", "field"), [
    ("id,label\n1,a\n", "columns"),
    ("item_id,label\n", "rows"),
    ("item_id,label\n1,a\nx,a\n", "line 3"),
    ("item_id,label\n1,\n", "line 2"),
    ("source,label\nno-such-image.png,a\n", "line 2"),
])
def test_bad_files_name_the_first_bad_row(db: Session, text: str, field: str) -> None:
    pid = make_project(db, n_items=2)
    with pytest.raises(ApiError) as err:
        parse_known_labels(db, pid, text)
    assert err.value.status == 422 and err.value.field == field
