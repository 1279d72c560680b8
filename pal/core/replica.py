"""The one place where edge-feed rows become graph state.

The server's project state, the trainer and every benchmark hold a :class:`GraphReplica` and
feed it the rows of ``GET /projects/{id}/edges`` in feed order. ``answer`` and ``known`` rows add
an edge, ``retract`` rows withdraw edge ``retracts_id`` (for good: a late copy of the withdrawn
answer stays withdrawn). Consumption is idempotent: a row id seen before is ignored, so reading
a page twice never counts an edge twice.

Annotator reliability is an explicit choice: with ``weigh_annotators=True`` (the server's oracle,
the export) each row keeps its annotator and :meth:`GraphReplica.set_annotator_weight` scales
their votes; with ``False`` (the trainer, which learns from the votes as given) rows are applied
without their annotator, so every answer counts with its own weight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from pal.core.edges import EdgeKind, EdgeRecord
from pal.core.graph import KnowledgeGraph


class GraphReplica:
    """Feed rows in, a :class:`~pal.core.graph.KnowledgeGraph` out."""

    def __init__(self, *, weigh_annotators: bool = True, graph: KnowledgeGraph | None = None) -> None:
        self.graph = graph if graph is not None else KnowledgeGraph()
        self.weigh_annotators = weigh_annotators
        self.seen: set[int] = set()  # every consumed row id (relations and retractions)
        self.version = 0  # bumped by every apply that brought a new row

    @property
    def consumed(self) -> int:
        return len(self.seen)

    def apply(self, rows: Iterable[EdgeRecord]) -> int:
        """Consume feed rows in order; returns how many were new. A row the graph cannot hold (a
        retraction naming no edge, a sign other than +-1, a self-pair, a weight <= 0) raises
        ``ValueError`` naming the row; the rows before it stay applied."""
        new = 0
        with self.graph.lock:
            for row in rows:
                if row.id in self.seen:
                    continue
                if row.kind is EdgeKind.RETRACT:
                    if row.retracts_id is None:
                        raise ValueError(f"retract row {row.id} names no edge (retracts_id is None)")
                    self.graph.retract(row.retracts_id)
                else:
                    self.graph.add_record(row if self.weigh_annotators else dataclasses.replace(row, annotator_id=None))
                self.seen.add(row.id)
                new += 1
        if new:
            self.version += 1
        return new

    def set_annotator_weight(self, annotator: int, weight: float) -> None:
        """An annotator's reliability (their accuracy on controls). Ignored without
        ``weigh_annotators``: such a replica's rows carry no annotator."""
        if self.weigh_annotators:
            self.graph.set_annotator_weight(annotator, weight)

    # ------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays: the live edges (id order), the consumed row ids, the withdrawn edge ids."""
        with self.graph.lock:
            edges = self.graph.edges()
            retracted = sorted(self.graph.votes.retracted)
        return {
            "edge_ids": np.asarray([e.id for e in edges], dtype=np.int64),
            "edge_ends": np.asarray([[e.src, e.dst, e.sign] for e in edges], dtype=np.int64).reshape(-1, 3),
            "edge_weights": np.asarray([e.weight for e in edges], dtype=np.float64),
            "edge_annotators": np.asarray([-1 if e.annotator_id is None else e.annotator_id for e in edges],
                                          dtype=np.int64),
            "edge_known": np.asarray([e.kind is EdgeKind.KNOWN for e in edges], dtype=bool),
            "seen": np.asarray(sorted(self.seen), dtype=np.int64),
            "retracted": np.asarray(retracted, dtype=np.int64),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray], *, weigh_annotators: bool = True) -> GraphReplica:
        """The replica :meth:`state_dict` saved (its live edges re-added in id order)."""
        replica = cls(weigh_annotators=weigh_annotators)
        ids = np.asarray(state["edge_ids"]).tolist()
        ends = np.asarray(state["edge_ends"]).reshape(-1, 3).tolist()
        weights = np.asarray(state["edge_weights"]).tolist()
        annotators = np.asarray(state.get("edge_annotators", np.full(len(ids), -1))).tolist()
        known = np.asarray(state.get("edge_known", np.zeros(len(ids), dtype=bool))).tolist()
        graph = replica.graph
        for eid, (src, dst, sign), weight, who, is_known in zip(ids, ends, weights, annotators, known, strict=True):
            annotator = None if who < 0 or not weigh_annotators else int(who)
            kind = EdgeKind.KNOWN if is_known else EdgeKind.ANSWER
            graph.add_record(EdgeRecord(int(eid), int(src), int(dst), int(sign), float(weight), kind,
                                        annotator_id=annotator))
        for eid in np.asarray(state["retracted"]).tolist():
            graph.votes.retracted.add(int(eid))
        replica.seen = set(np.asarray(state["seen"]).tolist())
        replica.version = 1
        return replica


def align_rows(item_ids: np.ndarray, version_ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` (an embedding version whose rows follow ``version_ids``) reordered to
    ``item_ids``, L2-normalised; items the version lacks get zeros."""
    out = np.zeros((len(item_ids), vectors.shape[1]), dtype=np.float32)
    order = np.argsort(version_ids)
    sorted_ids = version_ids[order]
    pos = np.searchsorted(sorted_ids, item_ids)
    pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
    found = sorted_ids[pos] == item_ids if len(sorted_ids) else np.zeros(len(item_ids), dtype=bool)
    out[found] = vectors[order[pos[found]]]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
