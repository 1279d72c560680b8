"""Outbound webhooks: events written with their cause, signed, delivered by the worker of a real
uvicorn server to a real HTTP receiver, retried with backoff until the receiver is back, once each."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server import models
from server.config import Settings
from server.migrate import upgrade
from server.services import outbox
from server.services.tasks import charge_budget
from server.webhooks import backoff_seconds, verify_signature
from tests.conftest import LiveServer, _drop_pg_database, free_port, fresh_database_url, start_server, stop_server
from tests.server.routers.test_exports import answer_truthfully, upload_embedding
from tests.support import item_labels, make_project, make_user

SECRET = "test-secret"  # what tests/conftest.py start_server sets as PAL_SECRET_KEY
LAG_LIMIT = 30


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every POST; it answers ``fail_first`` requests with 500."""

    def __init__(self, port: int | None = None, fail_first: int = 0) -> None:
        self.port = port or free_port()
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    failing = len(receiver.calls) <= receiver.fail_first
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self, project_id: int, type_: str | None = None, delivered_only: bool = True) -> list[dict[str, Any]]:
        with self.lock:
            calls = list(self.calls)
        out = []
        for n, (_headers, body) in enumerate(calls):
            if delivered_only and n < self.fail_first:
                continue
            event = json.loads(body)
            if event["project_id"] == project_id and (type_ is None or event["type"] == type_):
                out.append(event)
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hook_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_ready: bool
            ) -> Iterator[str]:
    """A database of its own: no other server's webhook worker touches its outbox."""
    if request.param == "postgres" and not pg_ready:
        pytest.skip("PostgreSQL not reachable: PostgreSQL half skipped")
    url, name = fresh_database_url(request.param, tmp_path_factory.mktemp("hooks"))
    upgrade(url)
    yield url
    if name:
        _drop_pg_database(name)


