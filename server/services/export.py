"""What a project exports: edges, the current embedding, cluster labels and a manifest.

Files (the same from the HTTP routes and from ``pal export``):

- ``edges.csv``: every edge row, append order (``id``): id, src, dst, sign, weight, kind,
  retracts_id, annotator_id, answer_id, created_at. ``kind='retract'`` rows withdraw ``retracts_id``.
- ``embeddings.npy``: the current embedding version, float32 (N, D), rows as the trainer sent them.
- ``embedding_index.csv``: row, item_id, source: which item each row of ``embeddings.npy`` is.
- ``clusters.csv``: item_id, source, cluster, confidence, known: every item's cluster. Items in a
  known cluster of the knowledge graph (>= 2 items joined by + answers) get its label (0 is the
  largest) with ``known=1``. An item in no cluster whose split votes ("same" 2-1) all lean to one
  cluster takes that cluster (``known=0``, confidence = the votes' winning share). The others take
  the vote of their nearest labelled neighbours in the current embedding (``known=0``, confidence
  = the vote's share times the neighbours' confidence), or ``cluster=-1`` when there is no
  embedding to vote with.
- ``manifest.json``: project settings, counts, the embedding version, each file's size, rows and
  sha256.

Hidden ground-truth labels (``items.label``) are never written: the exports are what PAL learned.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from pal import __version__
from pal.wire import decode_npy
from server import models
from server.services.csv_cells import SafeWriter
from server.services.project_state import get_state
from server.timeutil import as_utc, utcnow

EDGE_COLUMNS = ("id", "src", "dst", "sign", "weight", "kind", "retracts_id", "annotator_id", "answer_id",
                "created_at")
INDEX_COLUMNS = ("row", "item_id", "source")
CLUSTER_COLUMNS = ("item_id", "source", "cluster", "confidence", "known")
FILES = ("edges.csv", "embeddings.npy", "embedding_index.csv", "clusters.csv")
EDGE_PAGE = 5000


@dataclass(frozen=True)
class FileInfo:
    name: str
    bytes: int
    rows: int
    sha256: str


def _csv_bytes(rows: list[tuple[Any, ...]] | list[list[Any]], header: tuple[str, ...] | None = None) -> bytes:
    buf = io.StringIO()
    writer = SafeWriter(buf, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def _iso(value: datetime | None) -> str:
    return as_utc(value).isoformat() if value is not None else ""


# --------------------------------------------------------------------------- edges

def max_edge_id(db: Session, project_id: int) -> int:
    return int(db.scalar(sa.select(sa.func.max(models.Edge.id)).where(models.Edge.project_id == project_id)) or 0)


def count_edges(db: Session, project_id: int, upto_id: int) -> int:
    return int(db.scalar(
        sa.select(sa.func.count()).select_from(models.Edge)
        .where(models.Edge.project_id == project_id, models.Edge.id <= upto_id)
    ) or 0)


def iter_edges_csv(sessions: sessionmaker[Session], *, project_id: int, upto_id: int,
                   page: int = EDGE_PAGE) -> Iterator[bytes]:
    """The CSV in chunks of ``page`` rows. Each page is its own short transaction (a slow download
    holds no lock and no snapshot); ``upto_id``, read when the export started, bounds the rows so the
    file is the project's edges at that moment even while annotators keep answering."""
    e = models.Edge
    yield _csv_bytes([], EDGE_COLUMNS)
    after = 0
    while True:
        with sessions() as db:
            rows = db.execute(
                sa.select(e.id, e.src, e.dst, e.sign, e.weight, e.kind, e.retracts_id, e.annotator_id, e.answer_id,
                          e.created_at)
                .where(e.project_id == project_id, e.id > after, e.id <= upto_id)
                .order_by(e.id).limit(page)
            ).all()
            db.rollback()
        if not rows:
            return
        after = int(rows[-1][0])
        yield _csv_bytes([
            (r[0], r[1], r[2], r[3], repr(float(r[4])), r[5], "" if r[6] is None else r[6],
             "" if r[7] is None else r[7], "" if r[8] is None else r[8], _iso(r[9]))
            for r in rows
        ])
        if len(rows) < page:
            return


