"""Annotator latency: from pressing Enter to the next grid fully painted, in a real browser.

One command (``python -m bench.annotator_latency`` or ``pal bench annotator-latency``) starts a
fresh database and a real uvicorn server with the demo images, signs an annotator in with
Debian's Chromium and answers grids with the keyboard. The page records, for every grid, the time
from the key press to the frame that shows the next grid with all its images decoded
(``requestAnimationFrame`` after ``img.decode()``, then the task queued from it: just after that
frame is painted). The run is repeated with prefetching off (``/annotate?prefetch=0``: the
page claims the next task and fetches its images only after Enter), the baseline, in the same
process against the same server; the optional network round-trip emulation (Chrome DevTools
``Network.emulateNetworkConditions``) shows what a real network adds to the baseline.

Writes ``bench/annotator_latency.json`` and ``bench/annotator_latency.md``."""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.machine import machine
from bench.stack import bootstrap_admin, fresh_database, start_server
from pal.assets import asset_dir

ROOT = Path(__file__).resolve().parent.parent
DEMO = asset_dir("demo") / "fashion-mnist-demo.npz"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
PASSWORD = "bench-password-123"
GOAL_MS = 100.0


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median_ms": statistics.median(values), "p95_ms": percentile(values, 95),
            "mean_ms": statistics.fmean(values), "min_ms": min(values), "max_ms": max(values)}


def setup(url: str, admin_token: str, *, items: int, oracle: str, n_candidates: int) -> tuple[int, list[str]]:
    """A project holding the first ``items`` demo images and one annotator per run; (project, e-mails)."""
    with np.load(DEMO, allow_pickle=False) as data:
        buf = io.BytesIO()
        np.savez(buf, images=data["images"][:items], labels=data["labels"][:items], split=data["split"][:items])
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as api:
        project = api.post("/api/v1/projects", json={
            "name": f"latency-{uuid.uuid4().hex[:6]}", "oracle": oracle, "n_candidates": n_candidates,
            "budget_cap": 100_000}).json()
        pid = int(project["id"])
        api.post(f"/api/v1/projects/{pid}/imports", files={"file": ("demo.npz", buf.getvalue())}).raise_for_status()
        emails = []
        for _ in range(8):
            email = f"annotator-{uuid.uuid4().hex[:8]}@bench.invalid"
            user = api.post("/api/v1/users", json={"email": email, "role": "annotator", "password": PASSWORD}).json()
            api.post(f"/api/v1/projects/{pid}/members/{user['id']}").raise_for_status()
            emails.append(email)
    return pid, emails


def run_grids(browser: Any, url: str, pid: int, email: str, *, prefetch: bool, grids: int, warmup: int,
              think_ms: int, rtt_ms: int, seed: int) -> list[float]:
    """Answer ``warmup + grids`` grids; the latencies (ms) of the last ``grids``."""
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
    try:
        resp = context.request.post(f"{url}/api/v1/auth/login", data={"email": email, "password": PASSWORD})
        assert resp.ok, resp.text()
        page = context.new_page()
        if rtt_ms:
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": rtt_ms,
                                                          "downloadThroughput": -1, "uploadThroughput": -1})
        page.goto(f"/annotate/{pid}" + ("" if prefetch else "?prefetch=0"))
        rng = np.random.default_rng(seed)
        seq_js = "() => Number(document.body.dataset.gridSeq || 0)"
        page.wait_for_function("() => Number(document.body.dataset.gridSeq || 0) > 0", timeout=30_000)
        for _ in range(warmup + grids):
            seq = page.evaluate(seq_js)
            page.wait_for_timeout(think_ms)  # the annotator looks at the grid
            for key in rng.choice(8, size=int(rng.integers(0, 4)), replace=False):
                page.keyboard.press(str(int(key) + 1))
            page.keyboard.press("Enter")
            page.wait_for_function("(n) => Number(document.body.dataset.gridSeq || 0) > n", arg=seq,
                                   timeout=30_000)
        timings: list[float] = page.evaluate("() => window.palTimings")
        page.wait_for_function("() => !Object.keys(localStorage).some(k => k.startsWith('pal.outbox'))")
        return timings[-grids:]
    finally:
        context.close()