@pytest.fixture(scope="module")
def hook_server(hook_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(hook_db, tmp_path_factory.mktemp("hook-server") / "server.log", env={
        "PAL_WEBHOOK_POLL_SECONDS": "0.2", "PAL_WEBHOOK_BACKOFF_SECONDS": "0.3",
        "PAL_WEBHOOK_BACKOFF_MAX_SECONDS": "1", "PAL_TRAINER_LAG_ALERT_EDGES": str(LAG_LIMIT),
        "PAL_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1",  # the receivers here run on loopback
    })
    yield server
    stop_server(server)


@pytest.fixture
def hdb(hook_db: str) -> Iterator[Session]:
    engine = sa.create_engine(hook_db, connect_args={"timeout": 30} if hook_db.startswith("sqlite") else {})
    with sessionmaker(bind=engine, expire_on_commit=False)() as session:
        yield session
    engine.dispose()


def _project(db: Session, url: str | None, **settings: object) -> tuple[Any, Any, int]:
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    pid = make_project(db, n_items=30, members=[annotator], **settings)
    if url:
        db.execute(sa.update(models.Project).where(models.Project.id == pid).values(webhook_url=url))
        db.commit()
    return admin, annotator, pid


def _claim_and_answer(server: LiveServer, db: Session, token: str, pid: int, n: int) -> None:
    with server.client(token) as client:
        answer_truthfully(client, pid, item_labels(db, pid), n)


def test_budget_thresholds_fire_once_each_at_50_80_100_percent(hook_server: LiveServer, hdb: Session) -> None:
    receiver = Receiver()
    try:
        _admin, annotator, pid = _project(hdb, receiver.url, budget_cap=10, n_candidates=2)
        _claim_and_answer(hook_server, hdb, annotator.token, pid, 10)
        wait_for(lambda: len(receiver.events(pid, outbox.BUDGET_THRESHOLD)) >= 3)
        time.sleep(1.0)  # a duplicate would show up by now
        events = receiver.events(pid, outbox.BUDGET_THRESHOLD)
    finally:
        receiver.close()
    marks = [(e["data"]["threshold_percent"], e["data"]["budget_spent"]) for e in events]
    assert marks == [(50, 5), (80, 8), (100, 10)]
    assert all(e["data"]["budget_cap"] == 10 for e in events)


def test_webhook_is_signed_and_carries_its_event_id(hook_server: LiveServer, hdb: Session) -> None:
    receiver = Receiver()
    try:
        _admin, annotator, pid = _project(hdb, receiver.url, budget_cap=2, n_candidates=2)
        _claim_and_answer(hook_server, hdb, annotator.token, pid, 1)
        wait_for(lambda: len(receiver.events(pid)) >= 1)
        headers, body = next((h, b) for h, b in receiver.calls if json.loads(b)["project_id"] == pid)
    finally:
        receiver.close()
    event = json.loads(body)
    assert verify_signature(SECRET, body, headers["x-pal-signature"])
    assert not verify_signature("another-secret", body, headers["x-pal-signature"])
    assert headers["x-pal-event-id"] == headers["idempotency-key"] == event["id"]
    assert headers["x-pal-event"] == event["type"] == outbox.BUDGET_THRESHOLD
    assert headers["content-type"] == "application/json"


def test_new_embedding_version_fires_one_event(hook_server: LiveServer, hdb: Session) -> None:
    receiver = Receiver()
    try:
        admin, _annotator, pid = _project(hdb, receiver.url)
        ids = np.asarray(sorted(item_labels(hdb, pid)), dtype=np.int64)
        with hook_server.client(admin.token) as client:
            resp = upload_embedding(client, pid, ids, np.eye(len(ids), 6, dtype=np.float32))
        assert resp.status_code == 201
        wait_for(lambda: len(receiver.events(pid, outbox.EMBEDDING_PUBLISHED)) >= 1)
        time.sleep(0.5)
        events = receiver.events(pid, outbox.EMBEDDING_PUBLISHED)
    finally:
        receiver.close()
    assert len(events) == 1
    assert events[0]["data"]["version"] == 1 and events[0]["data"]["dim"] == 6
    assert events[0]["data"]["n_items"] == len(ids)


def test_receiver_down_gets_every_event_later_exactly_once(hook_server: LiveServer, hdb: Session) -> None:
    port = free_port()  # nothing listens here yet
    _admin, annotator, pid = _project(hdb, f"http://127.0.0.1:{port}/hook", budget_cap=2, n_candidates=2)
    _claim_and_answer(hook_server, hdb, annotator.token, pid, 2)

    def rows() -> list[models.WebhookEvent]:
        hdb.rollback()
        return list(hdb.execute(sa.select(models.WebhookEvent).where(models.WebhookEvent.project_id == pid))
                    .scalars())

    wait_for(lambda: len(rows()) == 3 and all(r.attempts >= 2 for r in rows()))
    assert all(r.status == "pending" and r.delivered_at is None and r.last_error for r in rows())
    receiver = Receiver(port=port)
    try:
        wait_for(lambda: all(r.status == "delivered" for r in rows()))
        time.sleep(1.0)
        events = receiver.events(pid)
    finally:
        receiver.close()
    assert sorted(e["id"] for e in events) == sorted(r.event_id for r in rows())  # each once, none lost


def test_receiver_errors_are_retried_until_accepted(hook_server: LiveServer, hdb: Session) -> None:
    receiver = Receiver(fail_first=2)
    try:
        _admin, annotator, pid = _project(hdb, receiver.url, budget_cap=4, n_candidates=2)
        _claim_and_answer(hook_server, hdb, annotator.token, pid, 2)  # 50 %: one event
        wait_for(lambda: len(receiver.events(pid)) >= 1)
        time.sleep(0.8)
        calls = [json.loads(b)["id"] for _h, b in receiver.calls]
    finally:
        receiver.close()
    hdb.rollback()
    row = hdb.execute(sa.select(models.WebhookEvent).where(models.WebhookEvent.project_id == pid)).scalar_one()
    assert calls == [row.event_id] * 3  # two 500s, then accepted, then never again
    assert row.status == "delivered" and row.attempts == 3 and row.last_status == 200


def test_trainer_lag_alert_fires_once_until_a_new_version(hook_server: LiveServer, hdb: Session) -> None:
    receiver = Receiver()
    try:
        admin, annotator, pid = _project(hdb, receiver.url, n_candidates=8)
        _claim_and_answer(hook_server, hdb, annotator.token, pid, 5)  # 40 edges > LAG_LIMIT
        wait_for(lambda: len(receiver.events(pid, outbox.TRAINER_LAG)) >= 1)
        time.sleep(1.5)  # another lag check (every second here): no repeat
        first = receiver.events(pid, outbox.TRAINER_LAG)
        last_edge = hdb.scalar(sa.select(sa.func.max(models.Edge.id)).where(models.Edge.project_id == pid))
        ids = np.asarray(sorted(item_labels(hdb, pid)), dtype=np.int64)
        with hook_server.client(admin.token) as client:  # the trainer caught up: lag 0, no alert
            assert upload_embedding(client, pid, ids, np.eye(len(ids), 4, dtype=np.float32),
                                    cursor=f"0:{last_edge}").status_code == 201
        time.sleep(1.5)
        after = receiver.events(pid, outbox.TRAINER_LAG)
    finally:
        receiver.close()
    # The check may run while the fifth answer's edges are still arriving: any lag past the limit counts.
    assert len(first) == 1 and LAG_LIMIT < first[0]["data"]["lag_edges"] <= 40
    assert first[0]["data"]["limit"] == LAG_LIMIT
    assert len(after) == 1


def test_outbox_row_is_part_of_the_charging_transaction(hdb: Session) -> None:
    _admin, _annotator, pid = _project(hdb, "http://127.0.0.1:9/hook", budget_cap=1)
    project = hdb.get(models.Project, pid)
    assert project is not None
    count = sa.select(sa.func.count()).select_from(models.WebhookEvent).where(models.WebhookEvent.project_id == pid)
    assert charge_budget(hdb, project_id=pid)
    outbox.budget_charged(hdb, project=project)
    assert hdb.scalar(count) == 3  # 1 of 1 is 50, 80 and 100 %
    hdb.rollback()  # the claim failed after charging: its events vanish with the charge
    assert hdb.scalar(count) == 0


def test_budget_events_are_not_written_without_a_webhook_url(hdb: Session) -> None:
    _admin, _annotator, pid = _project(hdb, None, budget_cap=1)
    project = hdb.get(models.Project, pid)
    assert project is not None and charge_budget(hdb, project_id=pid)
    outbox.budget_charged(hdb, project=project)
    hdb.commit()
    assert hdb.scalar(sa.select(sa.func.count()).select_from(models.WebhookEvent)
                      .where(models.WebhookEvent.project_id == pid)) == 0


def test_same_event_enqueued_twice_is_stored_once(hdb: Session) -> None:
    _admin, _annotator, pid = _project(hdb, "http://127.0.0.1:9/hook")
    key = f"test:{uuid.uuid4().hex}"
    first = outbox.enqueue(hdb, project_id=pid, url="http://127.0.0.1:9/hook", type="test", dedup_key=key, data={})
    second = outbox.enqueue(hdb, project_id=pid, url="http://127.0.0.1:9/hook", type="test", dedup_key=key, data={})
    hdb.commit()
    assert (first, second) == (True, False)
    hdb.execute(sa.delete(models.WebhookEvent).where(models.WebhookEvent.dedup_key == key))  # nothing to deliver
    hdb.commit()


def test_threshold_marks_round_up() -> None:
    assert [outbox.threshold_mark(p, 10) for p in (50, 80, 100)] == [5, 8, 10]
    assert [outbox.threshold_mark(p, 3) for p in (50, 80, 100)] == [2, 3, 3]
    assert outbox.threshold_mark(50, 1) == 1


def test_backoff_doubles_and_is_capped() -> None:
    settings = Settings(webhook_backoff_seconds=2, webhook_backoff_max_seconds=30)
    rng = random.Random(0)
    delays = [backoff_seconds(n, settings, rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        nominal = min(2 * 2 ** (n - 1), 30)
        assert 0.8 * nominal <= d <= 1.2 * nominal


def test_worker_claims_do_not_hand_one_event_to_two_workers(hook_db: str, tmp_path: Path) -> None:
    """Two sessions claiming due events at once (as two server processes would) split them. A
    database of its own: no running worker may take the events first."""
    from server.webhooks import claim_due

    url, name = fresh_database_url("postgres" if hook_db.startswith("postgresql") else "sqlite", tmp_path)
    upgrade(url)
    engine = sa.create_engine(url)
    try:
        with sessionmaker(bind=engine, expire_on_commit=False)() as db:
            _admin, _annotator, pid = _project(db, None, budget_cap=1)
            for n in range(10):
                outbox.enqueue(db, project_id=pid, url="http://127.0.0.1:9/hook", type="test",
                               dedup_key=f"split:{n}", data={})
            db.commit()
        with sessionmaker(bind=engine)() as a, sessionmaker(bind=engine)() as b:
            first = [e.id for e in claim_due(a, limit=6, lease_seconds=60)]
            second = [e.id for e in claim_due(b, limit=6, lease_seconds=60)]
            third = claim_due(a, limit=6, lease_seconds=60)  # all leased: nothing left
    finally:
        engine.dispose()
        if name:
            _drop_pg_database(name)
    assert len(first) == 6 and len(second) == 4 and not set(first) & set(second)
    assert third == []