# --------------------------------------------------------------------------- embedding

def current_embedding(db: Session, project: models.Project) -> models.EmbeddingVersion | None:
    if project.current_embedding_id is None:
        return None
    return db.get(models.EmbeddingVersion, project.current_embedding_id)


def embedding_npy(version: models.EmbeddingVersion) -> bytes:
    """The stored blob is already a float32 (N, D) .npy, written whole by the trainer's upload."""
    return version.vectors


def _sources(db: Session, project_id: int) -> dict[int, str]:
    rows = db.execute(sa.select(models.Item.id, models.Item.source).where(models.Item.project_id == project_id))
    return {int(i): s for i, s in rows}


def embedding_index_csv(db: Session, version: models.EmbeddingVersion) -> tuple[bytes, int]:
    ids = decode_npy(version.item_ids).astype(np.int64)
    sources = _sources(db, version.project_id)
    rows = [(n, int(i), sources.get(int(i), "")) for n, i in enumerate(ids.tolist())]
    return _csv_bytes(rows, INDEX_COLUMNS), len(rows)


# --------------------------------------------------------------------------- clusters

def cluster_table(db: Session, project_id: int) -> list[tuple[int, str, int, float, int]]:
    """(item_id, source, cluster, confidence, known) for every item, from this process's up-to-date
    copy of the knowledge graph and the current embedding."""
    state = get_state(project_id)
    state.refresh(db, max_age=0)
    with state.lock:
        ids = state.item_ids.copy()
        embedding = None if state.embedding is None else state.embedding.copy()
        graph = state.graph
        with graph.lock:
            known_items = {x for members in graph.components(min_size=2).values() for x in members}
            labels, confidence = graph.cluster_assignment(ids, embedding)
    known = np.asarray([int(x) in known_items for x in ids.tolist()], dtype=bool)
    if embedding is not None and len(ids):
        # Items the current version does not cover have zero rows: they cannot vote or be voted for.
        missing = ~known & (np.linalg.norm(embedding, axis=1) == 0)
        labels = np.where(missing, -1, labels)
        confidence = np.where(missing, 0.0, confidence)
    sources = _sources(db, project_id)
    return [
        (int(i), sources.get(int(i), ""), int(c), round(float(p), 6), int(k))
        for i, c, p, k in zip(ids.tolist(), labels.tolist(), confidence.tolist(), known.tolist(), strict=True)
    ]


def clusters_csv(db: Session, project_id: int) -> tuple[bytes, int]:
    rows = cluster_table(db, project_id)
    return _csv_bytes(rows, CLUSTER_COLUMNS), len(rows)


# --------------------------------------------------------------------------- manifest

def project_counts(db: Session, project_id: int, upto_edge_id: int) -> dict[str, int]:
    m = models

    def count(query: sa.Select[Any]) -> int:
        return int(db.scalar(query) or 0)

    edges_by_kind = dict(db.execute(
        sa.select(m.Edge.kind, sa.func.count()).where(m.Edge.project_id == project_id, m.Edge.id <= upto_edge_id)
        .group_by(m.Edge.kind)
    ).all())
    return {
        "items": count(sa.select(sa.func.count()).select_from(m.Item).where(m.Item.project_id == project_id)),
        "tasks": count(sa.select(sa.func.count()).select_from(m.Task).where(m.Task.project_id == project_id)),
        "answers": count(sa.select(sa.func.count()).select_from(m.Answer).where(
            m.Answer.project_id == project_id, m.Answer.undone_at.is_(None))),
        "answers_undone": count(sa.select(sa.func.count()).select_from(m.Answer).where(
            m.Answer.project_id == project_id, m.Answer.undone_at.is_not(None))),
        "edges": sum(int(v) for v in edges_by_kind.values()),
        "answer_edges": int(edges_by_kind.get("answer", 0)),
        "retract_edges": int(edges_by_kind.get("retract", 0)),
    }