def write_report(result: dict[str, Any], out: Path) -> None:
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [
        "# Annotator latency: Enter to the next grid painted",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; {result['browser']}; {result['database']}; "
        f"{result['grids']} grids per run after {result['warmup']} warm-up grids, {result['think_ms']} ms "
        f"looking at each grid; {result['items']} demo images, {result['n_candidates']} candidates, "
        f"oracle `{result['oracle']}`; 1-minute load average {m['load_average_1m_at_start']} at the start and "
        f"{m['load_average_1m_at_end']} at the end (a machine shared with other jobs). Measured in the page "
        "from the key press to the first frame painted after every image of the next grid is decoded.",
        "",
        "| network | prefetch | median ms | p95 ms | mean ms | baseline median / this median |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        net = "localhost" if not run["rtt_ms"] else f"+{run['rtt_ms']} ms round trip (emulated)"
        s = run["summary"]
        lines.append(f"| {net} | {'on' if run['prefetch'] else 'off (baseline)'} | {s['median_ms']:.1f} | "
                     f"{s['p95_ms']:.1f} | {s['mean_ms']:.1f} | {run['speedup']:.1f}x |")
    lines += ["", f"Goal: median under {GOAL_MS:.0f} ms with prefetch: "
              + ("met" if result["goal_met"] else "NOT met") + ".", ""]
    out.with_suffix(".md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pal bench annotator-latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, default=50, help="measured grids per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--think-ms", type=int, default=400, help="time spent looking at each grid")
    parser.add_argument("--rtt", default="0,50", help="comma-separated emulated round trips in ms (0: none)")
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--n-candidates", type=int, default=8)
    parser.add_argument("--oracle", default="random", choices=["random", "active", "uncertainty"])
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server URL to create a scratch database on, or 'sqlite'")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "annotator_latency")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pal-latency-") as tmp:
        work = Path(tmp)
        db = fresh_database(None if args.database == "sqlite" else args.database, work)
        server = start_server(db.url, work, env={"PAL_SECRET_KEY": "bench"})
        try:
            admin_token = bootstrap_admin(db.url)
            started = time.monotonic()
            pid, emails = setup(server.url, admin_token, items=args.items, oracle=args.oracle,
                                n_candidates=args.n_candidates)
            print(f"set up {args.items} images in {time.monotonic() - started:.1f} s; server {server.url}")
            runs: list[dict[str, Any]] = []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                version = f"Chromium {browser.version}"
                for n, rtt in enumerate(int(x) for x in args.rtt.split(",")):
                    pair: dict[bool, dict[str, float]] = {}
                    for prefetch in (True, False):
                        email = emails[2 * n + (0 if prefetch else 1)]
                        timings = run_grids(browser, server.url, pid, email, prefetch=prefetch, grids=args.grids,
                                            warmup=args.warmup, think_ms=args.think_ms, rtt_ms=rtt, seed=n)
                        pair[prefetch] = summary(timings)
                        print(f"rtt {rtt} ms, prefetch {'on' if prefetch else 'off'}: median "
                              f"{pair[prefetch]['median_ms']:.1f} ms, p95 {pair[prefetch]['p95_ms']:.1f} ms")
                        runs.append({"rtt_ms": rtt, "prefetch": prefetch, "summary": pair[prefetch],
                                     "timings_ms": [round(t, 2) for t in timings]})
                    for run in runs[-2:]:
                        run["speedup"] = pair[False]["median_ms"] / run["summary"]["median_ms"]
                browser.close()
        finally:
            server.stop()
            db.drop()
    database = "SQLite" if args.database == "sqlite" else "PostgreSQL"
    result = {
        "benchmark": "annotator_latency",
        "machine": machine(load_average_1m_at_start=round(load_at_start, 2),
                           load_average_1m_at_end=round(os.getloadavg()[0], 2)),
        "browser": version, "database": database,
        "grids": args.grids, "warmup": args.warmup, "think_ms": args.think_ms, "items": args.items,
        "n_candidates": args.n_candidates, "oracle": args.oracle, "goal_ms": GOAL_MS,
        "goal_met": all(r["summary"]["median_ms"] < GOAL_MS for r in runs if r["prefetch"]), "runs": runs,
    }
    write_report(result, args.out)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
