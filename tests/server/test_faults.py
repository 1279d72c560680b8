"""Faults under load (slow): a uvicorn worker killed with SIGKILL twice, the edge-feed consumer
killed and restarted, and PostgreSQL restarted, while simulated annotators keep working. Clients
retry; afterwards ``pal audit`` must pass (nothing lost, nothing doubled, the consumer saw every
edge exactly once), no client gave up, and everything is running again.

The PostgreSQL restart cuts every session on the machine's cluster, so it runs under CI=true (a
machine of its own) or with PAL_TEST_RESTART_PG=1; elsewhere the other faults run without it.
``python -m bench.faults`` runs the same with more load and writes bench/faults.md."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import pytest

from bench.faults import pg_ready
from bench.faults import run as run_faults

pytestmark = pytest.mark.slow


def test_faults_under_load_lose_nothing(pg_ready_fixture: bool, tmp_path: Path) -> None:
    restart = os.environ.get("CI", "").lower() == "true" or os.environ.get("PAL_TEST_RESTART_PG") == "1"
    args = argparse.Namespace(workers=2, rate=30.0, duration=30.0, items=400, annotators=300, out_dir=tmp_path,
                              work_dir=tmp_path / "run", keep_db=False, restart_postgres=restart)
    result = asyncio.run(run_faults(args))
    assert result["audit"]["violations"] == []
    assert result["load"]["n_failures"] == 0, result["load"]["failures"]
    assert result["load"]["idempotency_violations"] == []
    assert result["killed_workers_replaced"]
    assert result["consumer"]["edges_consumed"] == result["consumer"]["edges_in_db"] > 0
    assert pg_ready()
    recovered = [(e["fault"], e["recovered_after_s"]) for e in result["faults"] if "recovered_after_s" in e]
    assert len(recovered) == (3 if restart else 2)
    assert all(seconds is not None and seconds < 15 for _, seconds in recovered), recovered


@pytest.fixture
def pg_ready_fixture(pg_ready: bool) -> bool:
    if not pg_ready:
        pytest.skip("PostgreSQL not reachable: fault test skipped")
    return pg_ready
