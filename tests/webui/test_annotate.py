"""The annotator's grid in a real Chromium: keyboard use, undo and skip, network faults, reloads."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import PASSWORD, make_project, make_user
from tests.webui.conftest import PHONE, Watched
from tests.webui.helpers import grid_state, wait_grid, wait_outbox_empty

pytestmark = pytest.mark.browser

ANSWERS = re.compile(r"/api/v1/tasks/\d+/answers$")


def _live_answers(db: Session, user_id: int) -> list[models.Answer]:
    db.expire_all()
    return list(db.execute(
        sa.select(models.Answer).where(models.Answer.annotator_id == user_id).order_by(models.Answer.id)
    ).scalars())


def _edges_of(db: Session, answer_id: int, kind: str = "answer") -> set[tuple[int, int, int]]:
    rows = db.execute(sa.select(models.Edge.src, models.Edge.dst, models.Edge.sign)
                      .where(models.Edge.answer_id == answer_id, models.Edge.kind == kind)).tuples()
    return set(rows)


def _expected_edges(grid: dict[str, Any], outliers: set[int]) -> set[tuple[int, int, int]]:
    return {(grid["reference"], c, -1 if c in outliers else 1) for c in grid["candidates"]}


def test_annotator_keyboard_only_session_stores_exactly_what_was_pressed(
    open_context: Callable[..., Watched], web_db: Session,
) -> None:
    annotator = make_user(web_db, "annotator")
    pid = make_project(web_db, n_items=60, members=[annotator], n_candidates=8)
    ctx = open_context()
    page = ctx.page()

    # Sign in with the keyboard only: the e-mail field has focus on load.
    page.goto("/login")
    page.keyboard.type(annotator.email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/annotate/{pid}$"))

    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()

    # (keys pressed, skipped?) per grid; "2","2" toggles candidate 2 on and off again.
    plan: list[tuple[list[str], bool]] = [(["1", "3"], False), ([], False), (["2", "2", "5"], False),
                                          ([], True), (["8"], False)]
    expected: list[tuple[dict[str, Any], set[int], bool]] = []
    grid = wait_grid(page)
    for keys, skip in plan:
        for key in keys:
            page.keyboard.press(key)
        marked = {grid["candidates"][i] for i, on in enumerate(grid_state(page)["pressed"]) if on}
        expected.append((grid, marked, skip))
        page.keyboard.press("s" if skip else "Enter")
        grid = wait_grid(page, grid["seq"])
    assert [len(g["candidates"]) for g, _, _ in expected] == [8] * 5
    assert len({g["task"] for g, _, _ in expected}) == 5

    # U brings the last grid back with its marks; change the answer and submit again.
    page.keyboard.press("u")
    again = wait_grid(page, grid["seq"])
    last_grid = expected[-1][0]
    assert again["task"] == last_grid["task"] and again["candidates"] == last_grid["candidates"]
    assert again["pressed"] == [i == 7 for i in range(8)]
    page.keyboard.press("8")
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    wait_grid(page, again["seq"])
    wait_outbox_empty(page)

    answers = _live_answers(web_db, annotator.id)
    undone = [a for a in answers if a.undone_at is not None]
    live = [a for a in answers if a.undone_at is None]
    redo = (last_grid, {last_grid["candidates"][3]}, False)
    want = expected[:4] + [redo]
    assert [(a.task_id, set(a.outlier_ids), a.cant_tell) for a in live] == [
        (g["task"], marks if not skip else set(), skip) for g, marks, skip in want]
    assert [(a.task_id, set(a.outlier_ids)) for a in undone] == [(last_grid["task"], {last_grid["candidates"][7]})]
    for answer, (g, marks, skip) in zip(live, want, strict=True):
        assert _edges_of(web_db, answer.id) == (set() if skip else _expected_edges(g, marks))
    # The undone answer's edges stay (append-only) and each one is withdrawn by a retract row.
    assert _edges_of(web_db, undone[0].id, "retract") == _edges_of(web_db, undone[0].id) \
        == _expected_edges(last_grid, {last_grid["candidates"][7]})
    total = web_db.scalar(sa.select(sa.func.count()).select_from(models.Edge)
                          .where(models.Edge.annotator_id == annotator.id))
    assert total == 4 * 8 + 2 * 8
    page.wait_for_function("() => document.getElementById('count-today').textContent === '5'")


def test_answer_post_failing_twice_is_retried_and_stored_once(
    open_context: Callable[..., Watched], web_db: Session,
) -> None:
    annotator = make_user(web_db, "annotator")
    pid = make_project(web_db, n_items=40, members=[annotator])
    ctx = open_context()
    ctx.login(annotator.email)
    page = ctx.page()
    calls: list[str] = []

    def flaky(route: Any) -> None:
        calls.append(route.request.url)
        if len(calls) == 1:
            route.abort()  # lost before the server
        elif len(calls) == 2:
            route.fetch()  # stored by the server, but the response is lost
            route.abort()
        else:
            route.continue_()

    page.route(ANSWERS, flaky)
    page.goto(f"/annotate/{pid}")
    grid = wait_grid(page)
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    wait_grid(page, grid["seq"])
    wait_outbox_empty(page)

    answers = _live_answers(web_db, annotator.id)
    assert len(calls) == 3
    assert [(a.task_id, a.outlier_ids) for a in answers] == [(grid["task"], [grid["candidates"][1]])]


def test_pending_answer_in_storage_is_sent_once_after_reload(
    open_context: Callable[..., Watched], web_db: Session,
) -> None:
    annotator = make_user(web_db, "annotator")
    pid = make_project(web_db, n_items=40, members=[annotator])
    ctx = open_context()
    ctx.login(annotator.email)
    page = ctx.page()
    mode = {"lose": True}
    posts: list[str] = []

    def lose_responses(route: Any) -> None:
        posts.append(route.request.url)
        if mode["lose"]:
            route.fetch()  # the server stores the answer; the page never hears back
            route.abort()
        else:
            route.continue_()

    page.route(ANSWERS, lose_responses)
    page.goto(f"/annotate/{pid}")
    grid = wait_grid(page)
    page.keyboard.press("1")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    wait_grid(page, grid["seq"])
    page.wait_for_function("() => Object.keys(localStorage).some(k => k.startsWith('pal.outbox'))")
    while not posts:
        page.wait_for_timeout(50)
    # Leave (stopping the retries), then come back with the answer still pending in localStorage.
    page.goto("about:blank")
    mode["lose"] = False
    sent_before = len(posts)
    page.goto(f"/annotate/{pid}")
    wait_outbox_empty(page)
    wait_grid(page)

    answers = _live_answers(web_db, annotator.id)
    assert len(posts) - sent_before == 1
    assert [(a.task_id, a.outlier_ids) for a in answers] == [
        (grid["task"], sorted([grid["candidates"][0], grid["candidates"][2]]))]
    assert grid_state(page)["task"] != grid["task"]


def test_phone_grid_shows_every_candidate_and_answers_by_touch(
    open_context: Callable[..., Watched], web_db: Session,
) -> None:
    annotator = make_user(web_db, "annotator")
    pid = make_project(web_db, n_items=40, members=[annotator])
    ctx = open_context(viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    ctx.login(annotator.email)
    page = ctx.page()
    page.goto(f"/annotate/{pid}")
    grid = wait_grid(page)

    tiles = page.locator("#grid .candidate")
    assert tiles.count() == 8
    for i in range(8):
        box = tiles.nth(i).bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"] - 60  # above the action bar
        assert box["width"] >= 44 and box["height"] >= 44  # a comfortable touch target
    submit = page.locator("#btn-submit").bounding_box()
    assert submit is not None and submit["y"] + submit["height"] <= PHONE["height"]
    tiles.nth(4).tap()
    assert tiles.nth(4).get_attribute("aria-pressed") == "true"
    page.locator("#btn-submit").tap()
    wait_grid(page, grid["seq"])
    wait_outbox_empty(page)
    assert [(a.task_id, a.outlier_ids) for a in _live_answers(web_db, annotator.id)] == [
        (grid["task"], [grid["candidates"][4]])]


def _budget_spent(db: Session, pid: int) -> int:
    db.expire_all()
    spent = db.scalar(sa.select(models.Project.budget_spent).where(models.Project.id == pid))
    return int(spent or 0)


def test_reload_resumes_held_leases_instead_of_claiming_new_tasks(
    open_context: Callable[..., Watched], web_db: Session,
) -> None:
    annotator = make_user(web_db, "annotator")
    pid = make_project(web_db, n_items=40, members=[annotator])
    ctx = open_context()
    ctx.login(annotator.email)
    page = ctx.page()
    page.goto(f"/annotate/{pid}")
    grid = wait_grid(page)
    page.wait_for_timeout(300)
    assert _budget_spent(web_db, pid) == 2  # the grid on screen and the prefetched one

    page.reload()
    resumed = wait_grid(page)
    page.keyboard.press("Enter")
    after = wait_grid(page, resumed["seq"])
    wait_outbox_empty(page)
    assert resumed["task"] == grid["task"] and resumed["candidates"] == grid["candidates"]
    held = {a.task_id for a in web_db.execute(sa.select(models.Assignment).where(
        models.Assignment.annotator_id == annotator.id)).scalars()}
    assert after["task"] in held
    page.wait_for_timeout(300)
    assert _budget_spent(web_db, pid) == 3  # one new prefetch after the answer, nothing else


def test_lease_about_to_expire_is_renewed_while_the_page_is_open(
    open_context: Callable[..., Watched], web_db: Session,
) -> None:
    annotator = make_user(web_db, "annotator")
    pid = make_project(web_db, n_items=40, members=[annotator])
    ctx = open_context()
    ctx.login(annotator.email)
    page = ctx.page()
    renewals: list[str] = []
    page.on("request", lambda r: renewals.append(r.url) if r.url.endswith("/lease") else None)
    page.clock.install()
    page.goto(f"/annotate/{pid}")
    grid = wait_grid(page)

    def expiry() -> Any:
        web_db.expire_all()
        return web_db.scalar(sa.select(models.Assignment.lease_expires_at).where(
            models.Assignment.task_id == grid["task"], models.Assignment.annotator_id == annotator.id))

    before = expiry()
    page.wait_for_timeout(1100)  # the renewed lease must end later than this one (1 s resolution or better)
    page.clock.fast_forward("03:20")  # 200 s of the 300 s lease pass on the page's clock
    deadline = 50
    while not renewals and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    page.wait_for_timeout(300)
    assert any(f"/tasks/{grid['task']}/lease" in u for u in renewals)
    assert expiry() > before


def test_spent_budget_shows_a_gentle_message_and_keeps_undo(
    open_context: Callable[..., Watched], web_db: Session,
) -> None:
    annotator = make_user(web_db, "annotator")
    pid = make_project(web_db, n_items=40, members=[annotator], budget_cap=1)
    ctx = open_context()
    ctx.login(annotator.email)
    page = ctx.page()
    page.goto(f"/annotate/{pid}")
    grid = wait_grid(page)
    page.keyboard.press("Enter")
    notice = page.locator("#notice")
    notice.wait_for(state="visible")
    assert "budget of this project is spent" in notice.inner_text()
    assert page.locator("#workspace").is_hidden()
    page.keyboard.press("u")  # the last answer can still be taken back
    again = wait_grid(page, grid["seq"])
    assert again["task"] == grid["task"] and notice.is_hidden()


def test_excluded_annotator_is_told_so_instead_of_connection_lost(
    open_context: Callable[..., Watched], web_db: Session, web_server: LiveServer,
) -> None:
    admin, annotator = make_user(web_db, "admin"), make_user(web_db, "annotator")
    pid = make_project(web_db, n_items=20, members=[annotator])
    with web_server.client(admin.token) as client:
        assert client.post(f"/api/v1/projects/{pid}/annotators/{annotator.id}/exclude").status_code == 200
    ctx = open_context()
    ctx.login(annotator.email)
    page = ctx.page()
    page.goto(f"/annotate/{pid}")
    notice = page.locator("#notice")
    notice.wait_for(state="visible")
    assert "not accepted" in notice.inner_text() and "excluded you" in notice.inner_text()
    assert "Connection lost" not in notice.inner_text()
