"""An annotator who already has an account opens an invite to a second project in Chromium, joins
it with their own password and answers a grid there."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import PASSWORD, make_project, make_user
from tests.webui.conftest import Watched
from tests.webui.helpers import wait_grid, wait_outbox_empty

pytestmark = pytest.mark.browser


def test_existing_annotator_accepts_an_invite_to_a_second_project_and_answers(
    open_context: Callable[..., Watched], web_db: Session, web_server: LiveServer,
) -> None:
    admin, annotator = make_user(web_db, "admin"), make_user(web_db, "annotator")
    make_project(web_db, n_items=10, members=[annotator])
    second = make_project(web_db, n_items=12)
    invite = httpx.post(f"{web_server.url}/api/v1/projects/{second}/invites", json={},
                        headers={"Authorization": f"Bearer {admin.token}"}).json()
    ctx = open_context()
    page = ctx.page()
    page.goto(invite["url"].replace(web_server.url, ""))
    page.fill("#invite-email", annotator.email)
    page.fill("#invite-password", "not my password at all")
    page.click("#invite-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('invite-error').textContent.includes('wrong e-mail')")
    page.fill("#invite-password", PASSWORD)
    page.click("#invite-form button[type=submit]")
    page.wait_for_url(re.compile(r"/annotate"))
    page.goto(f"/annotate/{second}")
    grid = wait_grid(page)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    wait_grid(page, grid["seq"])
    wait_outbox_empty(page)
    web_db.expire_all()
    answers = web_db.scalar(sa.select(sa.func.count()).select_from(models.Answer).where(
        models.Answer.project_id == second, models.Answer.annotator_id == annotator.id))
    assert answers == 1
    assert web_db.get(models.ProjectMember, (second, annotator.id)) is not None
