"""Request ids, JSON logs and /metrics against real uvicorn servers (one and several workers)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.timeutil import utcnow
from tests.conftest import LiveServer, start_server, stop_server
from tests.server.routers.test_exports import answer_truthfully, upload_embedding
from tests.support import item_labels, make_project, make_user


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text ``text`` (None when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return None


def test_request_id_sent_by_the_caller_is_echoed(live_server: LiveServer) -> None:
    with live_server.client() as client:
        resp = client.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
    assert resp.headers["X-Request-ID"] == "trace-abc.123"


@pytest.mark.parametrize("sent", [None, "has spaces", "x" * 200, "quote\"d"])
def test_request_id_is_generated_when_missing_or_unsafe(live_server: LiveServer, sent: str | None) -> None:
    with live_server.client() as client:
        resp = client.get("/healthz", headers={"X-Request-ID": sent} if sent else {})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])


def test_request_id_is_set_on_error_responses(live_server: LiveServer) -> None:
    with live_server.client() as client:
        resp = client.get("/api/v1/projects", headers={"X-Request-ID": "err-1"})
    assert resp.status_code == 401 and resp.headers["X-Request-ID"] == "err-1"


def test_metrics_need_no_user_token_and_use_prometheus_text(live_server: LiveServer) -> None:
    with live_server.client() as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert "# TYPE pal_http_requests_total counter" in resp.text
    assert "# TYPE pal_http_request_duration_seconds histogram" in resp.text


def test_metrics_label_requests_by_route_template(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pids = [make_project(db, n_items=0) for _ in range(3)]
    route = "/api/v1/projects/{project_id}"
    with live_server.client(admin.token) as client:
        before = metric(client.get("/metrics").text, "pal_http_requests_total", method="GET", route=route,
                        status="200") or 0
        for pid in pids:
            assert client.get(f"/api/v1/projects/{pid}").status_code == 200
        text = client.get("/metrics").text
    assert metric(text, "pal_http_requests_total", method="GET", route=route, status="200") == before + 3
    assert metric(text, "pal_http_request_duration_seconds_count", method="GET", route=route) is not None
    assert f'route="/api/v1/projects/{pids[0]}"' not in text  # ids never become labels


def test_metrics_report_budget_answers_edges_and_trainer_lag(live_server: LiveServer, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, n_items=20, members=[annotator], n_candidates=4, budget_cap=7)
    with live_server.client(annotator.token) as client:
        answer_truthfully(client, pid, item_labels(db, pid), 3)
    p = str(pid)
    with live_server.client() as client:
        text = client.get("/metrics").text
    assert metric(text, "pal_budget_spent", project=p) == 3
    assert metric(text, "pal_budget_cap", project=p) == 7
    assert metric(text, "pal_answers_total", project=p) == 3
    assert metric(text, "pal_tasks_total", project=p) == 3
    assert metric(text, "pal_edges_total", project=p, kind="answer") == 12
    assert metric(text, "pal_trainer_lag_edges", project=p) == 12  # no embedding version yet
    last = db.scalar(sa.select(sa.func.max(models.Edge.id)).where(models.Edge.project_id == pid))
    ids = np.asarray(sorted(item_labels(db, pid)), dtype=np.int64)
    with live_server.client(admin.token) as client:
        assert upload_embedding(client, pid, ids, np.eye(len(ids), 4, dtype=np.float32),
                                cursor=f"0:{last}").status_code == 201
    with live_server.client() as client:
        text = client.get("/metrics").text
    assert metric(text, "pal_trainer_lag_edges", project=p) == 0
    assert metric(text, "pal_embedding_version", project=p) == 1


def test_metrics_count_reclaimed_expired_leases(live_server: LiveServer, db: Session) -> None:
    first, second = make_user(db, "annotator"), make_user(db, "annotator")
    pid = make_project(db, n_items=12, members=[first, second], n_candidates=4)
    with live_server.client(first.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
    db.execute(sa.update(models.Assignment).where(models.Assignment.task_id == task["id"])
               .values(lease_expires_at=utcnow() - timedelta(seconds=5)))
    db.commit()
    with live_server.client() as client:
        text = client.get("/metrics").text
    assert metric(text, "pal_leases_expired", project=str(pid)) == 1
    assert metric(text, "pal_lease_reclaims_total", project=str(pid)) == 0
    with live_server.client(second.token) as client:
        again = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
    assert again["id"] == task["id"]  # the expired slot went to the next claim
    with live_server.client() as client:
        text = client.get("/metrics").text
    assert metric(text, "pal_lease_reclaims_total", project=str(pid)) == 1
    assert metric(text, "pal_leases_expired", project=str(pid)) == 0


@pytest.fixture
def guarded_server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(database_url, tmp_path / "server.log",
                          env={"PAL_METRICS_TOKEN": "scrape-secret", "PAL_WEBHOOK_WORKER": "false"})
    yield server
    stop_server(server)


def test_metrics_token_when_set_is_required(guarded_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    with guarded_server.client() as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200
    with guarded_server.client(admin.token) as client:  # a user token is not the scrape token
        assert client.get("/metrics").status_code == 401


def test_metrics_sum_request_counts_over_workers(database_url: str, tmp_path: Path) -> None:
    """Two uvicorn workers with PROMETHEUS_MULTIPROC_DIR: whichever worker answers a scrape reports the
    requests both served."""
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    server = start_server(database_url, tmp_path / "server.log", workers=2,
                          env={"PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "PAL_WEBHOOK_WORKER": "false"})
    try:
        def count() -> float:
            with server.client() as client:  # a new connection: the kernel spreads them over workers
                text = client.get("/metrics").text
            return metric(text, "pal_http_requests_total", method="GET", route="/healthz", status="200") or 0

        before = count()
        for _ in range(30):
            with server.client() as client:
                assert client.get("/healthz").status_code == 200
        after = [count() for _ in range(8)]
    finally:
        stop_server(server)
    assert after == [before + 30] * 8
    assert len(list(mp_dir.glob("counter_*.db"))) == 2  # both workers served and wrote their counters


def test_json_logs_are_one_object_per_line_with_the_request_id(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = start_server(database_url, log, env={"PAL_LOG_JSON": "true", "PAL_WEBHOOK_WORKER": "false"})
    rid = f"trace-{uuid.uuid4().hex[:8]}"
    try:
        with server.client() as client:
            client.get("/api/v1/projects/1", headers={"X-Request-ID": rid})
    finally:
        stop_server(server)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [r for r in records if r.get("request_id") == rid]
    assert len(access) == 1
    assert access[0]["logger"] == "pal.access" and access[0]["status"] == 401
    assert access[0]["route"] == "/api/v1/projects/{project_id}" and access[0]["method"] == "GET"
    assert {"ts", "level", "message", "duration_ms"} <= set(access[0])
