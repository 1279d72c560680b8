"""Per-process cache of what the oracle needs: item ids, the knowledge graph, the current embedding.

Every server process keeps its own copy and catches up from the database through the same edge
feed the trainer reads (so it sees exactly the committed edges, in commit order) before every
selection. The item list, a new embedding version and the annotator weights are re-read when the
last re-read is older than ``graph_refresh_seconds`` (the next claim after that), without a
restart. Built from the edges table on first use, so it survives restarts."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.core.graph import KnowledgeGraph
from pal.core.oracle import OracleCache
from pal.core.replica import GraphReplica, align_rows
from pal.wire import START_CURSOR, decode_npy
from server import models
from server.services.edges import edge_page
from server.services.images import load_pixels
from server.services.reliability import gold_tallies, reliability_weight

FEATURE_SIZE = 16
RELIABILITY_SECONDS = 30.0  # annotator weights move slowly; recomputing them on every claim is waste


@dataclass
class ProjectState:
    project_id: int
    item_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    replica: GraphReplica = field(default_factory=lambda: GraphReplica(weigh_annotators=True))
    cursor: str = START_CURSOR
    edges_seen: int = 0
    embedding_id: int | None = None
    embedding: np.ndarray | None = None
    pixel_features: np.ndarray | None = None
    refreshed_at: float = 0.0
    weighed_at: float = 0.0
    lock: threading.RLock = field(default_factory=threading.RLock)
    oracle_cache: OracleCache = field(default_factory=OracleCache)
    rng: np.random.Generator | None = None  # the oracle's draws: one stream per project and process

    @property
    def graph(self) -> KnowledgeGraph:
        return self.replica.graph

    def oracle_rng(self, seed: int | None) -> np.random.Generator:
        """The project's random stream, created on first use: seeded with ``(seed, project id)`` when a
        seed is set, so the same claims in the same order draw the same grids; else fresh entropy."""
        if self.rng is None:
            self.rng = np.random.default_rng(None if seed is None else [seed, self.project_id])
        return self.rng

    def refresh(self, db: Session, *, max_age: float, force: bool = False) -> None:
        with self.lock:
            # Edges on every call: one indexed query when nothing is new, and a grid chosen from a
            # stale graph asks again what other annotators have just answered (with dozens of people
            # at once, a 2 s old graph split the kinds over many more clusters).
            self._catch_up_edges(db)
            if not force and time.monotonic() - self.refreshed_at < max_age:
                return
            self._refresh_items(db)
            self._catch_up_edges(db)  # edges of items that the refreshed item list has just added
            self._refresh_embedding(db)
            # max_age 0 asks for an always-current view: annotator weights too, not every 30 s of wall
            # time (which would make the grids of a reproducible run depend on its speed)
            self._refresh_annotator_weights(db, force=force or max_age <= 0)
            self.refreshed_at = time.monotonic()

    def _refresh_items(self, db: Session) -> None:
        count = db.scalar(sa.select(sa.func.count()).where(models.Item.project_id == self.project_id)) or 0
        if count != len(self.item_ids):
            ids = db.execute(
                sa.select(models.Item.id).where(models.Item.project_id == self.project_id).order_by(models.Item.id)
            ).scalars().all()
            self.item_ids = np.asarray(ids, dtype=np.int64)
            self.pixel_features = None
            self.embedding_id = None  # re-align the embedding to the new item list

    def _catch_up_edges(self, db: Session) -> None:
        while True:
            edges, cursor, has_more = edge_page(db, project_id=self.project_id, cursor=self.cursor, limit=5000)
            self.replica.apply(edges)
            self.edges_seen += len(edges)
            self.cursor = cursor
            if not has_more:
                return

    def _refresh_annotator_weights(self, db: Session, *, force: bool) -> None:
        if not force and time.monotonic() - self.weighed_at < RELIABILITY_SECONDS:
            return
        for annotator, (right, total) in gold_tallies(db, project_id=self.project_id).items():
            self.replica.set_annotator_weight(annotator, reliability_weight(right, total))
        self.weighed_at = time.monotonic()

    def _refresh_embedding(self, db: Session) -> None:
        current = db.scalar(sa.select(models.Project.current_embedding_id).where(models.Project.id == self.project_id))
        if current is None or current == self.embedding_id:
            return
        version = db.get(models.EmbeddingVersion, current)
        if version is None:
            return
        ids = decode_npy(version.item_ids).astype(np.int64)
        vectors = decode_npy(version.vectors).astype(np.float32)
        self.embedding = align_rows(self.item_ids, ids, vectors)
        self.embedding_id = current

    def ensure_pixel_features(self, db: Session) -> np.ndarray:
        """Cheap pixel-space features for cold start, computed once per item list."""
        with self.lock:
            if self.pixel_features is None or len(self.pixel_features) != len(self.item_ids):
                from pal.core.oracle.coldstart import pixel_features

                images = np.zeros((len(self.item_ids), FEATURE_SIZE, FEATURE_SIZE), dtype=np.uint8)
                index = {int(i): n for n, i in enumerate(self.item_ids)}
                rows = db.execute(
                    sa.select(models.Item.id, models.Item.data).where(models.Item.project_id == self.project_id)
                )
                for item_id, data in rows:
                    if item_id in index:
                        images[index[item_id]] = load_pixels(data, size=FEATURE_SIZE, channels=1)[:, :, 0]
                self.pixel_features = pixel_features(images)
            return self.pixel_features


_states: dict[int, ProjectState] = {}
_states_lock = threading.Lock()


def get_state(project_id: int) -> ProjectState:
    with _states_lock:
        state = _states.get(project_id)
        if state is None:
            state = _states[project_id] = ProjectState(project_id=project_id)
        return state


def forget_states() -> None:
    with _states_lock:
        _states.clear()
