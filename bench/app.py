"""The PAL app as the benchmarks serve it: the real app, plus

- ``POST /bench/insert``: the one-INSERT baseline, on the same uvicorn workers and the same
  SQLAlchemy/psycopg pool as the PAL routes (a throughput ceiling for any write endpoint);
- pool-wait instrumentation: every worker times each connection checkout and appends its totals
  to ``$PAL_BENCH_STATS_DIR/pool-<pid>.json`` once a second (the benchmark sums the workers).

Only the benchmarks import this module; the production app is ``server.main:app``."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from server.db import get_engine
from server.deps import DbSession
from server.main import create_app

INSERT_SQL = sa.text("INSERT INTO bench_inserts (payload) VALUES (:payload)")
CREATE_SQL = "CREATE TABLE IF NOT EXISTS bench_inserts (id bigserial PRIMARY KEY, payload integer NOT NULL)"


class PoolWaits:
    """Checkout waits of this process's pool: count, total seconds, waits over 1/10/100 ms."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.over = {"1ms": 0, "10ms": 0, "100ms": 0}
        self.timeouts = 0

    def record(self, seconds: float) -> None:
        with self.lock:
            self.count += 1
            self.total += seconds
            self.max = max(self.max, seconds)
            for label, limit in (("1ms", 1e-3), ("10ms", 1e-2), ("100ms", 1e-1)):
                if seconds > limit:
                    self.over[label] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"pid": os.getpid(), "count": self.count, "total_s": self.total, "max_s": self.max,
                    "over": dict(self.over), "timeouts": self.timeouts}


waits = PoolWaits()


class GcPauses:
    """Garbage-collector pauses of this process, by generation (stop-the-world for every thread)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.max = [0.0, 0.0, 0.0]

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        gen = info.get("generation", 0)
        pause = time.perf_counter() - self.started
        self.count[gen] += 1
        self.total[gen] += pause
        self.max[gen] = max(self.max[gen], pause)

    def snapshot(self) -> dict[str, Any]:
        return {"count": list(self.count), "total_s": list(self.total), "max_s": list(self.max)}


gc_pauses = GcPauses()
gc.callbacks.append(gc_pauses.callback)


def _instrument_pool() -> None:
    pool = get_engine().pool
    original = pool._do_get  # the queue wait lives here (QueuePool)

    def timed_get() -> Any:
        started = time.perf_counter()
        try:
            return original()
        except sa.exc.TimeoutError:
            with waits.lock:
                waits.timeouts += 1
            raise
        finally:
            waits.record(time.perf_counter() - started)

    pool._do_get = timed_get  # type: ignore[method-assign]


def _write_stats_forever(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"pool-{os.getpid()}.json"
    while True:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps({**waits.snapshot(), "gc": gc_pauses.snapshot()}))
        tmp.replace(target)
        time.sleep(1.0)


def create_bench_app() -> FastAPI:
    app = create_app()

    @app.post("/bench/insert", include_in_schema=False)
    def insert(db: DbSession) -> dict[str, bool]:
        db.execute(INSERT_SQL, {"payload": 1})
        db.commit()
        return {"ok": True}

    _instrument_pool()
    if folder := os.environ.get("PAL_BENCH_STATS_DIR"):
        threading.Thread(target=_write_stats_forever, args=(Path(folder),), daemon=True).start()
    return app


app = create_bench_app()
