"""The dashboard's annotator quality panel in a real Chromium: a spammer among careful annotators is
flagged, and the Exclude button (after its confirmation) withdraws their edges; Include lifts it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import item_labels, make_project, make_user
from tests.webui.conftest import Watched
from tests.webui.helpers import answer_truthfully

pytestmark = pytest.mark.browser


def _live_edges(db: Session, pid: int, user_id: int) -> int:
    db.expire_all()
    retracted = set(db.execute(sa.select(models.Edge.retracts_id).where(
        models.Edge.project_id == pid, models.Edge.kind == "retract")).scalars())
    ids = db.execute(sa.select(models.Edge.id).where(
        models.Edge.project_id == pid, models.Edge.annotator_id == user_id, models.Edge.kind == "answer")).scalars()
    return sum(1 for e in ids if e not in retracted)


def test_panel_flags_a_spammer_and_excludes_them(
    open_context: Callable[..., Watched], web_db: Session, web_server: LiveServer,
) -> None:
    admin = make_user(web_db, "admin")
    careful = [make_user(web_db, "annotator") for _ in range(3)]
    spammer = make_user(web_db, "annotator")
    pid = make_project(web_db, n_items=60, members=[*careful, spammer], budget_cap=1000)
    labels = item_labels(web_db, pid)
    for turn in range(4):  # in turns, so everyone's marks land in the same graph
        for n, actor in enumerate([*careful, spammer]):
            with web_server.client(actor.token) as client:
                answer_truthfully(client, pid, labels, 5, error_rate=0.5 if actor is spammer else 0.0,
                                  seed=10 * turn + n)
    assert _live_edges(web_db, pid, spammer.id) == 160

    ctx = open_context()
    ctx.login(admin.email)
    page = ctx.page()
    page.goto(f"/admin/projects/{pid}?poll_ms=1000")
    row = page.locator(f'#quality-body tr[data-user-id="{spammer.id}"]')
    row.locator(".pill.flagged").wait_for(timeout=20_000)
    assert "(" in row.locator("td.accuracy").inner_text()  # "0.55 (0.47–0.62)"
    for actor in careful:
        other = page.locator(f'#quality-body tr[data-user-id="{actor.id}"]')
        assert other.locator(".pill.flagged").count() == 0
        assert float(other.locator("td.accuracy").inner_text().split()[0]) > 0.85

    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    row.locator('button[data-action="exclude"]').click()
    row.locator(".pill.excluded").wait_for(timeout=15_000)
    assert dialogs and "Exclude" in dialogs[0]
    assert _live_edges(web_db, pid, spammer.id) == 0
    assert all(_live_edges(web_db, pid, a.id) == 160 for a in careful)

    row.locator('button[data-action="include"]').click()
    row.locator('button[data-action="exclude"]').wait_for(timeout=15_000)
    web_db.expire_all()
    member = web_db.get(models.ProjectMember, (pid, spammer.id))
    assert member is not None and member.excluded_at is None
    assert len(dialogs) == 1  # including asks nothing: it withdraws nothing
