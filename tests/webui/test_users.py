"""The dashboard's Users page and a project's members card in a real Chromium: an admin disables
and enables an account, issues and revokes a token, sets a password, adds and removes a member;
each change reaches the user's own browser and token at their next request."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import make_project, make_user
from tests.webui.conftest import Watched
from tests.webui.helpers import serious_axe_violations

pytestmark = pytest.mark.browser


def status(ctx: Watched, path: str = "/api/v1/auth/me") -> int:
    return int(ctx.context.request.get(f"{ctx.origin}{path}").status)


def bearer_status(server: LiveServer, token: str) -> int:
    return httpx.get(f"{server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_admin_disables_enables_and_manages_tokens_and_password(
    open_context: Callable[..., Watched], web_db: Session, web_server: LiveServer,
) -> None:
    admin, user = make_user(web_db, "admin"), make_user(web_db, "annotator")
    victim = open_context()
    victim.login(user.email)
    ctx = open_context()
    ctx.login(admin.email)
    page = ctx.page()
    page.goto("/admin")
    page.click("nav >> text=Users")
    page.wait_for_url(re.compile(r"/admin/users$"))
    row = page.locator(f"#users-body tr[data-user-id='{user.id}']")
    row.wait_for()
    assert serious_axe_violations(page) == []
    assert page.locator(f"#users-body tr[data-user-id='{admin.id}'] [data-action=toggle]").count() == 0

    row.locator("[data-action=toggle]").click()
    row.locator(".pill.disabled").wait_for()
    assert status(victim) == 401 and bearer_status(web_server, user.token) == 401
    row.locator("[data-action=toggle]").click()
    row.locator(".pill.running").wait_for()
    assert bearer_status(web_server, user.token) == 200

    row.locator("[data-action=manage]").click()
    page.fill("#t-name", "laptop")
    page.fill("#t-days", "5")
    page.click("#btn-token")
    page.wait_for_function("() => document.getElementById('token-value').value.length > 30")
    token = page.locator("#token-value").input_value()
    assert bearer_status(web_server, token) == 200
    issued = page.locator("#tokens-body tr", has_text="laptop")
    issued.locator("[data-action=revoke]").click()
    issued.locator("td", has_text="revoked").wait_for()
    assert bearer_status(web_server, token) == 401

    page.fill("#pw-new", "short")
    page.click("#btn-password")
    page.wait_for_function("() => document.getElementById('password-error').textContent.includes('10 characters')")
    victim.login(user.email)
    page.fill("#pw-new", "a fresh long phrase")
    page.click("#btn-password")
    page.wait_for_function("() => document.getElementById('pw-new').value === ''")
    assert status(victim) == 401
    victim.login(user.email, "a fresh long phrase")
    with page.expect_response(lambda r: r.request.method == "DELETE" and r.url.endswith("/sessions")) as ended:
        row.locator("[data-action=end-sessions]").click()
    assert ended.value.json() == {"ended": 1}
    page.locator("#toasts", has_text="1 session ended").wait_for()
    assert status(victim) == 401


def test_admin_adds_and_removes_a_member_on_the_project_page(
    open_context: Callable[..., Watched], web_db: Session, web_server: LiveServer,
) -> None:
    admin, user = make_user(web_db, "admin"), make_user(web_db, "annotator")
    pid = make_project(web_db, n_items=4)
    ctx = open_context()
    ctx.login(admin.email)
    page = ctx.page()
    page.goto(f"/admin/projects/{pid}")
    page.fill("#member-email", "nobody@test.example")
    page.click("#btn-member-add")
    page.wait_for_function("() => document.getElementById('member-error').textContent.includes('nobody@test.example')")
    page.fill("#member-email", user.email)
    page.click("#btn-member-add")
    member = page.locator(f"#members-body tr[data-user-id='{user.id}']")
    member.wait_for()
    web_db.expire_all()
    assert web_db.get(models.ProjectMember, (pid, user.id)) is not None
    with httpx.Client(base_url=web_server.url, headers={"Authorization": f"Bearer {user.token}"}) as client:
        assert client.get(f"/api/v1/projects/{pid}").status_code == 200
        member.locator("[data-action=remove-member]").click()
        member.wait_for(state="detached")
        assert client.get(f"/api/v1/projects/{pid}").status_code == 404
