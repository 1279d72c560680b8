"""The edge feed delivers every committed edge exactly once, even when transactions commit out of
id order (a writer that took its id early commits late)."""

from __future__ import annotations

import random
import threading
import time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pal.wire import START_CURSOR
from server import models
from server.config import Settings
from server.db import make_engine
from tests.conftest import LiveServer
from tests.support import PG_ADMIN_URL, make_project, make_user


def test_feed_delivers_out_of_order_commits_exactly_once(
    live_server: LiveServer, db: Session, database_url: str
) -> None:
    trainer = make_user(db, "trainer")
    pid = make_project(db, n_items=20)
    items = db.execute(sa.select(models.Item.id).where(models.Item.project_id == pid)).scalars().all()
    writers_engine = make_engine(Settings(database_url=database_url, db_pool_size=20))
    committed: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(20):
            with writers_engine.begin() as conn:
                ids = conn.execute(
                    sa.insert(models.Edge).returning(models.Edge.id),
                    [{"project_id": pid, "src": rng.choice(items), "dst": rng.choice(items), "sign": 1,
                      "weight": 1.0, "kind": "known"} for _ in range(rng.randint(1, 3))],
                ).scalars().all()
                time.sleep(rng.uniform(0, 0.05))  # hold the transaction open: later ids may commit first
            with lock:
                committed.extend(ids)

    delivered: list[int] = []

    def poller() -> None:
        cursor = START_CURSOR
        with live_server.client(trainer.token) as client:
            while True:
                finished = done.is_set()
                page = client.get(f"/api/v1/projects/{pid}/edges", params={"cursor": cursor, "limit": 7}).json()
                delivered.extend(e["id"] for e in page["edges"])
                cursor = page["next_cursor"]
                if finished and not page["has_more"] and not page["edges"]:
                    return
                if not page["edges"]:
                    time.sleep(0.001)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(16)]
    poll = threading.Thread(target=poller)
    poll.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    poll.join(timeout=120)
    writers_engine.dispose()
    assert not poll.is_alive()
    assert len(delivered) == len(set(delivered))
    assert sorted(delivered) == sorted(committed)


def test_feed_says_when_an_open_transaction_elsewhere_holds_edges_back(
    live_server: LiveServer, db: Session, backend: str
) -> None:
    """A transaction left open in another database of the cluster holds new edges back; the feed,
    the stats and /metrics name it, and deliver the edges once it ends."""
    trainer = make_user(db, "trainer")
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=4)
    items = db.execute(sa.select(models.Item.id).where(models.Item.project_id == pid)).scalars().all()

    def add_edge() -> int:
        edge_id = db.execute(sa.insert(models.Edge).returning(models.Edge.id), [
            {"project_id": pid, "src": items[0], "dst": items[1], "sign": 1, "weight": 1.0, "kind": "known"}]
        ).scalar_one()
        db.commit()
        return int(edge_id)

    def feed() -> dict:
        with live_server.client(trainer.token) as client:
            return client.get(f"/api/v1/projects/{pid}/edges").json()

    if backend == "sqlite":
        add_edge()
        assert feed()["held_back"] is None  # writers are serialised: nothing is ever held back
        return
    other = sa.create_engine(PG_ADMIN_URL)  # the cluster's `postgres` database, not PAL's
    try:
        with other.connect() as conn:
            conn.execute(sa.text("SELECT pg_current_xact_id()"))  # a write transaction: it holds the horizon
            blocker_pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            edge_id = add_edge()
            page = feed()
            assert page["edges"] == [] and page["has_more"] is False
            held = page["held_back"]
            assert held["edges"] == 1 and held["oldest_edge_age_s"] >= 0
            assert held["blocker_pid"] == blocker_pid and held["blocker_database"] == "postgres"
            with live_server.client(admin.token) as client:
                stats = client.get(f"/api/v1/projects/{pid}/stats").json()
                metrics = client.get("/metrics").text
            assert stats["feed_held_back"]["blocker_pid"] == blocker_pid
            assert f'pal_feed_held_back_edges{{project="{pid}"}} 1.0' in metrics
            conn.rollback()
        page = feed()
        assert [e["id"] for e in page["edges"]] == [edge_id] and page["held_back"] is None
    finally:
        other.dispose()
