"""The admin dashboard in a real Chromium: create and import, budget, invites, live figures, exports."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import PASSWORD, item_labels, make_project, make_user
from tests.webui.conftest import Watched
from tests.webui.helpers import answer_truthfully, demo_npz, session_client, upload_pixel_embedding

pytestmark = pytest.mark.browser

EXPORTS = ["edges.csv", "clusters.csv", "embeddings.npy", "embedding_index.csv", "manifest.json"]


def test_admin_creates_project_invites_and_watches_figures_move(
    open_context: Callable[..., Watched], web_db: Session, web_server: LiveServer, tmp_path: Path,
) -> None:
    admin = make_user(web_db, "admin")
    ctx = open_context()
    page = ctx.page()
    page.goto("/admin")
    page.wait_for_url(re.compile(r"/login\?next="))  # no session: to the sign-in page and back
    page.fill("#email", admin.email)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(re.compile(r"/admin$"))

    name = f"web-{uuid.uuid4().hex[:8]}"
    page.click("#btn-new-project")
    page.fill("#p-name", name)
    page.select_option("#p-oracle", "random")
    page.fill("#p-budget", "100")
    page.set_input_files("#p-file", str(demo_npz(60, tmp_path / "demo-60.npz")))
    page.click("#btn-create")
    page.wait_for_url(re.compile(r"/admin/projects/\d+$"), timeout=30_000)
    pid = int(page.url.rsplit("/", 1)[1])
    page.goto(f"/admin/projects/{pid}?poll_ms=1000")  # refresh faster than the default 4 s
    page.wait_for_function("() => document.getElementById('k-items').textContent === '60'")
    assert page.locator("#k-cap").inner_text() == "100"

    page.fill("#s-budget", "40")
    page.click("#btn-save")
    page.wait_for_function("() => document.getElementById('k-cap').textContent === '40'")
    web_db.expire_all()
    project = web_db.get(models.Project, pid)
    assert project is not None and project.budget_cap == 40 and project.n_candidates == 8

    page.click("#btn-invite")
    page.wait_for_function("() => document.getElementById('invite-link').value.includes('/login?invite=')")
    link = page.locator("#invite-link").input_value()

    # The invited annotator opens the link in another browser and creates an account.
    email = f"invited-{uuid.uuid4().hex[:8]}@test.example"
    other = open_context()
    invited = other.page()
    invited.goto(link.replace(web_server.url, ""))
    invited.fill("#invite-name", "Invited Annotator")
    invited.fill("#invite-email", email)
    invited.fill("#invite-password", PASSWORD)
    invited.click("#invite-form button[type=submit]")
    invited.wait_for_url(re.compile(rf"/annotate/{pid}$"))
    invited.close()

    page.evaluate("() => { window.notReloaded = true; }")
    page.wait_for_function("() => document.querySelector('#annotators-body').textContent.includes('Invited Annotator')")
    assert page.locator("#k-aph").inner_text() == "0"
    spent_before = page.locator("#k-spent").inner_text()

    client = session_client(web_server.url, email, PASSWORD)
    try:
        assert answer_truthfully(client, pid, item_labels(web_db, pid), grids=3) == 3
    finally:
        client.close()
    web_db.expire_all()
    project = web_db.get(models.Project, pid)
    assert project is not None
    # The dashboard polls: the figures change in place, without a reload.
    page.wait_for_function("() => document.getElementById('k-aph').textContent === '3'", timeout=15_000)
    page.wait_for_function("(s) => document.getElementById('k-spent').textContent === s",
                           arg=str(project.budget_spent), timeout=15_000)
    assert page.locator("#k-spent").inner_text() != spent_before
    assert page.evaluate("() => window.notReloaded === true")
    row = page.locator("#annotators-body tr", has_text="Invited Annotator")
    assert row.locator("td").nth(1).inner_text() == "3"

    page.click("#btn-pause")
    page.wait_for_function("() => document.getElementById('status-pill').textContent === 'Paused'")
    web_db.expire_all()
    assert web_db.scalar(sa.select(models.Project.paused).where(models.Project.id == pid)) is True


def _has_exports(ctx: Watched) -> bool:
    spec = ctx.context.request.get(f"{ctx.origin}/openapi.json").json()
    return all(any(path.endswith(f"/exports/{name}") for path in spec["paths"]) for name in EXPORTS)


def test_admin_downloads_every_export_from_the_dashboard(
    open_context: Callable[..., Watched], web_db: Session, web_server: LiveServer,
) -> None:
    admin, annotator, trainer = (make_user(web_db, role) for role in ("admin", "annotator", "trainer"))
    pid = make_project(web_db, n_items=40, members=[annotator])
    ctx = open_context()
    if not _has_exports(ctx):
        pytest.skip("the export endpoints (GET /api/v1/projects/{pid}/exports/...) are not in this build yet")
    client = session_client(web_server.url, annotator.email, PASSWORD)
    try:
        answer_truthfully(client, pid, item_labels(web_db, pid), grids=2)
    finally:
        client.close()
    ids = np.asarray(sorted(item_labels(web_db, pid)), dtype=np.int64)
    images = np.random.default_rng(0).integers(0, 255, size=(len(ids), 8, 8), dtype=np.uint8)
    with httpx.Client(base_url=web_server.url, headers=trainer.headers, timeout=60) as trainer_api:
        upload_pixel_embedding(trainer_api, pid, ids, images, dim=4, step=1)
    ctx.login(admin.email)
    page = ctx.page()
    page.goto(f"/admin/projects/{pid}")
    files: dict[str, bytes] = {}
    for name in EXPORTS:
        link = page.locator(f"#exports a[href$='/exports/{name}']")
        response = ctx.context.request.get(f"{ctx.origin}{link.get_attribute('href')}")
        assert response.ok, f"{name}: {response.status} {response.text()[:200]}"
        with page.expect_download() as info:
            link.click()
        files[name] = Path(info.value.path()).read_bytes()
        assert files[name], name
    edges = list(csv.DictReader(io.StringIO(files["edges.csv"].decode())))
    assert len(edges) == web_db.scalar(sa.select(sa.func.count()).select_from(models.Edge)
                                       .where(models.Edge.project_id == pid)) == 2 * 8
    clusters = list(csv.reader(io.StringIO(files["clusters.csv"].decode())))
    assert len(clusters) - 1 == 40  # a header, then one row per item
    manifest: dict[str, Any] = json.loads(files["manifest.json"])
    assert isinstance(manifest, dict) and manifest
    vectors = np.load(io.BytesIO(files["embeddings.npy"]), allow_pickle=False)
    index = list(csv.reader(io.StringIO(files["embedding_index.csv"].decode())))
    assert vectors.shape == (40, 4) and len(index) - 1 == 40


def test_admin_uploads_known_labels_from_the_dashboard(
    open_context: Callable[..., Watched], web_db: Session, web_server: LiveServer, tmp_path: Path,
) -> None:
    admin = make_user(web_db, "admin")
    pid = make_project(web_db, n_items=8)
    rows = web_db.execute(sa.select(models.Item.id, models.Item.source).where(models.Item.project_id == pid)
                          .order_by(models.Item.id)).all()
    good, bad = tmp_path / "known.csv", tmp_path / "bad.csv"
    good.write_text("source,label\n" + "".join(f"{s},{'boot' if k < 2 else 'sandal'}\n"
                                               for k, (_, s) in enumerate(rows[:4])))
    bad.write_text(f"source,label\n{rows[5].source},boot\nnot-imported.png,boot\n")
    ctx = open_context()
    ctx.login(admin.email)
    page = ctx.page()
    page.goto(f"/admin/projects/{pid}")
    page.set_input_files("#known-file", str(bad))
    page.click("#btn-known")
    page.wait_for_function("() => document.getElementById('known-result').textContent.startsWith('Nothing stored')")
    assert "line 3" in page.locator("#known-result").inner_text()
    page.set_input_files("#known-file", str(good))
    page.click("#btn-known")
    page.wait_for_function("() => document.getElementById('known-result').textContent.startsWith('Added 4')")
    web_db.expire_all()
    stored = dict(web_db.execute(sa.select(models.KnownLabel.item_id, models.KnownLabel.label).where(
        models.KnownLabel.project_id == pid)).tuples().all())
    assert stored == {i: ("boot" if k < 2 else "sandal") for k, (i, _) in enumerate(rows[:4])}
    page.reload()
    page.wait_for_function("() => document.getElementById('known-result').textContent === "
                           "'4 known labels of 2 kinds.'")
    # The image upload shares the form handling: more images, the same way.
    page.click("#btn-import")
    page.wait_for_function("() => document.getElementById('import-result').textContent === 'Choose a file first.'")
    page.set_input_files("#import-file", str(demo_npz(12, tmp_path / "more.npz")))
    page.click("#btn-import")
    page.wait_for_function("() => document.getElementById('import-result').textContent"
                           ".startsWith('Imported 12 images')", timeout=30_000)
    assert "the project holds 20" in page.locator("#import-result").inner_text()
