"""The dashboard's annotator quality: estimated once per graph state, members without answers listed."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.orm import Session

from pal.core import annotator_quality as core
from server.schemas import KnownLabelIn
from server.services import annotator_quality
from server.services.known_labels import add_known_labels
from server.services.project_state import forget_states
from tests.support import item_labels, make_project, make_user


def test_estimate_is_cached_until_the_graph_moves(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    forget_states()  # project ids repeat across the two test databases: start from no cached state
    member = make_user(db, "annotator")
    pid = make_project(db, n_items=8, members=[member])
    calls: list[int] = []

    def counting(*args: object, **kwargs: object) -> list[core.AnnotatorQuality]:
        calls.append(1)
        return core.estimate_quality(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(annotator_quality, "estimate_quality", counting)
    first = annotator_quality.annotator_quality(db, pid)
    again = annotator_quality.annotator_quality(db, pid)
    assert len(calls) == 1 and first == again
    assert [(q.user_id, q.member, q.edges, q.decided, q.flagged) for q in first] == [(member.id, True, 0, 0, False)]
    a, b = sorted(item_labels(db, pid))[:2]
    add_known_labels(db, pid, [KnownLabelIn(item_id=a, label="x"), KnownLabelIn(item_id=b, label="x")], None)
    # The graph has a new edge: estimated again (once the PostgreSQL feed's watermark lets it through,
    # which an open transaction elsewhere in the cluster may delay).
    for _ in range(100):
        annotator_quality.annotator_quality(db, pid)
        if len(calls) > 1:
            break
        time.sleep(0.1)
    assert len(calls) == 2
