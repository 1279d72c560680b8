"""The label-inference study: the model weighs annotators by how often they are right, and reads
the snapshots the label-efficiency runs keep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pal.core.graph import KnowledgeGraph
from research.label_inference import compare, infer, start_from_export

pytestmark = pytest.mark.research


def three_kinds(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60 items of 3 kinds, 20 each, whose vectors sit around 3 directions."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(3), 20)
    centres = np.eye(8)[:3] * 3.0
    vectors = (centres[truth] + rng.normal(0, 1.0, (60, 8))).astype(np.float32)
    return np.arange(100, 160, dtype=np.int64), truth, vectors


def marks(truth: np.ndarray, ids: np.ndarray, seed: int = 1) -> list[tuple[int, int, int, int, float, int]]:
    """Careful annotators 1-3 mark 150 random pairs right; annotator 9 marks 150 at random."""
    rng = np.random.default_rng(seed)
    rows = []
    eid = 0
    for who in (1, 2, 3, 9):
        for _ in range(150):
            a, b = rng.choice(len(ids), 2, replace=False)
            sign = (1 if truth[a] == truth[b] else -1) if who != 9 else int(rng.choice([-1, 1]))
            eid += 1
            rows.append((eid, int(ids[a]), int(ids[b]), sign, 1.0, who))
    return rows


def test_model_finds_the_spammer_and_the_kinds() -> None:
    ids, truth, vectors = three_kinds()
    graph = KnowledgeGraph.from_edges(marks(truth, ids))
    with graph.lock:
        export, conf = graph.cluster_assignment(ids, vectors)
        model = infer(graph.votes, graph.clusters, ids, vectors, prior_strength=1.0,
                      start=start_from_export(export, conf), splits=0)
    careful = [model.accuracy[w] for w in (1, 2, 3)]
    assert min(careful) > 0.85
    assert model.accuracy[9] < min(careful) - 0.2
    from pal import metrics

    assert metrics.label_accuracy(model.labels, truth) >= 0.9
    assert model.marks == {1: 150, 2: 150, 3: 150, 9: 150}


def test_compare_reads_a_snapshot(tmp_path: Path) -> None:
    ids, truth, vectors = three_kinds()
    rows = marks(truth, ids)
    edges = np.asarray([(eid, s, d, sign, 0, who, -1) for eid, s, d, sign, _, who in rows], dtype=np.int64)
    path = tmp_path / "snap.npz"
    np.savez(path, edges=edges, weights=np.ones(len(rows)), item_ids=ids, vectors=vectors,
             train_ids=ids, train_labels=truth)
    row = compare(path)
    assert row["model"] >= 0.9 and 0.0 < row["model_confidence"] <= 1.0
    assert row["rho_9"] < row["rho_1"]
