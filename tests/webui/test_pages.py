"""Every page: sign-in redirects, no request leaving the server, axe-core, and the screenshots in
docs/screenshots (desktop 1280x800 and a 390-px phone), taken on a project with real answers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server import models
from tests.conftest import LiveServer
from tests.support import PASSWORD, Actor, item_labels, make_user
from tests.webui.conftest import DESKTOP, PHONE, Watched
from tests.webui.helpers import (
    SCREENSHOTS,
    answer_truthfully,
    demo_npz,
    grid_state,
    serious_axe_violations,
    session_client,
    upload_pixel_embedding,
    wait_grid,
)

pytestmark = pytest.mark.browser


@dataclass
class Populated:
    pid: int
    admin: Actor
    annotator: Actor
    labels: dict[int, str]


@pytest.fixture(scope="module")
def populated(web_server: LiveServer, web_database_url: str, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Populated]:
    """A Fashion-MNIST project (300 demo images) with two annotators' answers (each grid answered
    twice) and three embedding versions, built through the HTTP API."""
    engine = sa.create_engine(web_database_url)
    db = sessionmaker(bind=engine, expire_on_commit=False)()
    admin, trainer = make_user(db, "admin"), make_user(db, "trainer")
    annotators = [make_user(db, "annotator") for _ in range(2)]
    for actor, name in zip([admin, *annotators], ("Grace Hopper", "Ada Lovelace", "Alan Turing"), strict=True):
        db.execute(sa.update(models.User).where(models.User.id == actor.id).values(name=name))
    db.commit()
    npz = demo_npz(300, tmp_path_factory.mktemp("demo") / "fashion-300.npz")
    with httpx.Client(base_url=web_server.url, headers=admin.headers, timeout=60) as api:
        project = api.post("/api/v1/projects", json={
            "name": f"fashion-mnist-{uuid.uuid4().hex[:4]}", "description": "300 Fashion-MNIST demo images",
            "oracle": "random", "redundancy": 2, "budget_cap": 400}).json()
        pid = project["id"]
        with npz.open("rb") as f:
            api.post(f"/api/v1/projects/{pid}/imports", files={"file": ("fashion-300.npz", f)}).raise_for_status()
        for actor in annotators:
            api.post(f"/api/v1/projects/{pid}/members/{actor.id}").raise_for_status()
    labels = item_labels(db, pid)
    ids = np.asarray(sorted(labels), dtype=np.int64)
    with np.load(npz) as data:
        images = data["images"]
    clients = [session_client(web_server.url, a.email, PASSWORD) for a in annotators]
    trainer_api = httpx.Client(base_url=web_server.url, headers=trainer.headers, timeout=60)
    try:
        for step, dim in enumerate((2, 6, 24), start=1):
            for n, client in enumerate(clients):
                answer_truthfully(client, pid, labels, grids=8, error_rate=0.06 * n, seed=step)
            upload_pixel_embedding(trainer_api, pid, ids, images, dim=dim, step=step * 200)
    finally:
        for client in clients:
            client.close()
        trainer_api.close()
    yield Populated(pid=pid, admin=admin, annotator=annotators[0], labels=labels)
    db.close()
    engine.dispose()


def test_pages_without_session_redirect_to_login(web_server: LiveServer) -> None:
    with httpx.Client(base_url=web_server.url) as client:
        for path in ("/annotate", "/annotate/1", "/admin", "/admin/projects/1", "/admin/users"):
            resp = client.get(path)
            assert resp.status_code == 303
            assert resp.headers["location"].startswith("/login?next=")
        assert client.get("/login").status_code == 200


def test_annotator_is_sent_from_admin_pages_to_the_grid(open_context: Callable[..., Watched],
                                                        web_db: Session) -> None:
    annotator = make_user(web_db, "annotator")
    ctx = open_context()
    ctx.login(annotator.email)
    page = ctx.page()
    page.goto("/admin")
    assert page.url.endswith("/annotate")
    page.goto("/admin/users")
    assert page.url.endswith("/annotate")


def test_no_request_leaves_the_server(open_context: Callable[..., Watched], populated: Populated) -> None:
    ctx = open_context()
    page = ctx.page()
    page.goto("/login")
    ctx.login(populated.annotator.email)
    page.goto(f"/annotate/{populated.pid}")
    wait_grid(page)
    ctx.login(populated.admin.email)
    for path in ("/admin", f"/admin/projects/{populated.pid}", "/admin/users"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
    assert len(ctx.requests) > 20
    assert ctx.external_requests() == []


@pytest.mark.parametrize("who,path", [("anonymous", "/login"), ("annotator", "/annotate/{pid}"),
                                      ("admin", "/admin"), ("admin", "/admin/projects/{pid}"),
                                      ("admin", "/admin/users")])
def test_axe_finds_no_serious_violation(open_context: Callable[..., Watched], populated: Populated,
                                        who: str, path: str) -> None:
    ctx = open_context()
    if who != "anonymous":
        ctx.login((populated.admin if who == "admin" else populated.annotator).email)
    page = ctx.page()
    page.goto(path.format(pid=populated.pid))
    if who == "annotator":
        wait_grid(page)
        page.keyboard.press("1")  # a marked tile is part of what must be readable
    else:
        page.wait_for_load_state("networkidle")
    assert serious_axe_violations(page) == []


def _mark_true_outliers(page: Any, labels: dict[int, str], most: int) -> None:
    """Mark up to ``most`` candidates that really are of another kind: a grid half-way answered."""
    grid = grid_state(page)
    outliers = [i for i, c in enumerate(grid["candidates"]) if labels[c] != labels[grid["reference"]]]
    for i in outliers[:most]:
        page.keyboard.press(str(i + 1))


@pytest.mark.parametrize("name,viewport", [("desktop", DESKTOP), ("phone", PHONE)])
def test_screenshots_of_both_pages(open_context: Callable[..., Watched], populated: Populated,
                                   name: str, viewport: dict[str, int]) -> None:
    phone = name == "phone"
    options = {"has_touch": True, "is_mobile": True, "device_scale_factor": 2} if phone else {}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    ctx = open_context(viewport=viewport, **options)
    ctx.login(populated.annotator.email)
    page = ctx.page()
    page.goto(f"/annotate/{populated.pid}")
    wait_grid(page)
    _mark_true_outliers(page, populated.labels, most=3)
    page.wait_for_timeout(400)  # let the day's count arrive
    shot = SCREENSHOTS / f"annotate-{name}.png"
    page.screenshot(path=str(shot))
    if phone:  # every candidate is on screen and big enough to tap
        boxes = [page.locator("#grid .candidate").nth(i).bounding_box() for i in range(8)]
        assert all(b is not None and b["y"] + b["height"] <= viewport["height"] and b["width"] >= 44 for b in boxes)

    ctx.login(populated.admin.email)
    page.goto(f"/admin/projects/{populated.pid}")
    page.wait_for_function("() => document.getElementById('k-version').textContent === 'v3'")
    page.wait_for_function("() => document.querySelectorAll('#cluster-thumbs img').length > 0")
    # The thumbnails load lazily: bring them on screen, wait until they are drawn, then go back up.
    page.locator("#cluster-thumbs").scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.querySelectorAll('#cluster-thumbs img')]"
                           ".every(img => img.complete && img.naturalWidth > 0)")
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENSHOTS / f"admin-{name}.png"), full_page=not phone)
    for path in SCREENSHOTS.glob(f"*-{name}.png"):
        assert path.stat().st_size > 10_000, path