def build_manifest(db: Session, project: models.Project, *, upto_edge_id: int,
                   version: models.EmbeddingVersion | None, files: list[FileInfo],
                   clusters: list[tuple[int, str, int, float, int]] | None = None) -> dict[str, Any]:
    counts = project_counts(db, project.id, upto_edge_id)
    if clusters is not None:
        counts["known_clusters"] = len({c for _i, _s, c, _p, k in clusters if k})
        counts["items_in_known_clusters"] = sum(1 for row in clusters if row[4])
        counts["items_assigned"] = sum(1 for row in clusters if row[2] >= 0)
    return {
        "format": "pal-export/1",
        "pal_version": __version__,
        "exported_at": utcnow().isoformat(),
        "project": {
            "id": project.id, "name": project.name, "description": project.description,
            "n_candidates": project.n_candidates, "redundancy": project.redundancy, "gold_rate": project.gold_rate,
            "oracle": project.oracle, "target_match_share": project.target_match_share,
            "budget_cap": project.budget_cap, "budget_spent": project.budget_spent, "paused": project.paused,
            "created_at": _iso(project.created_at),
        },
        "counts": counts,
        "edges_upto_id": upto_edge_id,
        "embedding": None if version is None else {
            "id": version.id, "version": version.version, "dim": version.dim, "n_items": version.n_items,
            "created_at": _iso(version.created_at), "answers_at_upload": version.answers_at_upload,
            "metrics": version.metrics,
        },
        "files": [asdict(f) for f in files],
    }


def manifest_json(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode()


# --------------------------------------------------------------------------- everything at once

Progress = Callable[[str, int, int | None], None]  # (step, advance, total)


def export_all(sessions: sessionmaker[Session], *, project_id: int,
               sink: Callable[[str, Iterator[bytes]], None], progress: Progress | None = None) -> dict[str, Any]:
    """Produce every file through ``sink(name, chunks)`` and return the manifest (also sunk last).
    ``sink`` consumes the chunks (write them, hash them, ...)."""
    note = progress or (lambda _step, _n, _total: None)
    files: list[FileInfo] = []

    def emit(name: str, chunks: Iterator[bytes] | list[bytes], rows: int | None = None) -> None:
        digest, size, lines = hashlib.sha256(), 0, 0

        def tee() -> Iterator[bytes]:
            nonlocal size, lines
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                n = chunk.count(b"\n")
                lines += n
                if name == "edges.csv":
                    note("edges", n, None)
                yield chunk

        sink(name, tee())
        files.append(FileInfo(name=name, bytes=size, rows=rows if rows is not None else max(lines - 1, 0),
                              sha256=digest.hexdigest()))

    with sessions() as db:
        project = db.get(models.Project, project_id)
        if project is None:
            raise LookupError(f"project {project_id} not found")
        upto = max_edge_id(db, project_id)
        total_edges = count_edges(db, project_id, upto)
        db.rollback()
    note("edges", 0, total_edges + 1)
    emit("edges.csv", iter_edges_csv(sessions, project_id=project_id, upto_id=upto), rows=total_edges)
    with sessions() as db:
        project = db.get(models.Project, project_id)
        assert project is not None
        version = current_embedding(db, project)
        if version is not None:
            note("embedding", 0, 2)
            emit("embeddings.npy", [embedding_npy(version)], rows=version.n_items)
            note("embedding", 1, None)
            index, n_rows = embedding_index_csv(db, version)
            emit("embedding_index.csv", [index], rows=n_rows)
            note("embedding", 1, None)
        note("clusters", 0, 1)
        clusters = cluster_table(db, project_id)
        emit("clusters.csv", [_csv_bytes(clusters, CLUSTER_COLUMNS)], rows=len(clusters))
        note("clusters", 1, None)
        manifest = build_manifest(db, project, upto_edge_id=upto, version=version, files=files, clusters=clusters)
        db.rollback()
    sink("manifest.json", iter([manifest_json(manifest)]))
    return manifest


def write_export(sessions: sessionmaker[Session], *, project_id: int, out_dir: Path,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Write every file into ``out_dir`` (created); each file is written to a temporary name and
    renamed, so a folder never holds a half-written file under its final name."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def sink(name: str, chunks: Iterator[bytes]) -> None:
        tmp = out_dir / f".{name}.partial"
        with tmp.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        tmp.replace(out_dir / name)

    return export_all(sessions, project_id=project_id, sink=sink, progress=progress)
