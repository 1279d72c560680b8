"""Simulated annotators against a real server (uvicorn subprocess, SQLite and PostgreSQL).

Each simulation runs on a project of its own, imported over the API from an .npz whose labels
are the simulator's hidden ground truth; what the server stored is read back from the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from pal.simulate import (
    ANNOTATOR_ROUTES,
    ForbiddenRoute,
    GroundTruth,
    RouteRecorder,
    SimConfig,
    SimReport,
    annotator_client,
    build_team,
    create_annotators,
    parse_team,
    simulate,
)
from tests.conftest import LiveServer
from tests.support import make_user, synthetic_images

N_ITEMS = 60


@pytest.fixture(scope="module")
def npz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = synthetic_images(N_ITEMS, classes=3, size=12, seed=3)
    path = tmp_path_factory.mktemp("sim") / "data.npz"
    np.savez(path, images=images, labels=labels)
    return path


@pytest.fixture(scope="module")
def admin_token(engine: sa.Engine) -> str:
    from sqlalchemy.orm import Session

    with Session(engine) as db:
        return make_user(db, "admin").token


@pytest.fixture
def admin(live_server: LiveServer, admin_token: str) -> Iterator[httpx.Client]:
    with live_server.client(admin_token) as client:
        yield client


def new_project(admin: httpx.Client, npz_file: Path, **settings: object) -> int:
    body = {"name": f"sim-{uuid.uuid4().hex[:8]}", "oracle": "random", "budget_cap": 1000, **settings}
    resp = admin.post("/api/v1/projects", json=body)
    assert resp.status_code == 201, resp.text
    pid = int(resp.json()["id"])
    with npz_file.open("rb") as f:
        imp = admin.post(f"/api/v1/projects/{pid}/imports", files={"file": ("data.npz", f, "application/octet-stream")})
    assert imp.status_code == 201, imp.text
    assert imp.json()["imported"] == N_ITEMS
    return pid


def run_sim(live_server: LiveServer, admin: httpx.Client, npz_file: Path, config: SimConfig,
            **settings: object) -> tuple[int, GroundTruth, SimReport]:
    pid = new_project(admin, npz_file, **settings)
    truth = GroundTruth.from_npz(admin, pid, npz_file)
    accounts = create_annotators(admin, pid, config.annotators)
    return pid, truth, simulate(live_server.url, pid, truth, config, accounts)


def stored_edges(engine: sa.Engine, pid: int) -> list[tuple[int, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT src, dst, sign FROM edges WHERE project_id = :p AND kind = 'answer'"),
                            {"p": pid}).all()
    return [(int(r.src), int(r.dst), int(r.sign)) for r in rows]


def test_ground_truth_from_npz_matches_items_by_pixels(
    live_server: LiveServer, admin: httpx.Client, npz_file: Path, engine: sa.Engine
) -> None:
    pid = new_project(admin, npz_file)
    truth = GroundTruth.from_npz(admin, pid, npz_file)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT id, label FROM items WHERE project_id = :p"), {"p": pid}).all())
    assert truth.unmatched == 0
    assert {i: str(v) for i, v in truth.labels.items()} == stored


def test_simulate_answers_with_configured_error_rate(
    live_server: LiveServer, admin: httpx.Client, npz_file: Path, engine: sa.Engine
) -> None:
    config = SimConfig(annotators=3, tasks=80, error_rate=0.25, retry_rate=0.0, fetch_images=False, seed=1)
    pid, truth, report = run_sim(live_server, admin, npz_file, config)
    edges = stored_edges(engine, pid)
    wrong = sum((truth.label(s) == truth.label(d)) != (sign > 0) for s, d, sign in edges)
    assert report.errors == []
    assert len(edges) == 80 * 8
    # 640 marks: the binomial standard deviation of the share is 0.017; allow 3.5 of them.
    assert abs(wrong / len(edges) - 0.25) < 0.06
    assert report.flipped == wrong


def test_simulate_team_reports_each_annotators_model_and_wrong_marks(
    live_server: LiveServer, admin: httpx.Client, npz_file: Path, engine: sa.Engine
) -> None:
    config = SimConfig(annotators=2, tasks=60, retry_rate=0.0, fetch_images=False, seed=8, in_turns=True)
    pid = new_project(admin, npz_file)
    truth = GroundTruth.from_npz(admin, pid, npz_file)
    team = build_team(parse_team("uniform:1,spammer:1"), error_rate=0.0, labels_file=npz_file)
    report = simulate(live_server.url, pid, truth, config, create_annotators(admin, pid, 2), team)
    careful, spammer = report.annotators
    assert report.errors == [] and len(stored_edges(engine, pid)) == 60 * 8
    assert (careful["model"], careful["flipped"], careful["answers"]) == ("uniform=0", 0, 30)
    # 240 marks at random: half wrong, standard deviation 0.032.
    assert spammer["model"] == "spammer=0.5" and abs(spammer["measured_error_rate"] - 0.5) < 0.12
    assert report.flipped == spammer["flipped"]


def test_simulate_without_errors_stores_only_true_edges(
    live_server: LiveServer, admin: httpx.Client, npz_file: Path, engine: sa.Engine
) -> None:
    config = SimConfig(annotators=2, tasks=30, error_rate=0.0, fetch_images=False, seed=2)
    pid, truth, report = run_sim(live_server, admin, npz_file, config)
    edges = stored_edges(engine, pid)
    assert report.errors == [] and edges
    assert all((truth.label(s) == truth.label(d)) == (sign > 0) for s, d, sign in edges)


def test_simulate_skips_grids_at_cant_tell_rate(
    live_server: LiveServer, admin: httpx.Client, npz_file: Path, engine: sa.Engine
) -> None:
    config = SimConfig(annotators=2, tasks=100, cant_tell_rate=0.3, fetch_images=False, seed=3)
    pid, _truth, report = run_sim(live_server, admin, npz_file, config)
    with engine.connect() as conn:
        skipped, total = conn.execute(sa.text(
            "SELECT SUM(CASE WHEN cant_tell THEN 1 ELSE 0 END), COUNT(*) FROM answers WHERE project_id = :p"
        ), {"p": pid}).one()
    assert total == 100 and report.cant_tell == skipped
    assert 0.15 < skipped / total < 0.45  # 100 draws at 0.3: standard deviation 0.046


def test_simulate_calls_only_annotator_routes(live_server: LiveServer, admin: httpx.Client, npz_file: Path) -> None:
    config = SimConfig(annotators=2, tasks=12, fetch_images=True, think_ms=5, undo_rate=0.3, retry_rate=0.3, seed=4)
    _pid, _truth, report = run_sim(live_server, admin, npz_file, config)
    templates = {tuple(key.split(" ", 1)) for key in report.routes}
    assert report.errors == []
    assert templates <= ANNOTATOR_ROUTES
    assert ("GET", "/api/v1/items/{item_id}/image") in templates  # the grid's thumbnails, like the page


def test_annotator_client_refuses_a_trainer_route(live_server: LiveServer) -> None:
    recorder = RouteRecorder()
    with annotator_client(live_server.url, "no-token", recorder) as client, pytest.raises(ForbiddenRoute):
        client.get("/api/v1/projects/1/edges")
    assert not recorder.counts


def test_simulate_retried_posts_are_replays(
    live_server: LiveServer, admin: httpx.Client, npz_file: Path, engine: sa.Engine
) -> None:
    config = SimConfig(annotators=2, tasks=20, retry_rate=1.0, fetch_images=False, seed=5)
    pid, _truth, report = run_sim(live_server, admin, npz_file, config)
    with engine.connect() as conn:
        answers = conn.execute(sa.text("SELECT COUNT(*) FROM answers WHERE project_id = :p"), {"p": pid}).scalar()
    assert report.retries_sent == 20 and report.replays_confirmed == 20
    assert answers == 20


def test_simulate_undo_leaves_one_live_answer_per_slot(
    live_server: LiveServer, admin: httpx.Client, npz_file: Path, engine: sa.Engine
) -> None:
    config = SimConfig(annotators=2, tasks=10, undo_rate=1.0, retry_rate=0.0, fetch_images=False, seed=6)
    pid, _truth, report = run_sim(live_server, admin, npz_file, config)
    with engine.connect() as conn:
        live, undone = conn.execute(sa.text(
            "SELECT SUM(CASE WHEN undone_at IS NULL THEN 1 ELSE 0 END), SUM(CASE WHEN undone_at IS NULL "
            "THEN 0 ELSE 1 END) FROM answers WHERE project_id = :p"), {"p": pid}).one()
    assert report.errors == [] and report.undos == 10
    assert (live, undone, report.answers) == (10, 10, 10)


def test_simulate_stops_when_the_budget_is_spent(live_server: LiveServer, admin: httpx.Client, npz_file: Path) -> None:
    config = SimConfig(annotators=3, tasks=50, fetch_images=False, seed=7)
    _pid, _truth, report = run_sim(live_server, admin, npz_file, config, budget_cap=10)
    assert report.answers == 10
    assert report.stop_reasons["budget_exhausted"] == 3
