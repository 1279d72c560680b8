"""Quality of an embedding version against the project's hidden labels (when it has any).

Computed on the server, where the labels live, so the trainer never sees them."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models

MAX_EVAL_ITEMS = 20_000
# Scores against the hidden labels: for admins (stats, dashboard) only. A trainer that read them back
# after each upload could probe the labels by uploading crafted vectors (docs/operations.md).
HIDDEN_LABEL_METRICS = frozenset({"knn_accuracy", "cluster_accuracy"})


def without_hidden_label_metrics(metrics: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in metrics.items() if key not in HIDDEN_LABEL_METRICS}


def evaluate_embedding(db: Session, *, project_id: int, ids: np.ndarray, vectors: np.ndarray) -> dict[str, float]:
    from pal import metrics

    rows = db.execute(
        sa.select(models.Item.id, models.Item.label, models.Item.split).where(
            models.Item.project_id == project_id, models.Item.label.is_not(None)
        )
    ).all()
    if not rows:
        return {}
    index = {int(i): n for n, i in enumerate(ids)}
    labelled = [(index[r.id], r.label, r.split) for r in rows if r.id in index]
    if len(labelled) < 10:
        return {}
    classes = sorted({lab for _, lab, _ in labelled})
    code = {c: n for n, c in enumerate(classes)}
    pos = np.array([p for p, _, _ in labelled])
    y = np.array([code[lab] for _, lab, _ in labelled])
    is_test = np.array([s == "test" for _, _, s in labelled])
    if not is_test.any() or is_test.all():
        # No split: hold out every fifth labelled item for the kNN probe.
        is_test = np.arange(len(pos)) % 5 == 0
    rng = np.random.default_rng(0)
    test = np.flatnonzero(is_test)
    train = np.flatnonzero(~is_test)
    if len(test) > MAX_EVAL_ITEMS:
        test = rng.choice(test, MAX_EVAL_ITEMS, replace=False)
    if len(train) > 4 * MAX_EVAL_ITEMS:
        train = rng.choice(train, 4 * MAX_EVAL_ITEMS, replace=False)
    x = vectors[pos].astype(np.float32)
    out: dict[str, float] = {
        "knn_accuracy": float(metrics.knn_accuracy(x[train], y[train], x[test], y[test], k=20)),
        "cluster_accuracy": float(metrics.cluster_accuracy(x[test], y[test], seed=0)),
    }
    return out
