"""Cold start: the first grid after a restart, and a burst of claims on a process that just started.

    python -m bench.cold_start [--items 100000] [--edges 50000] [--clients 32]

A fresh PostgreSQL database gets a project of ``--items`` synthetic images and ``--edges`` answer
edges (bulk-written), no embedding (the oracle's cold-start path: pixel features). Then, twice, a
server process is started:

1. *first claim*: one annotator claims the moment ``/healthz`` answers; the time to its grid;
2. *burst*: ``--clients`` annotators claim at once the moment ``/healthz`` answers; their status
   codes, the slowest one, and the error lines of the server log (pool timeouts, tracebacks).

The baseline in the same run is the same claim on the warm process (the second claim of phase 1), so
the report gives the cold claim as a ratio of a warm one. Writes ``bench/cold_start.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from bench import harness
from bench.machine import machine

ROOT = Path(__file__).resolve().parent.parent
ERROR_MARKERS = ("Traceback", "ERROR", "QueuePool limit")


def add_edges(url: str, project_id: int, n_edges: int, seed: int = 0) -> None:
    """``n_edges`` answer edges between random items, written in bulk (not through the API)."""
    from server import models

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        ids = np.asarray(conn.execute(sa.select(models.Item.id).where(models.Item.project_id == project_id))
                         .scalars().all(), dtype=np.int64)
        rng = np.random.default_rng(seed)
        src = rng.choice(ids, n_edges)
        dst = rng.choice(ids, n_edges)
        keep = src != dst
        rows = [{"project_id": project_id, "src": int(a), "dst": int(b), "sign": int(s), "weight": 1.0,
                 "kind": "answer"}
                for a, b, s in zip(src[keep], dst[keep], rng.choice([-1, 1], n_edges)[keep], strict=False)]
        for start in range(0, len(rows), 10_000):
            conn.execute(sa.insert(models.Edge), rows[start : start + 10_000])
    engine.dispose()


def claim(server: str, token: str, project_id: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        status = client.post(f"/api/v1/projects/{project_id}/tasks/claim").status_code
    return status, time.perf_counter() - t0


def error_lines(log: Path) -> list[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line for line in text.splitlines() if any(m in line for m in ERROR_MARKERS)]


def phase(url: str, seeded: harness.Seeded, work: Path, name: str, clients: int) -> dict[str, Any]:
    log = work / f"server-{name}.log"
    log.unlink(missing_ok=True)
    server = harness.start_server(url, log, workers=1, app="server.main:app")
    try:
        tokens = [t for _, t in seeded.annotators[:clients]]
        with ThreadPoolExecutor(len(tokens)) as pool:
            results = list(pool.map(lambda t: claim(server.url, t, seeded.project_id), tokens))
        warm = None
        if clients == 1:
            # The stats route builds the project state in the request: the claim after it is warm.
            with httpx.Client(base_url=server.url, timeout=600,
                              headers={"Authorization": f"Bearer {seeded.admin_token}"}) as admin:
                admin.get(f"/api/v1/projects/{seeded.project_id}/stats").raise_for_status()
            warm = claim(server.url, seeded.annotators[-1][1], seeded.project_id)
    finally:
        server.stop()
    codes = [s for s, _ in results]
    return {"clients": len(tokens), "statuses": {str(c): codes.count(c) for c in sorted(set(codes))},
            "server_errors": sum(1 for c in codes if c >= 500), "slowest_s": round(max(s for _, s in results), 3),
            "first_s": round(results[0][1], 3) if clients == 1 else None,
            "warm_s": None if warm is None else round(warm[1], 4), "log_errors": error_lines(log)[:20]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    url, name = harness.create_database("pal_cold")
    work = harness.empty_work_dir(args.work_dir)
    try:
        t0 = time.perf_counter()
        seeded = harness.seed(url, n_annotators=args.clients + 1, n_items=args.items, budget_cap=10**6,
                              redundancy=1, n_candidates=8, oracle="active")
        add_edges(url, seeded.project_id, args.edges)
        setup_s = time.perf_counter() - t0
        first = phase(url, seeded, work, "first", 1)
        burst = phase(url, seeded, work, "burst", args.clients)
    finally:
        if not args.keep_db:
            harness.drop_database(name)
    return {"items": args.items, "edges": args.edges, "setup_s": round(setup_s, 1), "first_claim": first,
            "burst": burst, "cold_to_warm": round(first["first_s"] / max(first["warm_s"], 1e-6), 1),
            "goals": {"first_claim_s": 1.0, "burst_5xx": 0, "log_errors": 0},
            "machine": machine(postgres=harness.pg_version(), load_average=[round(x, 2) for x in os.getloadavg()])}


def write_markdown(result: dict[str, Any], path: Path) -> None:
    first, burst = result["first_claim"], result["burst"]
    m = result["machine"]
    lines = [
        "# Cold start", "",
        f"`python -m bench.cold_start`: a project of {result['items']:,} items and {result['edges']:,} edges, no "
        f"embedding, PostgreSQL {m['postgres']}, one server process, on {m['cpu']} ({m['cores']} cores; 1-minute load "
        f"average at the end {m['load_average'][0]}). A warm claim is one made after the state is built.", "",
        "| measure | result | goal |", "|---|---|---|",
        f"| first claim after a start | {first['first_s']:.3f} s ({result['cold_to_warm']}x a warm claim, "
        f"{first['warm_s']:.4f} s) | < 1 s |",
        f"| {burst['clients']} claims at once on a fresh process: 5xx | {burst['server_errors']} "
        f"({burst['statuses']}) | 0 |",
        f"| slowest of those claims | {burst['slowest_s']:.3f} s | |",
        f"| error lines in the server log | {len(first['log_errors']) + len(burst['log_errors'])} | 0 |", "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pal bench cold-start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="project items (default 100,000)")
    parser.add_argument("--edges", type=int, default=50_000, help="answer edges (default 50,000)")
    parser.add_argument("--clients", type=int, default=32, help="annotators claiming at once (default 32)")
    harness.add_run_arguments(parser, "cold_start", ROOT / "bench")
    args = parser.parse_args(argv)
    result = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "cold_start.json").write_text(json.dumps(result, indent=2))
    write_markdown(result, args.out_dir / "cold_start.md")
    print(json.dumps({k: result[k] for k in ("first_claim", "burst", "cold_to_warm")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
