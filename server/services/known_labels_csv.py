"""Known labels from a CSV file: a ``label`` column and an ``item_id`` or a ``source`` column (the
name an item was imported under, e.g. its file name). Used by ``pal known-labels`` and by the
dashboard's upload (``POST /projects/{id}/known-labels/file``)."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from server import models
from server.errors import ApiError
from server.schemas import KnownLabelIn

MAX_ROWS = 10_000


def parse_known_labels(db: Session, project_id: int, text: str) -> list[KnownLabelIn]:
    """The file's rows as known labels; raises :class:`ApiError` (422) naming the line of the
    first bad row, or ``columns`` when the header lacks what is needed."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = {c.strip() for c in reader.fieldnames or ()}
    if "label" not in columns or not columns & {"item_id", "source"}:
        raise ApiError(422, "bad_csv", "the CSV needs a 'label' column and an 'item_id' or 'source' column",
                       field="columns")
    rows = [{(k or "").strip(): (v or "") for k, v in r.items()} for r in reader]
    if not rows:
        raise ApiError(422, "bad_csv", "the CSV has no rows", field="rows")
    if len(rows) > MAX_ROWS:
        raise ApiError(422, "bad_csv", f"the CSV has {len(rows)} rows; at most {MAX_ROWS} at a time", field="rows")
    by_id = "item_id" in columns
    by_source: dict[str, int] = {}
    if not by_id:
        wanted = sorted({r["source"].strip() for r in rows})
        for start in range(0, len(wanted), 500):
            for item_id, source in db.execute(sa.select(models.Item.id, models.Item.source).where(
                    models.Item.project_id == project_id, models.Item.source.in_(wanted[start : start + 500]))):
                by_source[source] = int(item_id)
    out = []
    for line, r in enumerate(rows, start=2):
        if by_id:
            raw = r["item_id"].strip()
            if not raw.isdigit():
                raise ApiError(422, "bad_csv", f"line {line}: item_id {raw!r} is not a number", field=f"line {line}")
            item = int(raw)
        else:
            source = r["source"].strip()
            if source not in by_source:
                raise ApiError(422, "unknown_item", f"line {line}: no item imported as {source!r}",
                               field=f"line {line}")
            item = by_source[source]
        try:
            out.append(KnownLabelIn(item_id=item, label=r["label"].strip()))
        except ValidationError as exc:
            raise ApiError(422, "bad_csv", f"line {line}: label: {exc.errors()[0]['msg']}",
                           field=f"line {line}") from exc
    return out
