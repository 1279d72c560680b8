"""Embeddings you bring: vectors computed elsewhere (CLIP, a lab's own model) published as a
version of the project's embedding, which the oracle uses from its next grid and the trainer can
take as frozen inputs (``pal train --backbone features``).

Rows are matched to items by an index CSV with an ``item_id`` or a ``source`` column (the name an
item was imported under), one line per row of the vectors; without an index the rows follow the
project's items in id order. Any bad input (a file that is not a 2-D float .npy, a row with NaN or
infinity, an unknown or repeated item) is refused with a 422 naming the row or line, and nothing is
stored. Used by ``pal embeddings import`` and ``POST /projects/{id}/embeddings/import``."""

from __future__ import annotations

import csv
import io

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.wire import decode_npy
from server import models
from server.errors import ApiError
from server.schemas import EmbeddingMeta
from server.services.embeddings import MAX_DIM, store_version

SOURCE_BATCH = 500


def parse_vectors(raw: bytes) -> np.ndarray:
    """float32 (N, D) from a .npy of any float dtype; 422 naming the first row that is not finite."""
    try:
        vectors = decode_npy(raw)
    except (ValueError, OSError, EOFError) as exc:
        raise ApiError(422, "invalid_npy", f"vectors is not a readable .npy: {exc}", field="vectors") from exc
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise ApiError(422, "invalid_shape", f"vectors must be a float (N, D) array, got {vectors.dtype} "
                       f"{vectors.shape}", field="vectors")
    if not (vectors.shape[0] >= 1 and 1 <= vectors.shape[1] <= MAX_DIM):
        raise ApiError(422, "invalid_shape", f"vectors must have at least one row and 1..{MAX_DIM} columns, got "
                       f"{vectors.shape}", field="vectors")
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise ApiError(422, "invalid_values", f"row {int(bad[0])} of vectors has NaN or infinity "
                       f"({len(bad)} such rows)", field=f"vectors row {int(bad[0])}")
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _project_ids(db: Session, project_id: int) -> np.ndarray:
    return np.asarray(db.execute(sa.select(models.Item.id).where(models.Item.project_id == project_id)
                                 .order_by(models.Item.id)).scalars().all(), dtype=np.int64)


def _by_source(db: Session, project_id: int, sources: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    wanted = sorted(set(sources))
    for start in range(0, len(wanted), SOURCE_BATCH):
        found.update((s, int(i)) for i, s in db.execute(sa.select(models.Item.id, models.Item.source).where(
            models.Item.project_id == project_id, models.Item.source.in_(wanted[start : start + SOURCE_BATCH]))))
    return found


def parse_index(db: Session, project_id: int, text: str, n_rows: int) -> np.ndarray:
    """Item id of each row of the vectors, from the index CSV; 422 naming the line of the first
    unknown or repeated item, or the count when lines and rows differ."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = {(c or "").strip() for c in reader.fieldnames or ()}
    key = "item_id" if "item_id" in columns else "source" if "source" in columns else None
    if key is None:
        raise ApiError(422, "bad_csv", "the index needs an 'item_id' or a 'source' column", field="index")
    values = [((r.get(key) or "").strip()) for r in ({(k or "").strip(): v for k, v in row.items()} for row in reader)]
    if len(values) != n_rows:
        raise ApiError(422, "row_count", f"the index has {len(values)} lines for {n_rows} rows of vectors",
                       field="index")
    known = set(_project_ids(db, project_id).tolist())
    mapping = _by_source(db, project_id, values) if key == "source" else {}
    ids = np.empty(n_rows, dtype=np.int64)
    first_line: dict[int, int] = {}
    for row, value in enumerate(values):
        line = row + 2
        item = mapping.get(value) if key == "source" else (int(value) if value.isdigit() else None)
        if item is None or item not in known:
            raise ApiError(422, "unknown_item", f"line {line}: no item of project {project_id} is {key} {value!r}",
                           field=f"index line {line}")
        if item in first_line:
            raise ApiError(422, "repeated_item", f"line {line}: item {item} was already given on line "
                           f"{first_line[item]}", field=f"index line {line}")
        first_line[item] = line
        ids[row] = item
    return ids


def import_embedding(db: Session, *, project: models.Project, vectors_raw: bytes, index_text: str | None
                     ) -> models.EmbeddingVersion:
    """Validate everything, then publish one version (nothing is stored when anything is wrong)."""
    vectors = parse_vectors(vectors_raw)
    if index_text is None:
        ids = _project_ids(db, project.id)
        if len(ids) != len(vectors):
            raise ApiError(422, "row_count", f"vectors has {len(vectors)} rows but project {project.id} has "
                           f"{len(ids)} items; give an index to match rows to items", field="vectors")
    else:
        ids = parse_index(db, project.id, index_text, len(vectors))
    meta = EmbeddingMeta(metrics={"source": "import"})
    return store_version(db, project=project, ids=ids, vectors=vectors, meta=meta)
