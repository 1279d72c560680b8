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
from tests.support import make_project, make_user


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
