"""Overload: a burst bigger than the database pool gets fast 503s with Retry-After (not a queue that
grows without bound), the server recovers at once, and PostgreSQL's timeouts are in force.

The server runs with one pooled connection and a 0.2 s pool timeout. The test holds the project
row locked from outside, so the first claim (which must charge the budget) keeps the only
connection while it waits; everything behind it waits for the pool and is refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.config import Settings
from server.db import make_engine
from tests.conftest import LiveServer, start_server, stop_server
from tests.support import Actor, make_project, make_user

POOL_TIMEOUT = 0.2


@pytest.fixture
def tiny_pool_server(database_url: str, backend: str, tmp_path: Path) -> Iterator[LiveServer]:
    if backend != "postgres":
        pytest.skip("pool limits are PostgreSQL's (SQLite serialises writers instead)")
    server = start_server(database_url, tmp_path / "server.log", env={
        "PAL_DB_POOL_SIZE": "1", "PAL_DB_POOL_OVERFLOW": "0", "PAL_DB_POOL_TIMEOUT": str(POOL_TIMEOUT),
        "PAL_WEBHOOK_WORKER": "false",
    })
    yield server
    stop_server(server)


def _timed_claim(server: LiveServer, actor: Actor, pid: int) -> tuple[httpx.Response, float, float]:
    """The response, how long it took, and when it ended (monotonic clock)."""
    with server.client(actor.token) as client:
        started = time.monotonic()
        resp = client.post(f"/api/v1/projects/{pid}/tasks/claim")
        ended = time.monotonic()
        return resp, ended - started, ended


def test_burst_bigger_than_the_pool_gets_fast_503s(tiny_pool_server: LiveServer, db: Session,
                                                   database_url: str) -> None:
    annotators = [make_user(db, "annotator") for _ in range(24)]
    pid = make_project(db, n_items=30, members=annotators)
    engine = sa.create_engine(database_url)
    blocker = engine.connect()
    blocker.execute(sa.text("SELECT id FROM projects WHERE id = :p FOR UPDATE"), {"p": pid})
    released: list[float] = []

    def unlock() -> None:
        released.append(time.monotonic())
        blocker.rollback()

    release = threading.Timer(1.5, unlock)
    release.start()
    try:
        with ThreadPoolExecutor(len(annotators)) as pool:
            results = list(pool.map(lambda a: _timed_claim(tiny_pool_server, a, pid), annotators))
    finally:
        release.join()
        blocker.close()
        engine.dispose()
    refused = [(r, t, end) for r, t, end in results if r.status_code == 503]
    served = [(r, t, end) for r, t, end in results if r.status_code == 200]
    assert len(refused) + len(served) == len(results), [r.status_code for r, _, _ in results]
    assert len(refused) >= len(results) // 2
    assert all(r.headers.get("Retry-After") == "1" and r.json()["error"]["code"] == "overloaded"
               for r, _, _ in refused)
    # Refused after the pool timeout, long before the lock went away: nobody queued behind it.
    assert max(t for _, t, _ in refused) < 1.2
    assert max(end for _, _, end in refused) < released[0]
    # The request that held the connection finished once the lock was released.
    assert any(end >= released[0] for _, _, end in served)


def test_server_answers_normally_right_after_a_burst(tiny_pool_server: LiveServer, db: Session,
                                                     database_url: str) -> None:
    annotators = [make_user(db, "annotator") for _ in range(40)]
    pid = make_project(db, n_items=30, members=annotators)
    with ThreadPoolExecutor(len(annotators)) as pool:
        burst = list(pool.map(lambda a: _timed_claim(tiny_pool_server, a, pid), annotators))
    assert {r.status_code for r, _, _ in burst} <= {200, 503}
    after = [_timed_claim(tiny_pool_server, a, pid) for a in annotators[:10]]
    assert [r.status_code for r, _, _ in after] == [200] * 10
    assert max(t for _, t, _ in after) < 1.0
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        stuck = conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state IN ('active', 'idle in transaction')")).scalar()
    engine.dispose()
    assert stuck == 0


def test_engine_sets_statement_lock_and_idle_transaction_timeouts(database_url: str, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL settings")
    engine = make_engine(Settings(database_url=database_url, statement_timeout_ms=300))
    try:
        with engine.connect() as conn:
            shown = {name: conn.execute(sa.text(f"SHOW {name}")).scalar()
                     for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")}
        started = time.perf_counter()
        with pytest.raises(sa.exc.OperationalError, match="statement timeout"), engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_sleep(5)"))
        elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
    assert shown == {"statement_timeout": "300ms", "lock_timeout": "5s", "idle_in_transaction_session_timeout": "1min"}
    assert elapsed < 2.0
