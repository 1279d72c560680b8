"""PAL under faults: kill -9 a server worker, kill -9 the edge-feed consumer, restart PostgreSQL,
all while simulated annotators keep working; then nothing may be lost or doubled.

    python -m bench.faults          # ~2 minutes; writes bench/faults.json and bench/faults.md

On a fresh PostgreSQL database: uvicorn with several workers, the stand-in trainer
(``bench.poller``, which resumes from its own log as the trainer resumes from its checkpoint),
and an open-model load of annotator episodes (claim -> think -> answer, retried answers, abandoned
claims; every client retries on 503 and on connection errors, as the web page does). Faults are
injected on a schedule. Afterwards the consumer catches up, everything stops, and ``pal audit``
checks the database against the client log and the consumer's log. PostgreSQL is restarted with
``pg_ctlcluster <version> <cluster> restart -m fast`` (sessions are cut, as in a crash or a
failover) and is always started again, even when the benchmark fails.

Recovery is measured as the time from a fault until the clients see acknowledgements flow again
at half the offered rate over a one-second window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.load import wait_consumer
from bench.loadgen import Mix, Recorder, Workload, annotator_arrival, run_open, summarise
from bench.machine import machine

HERE = Path(__file__).resolve().parent


def pg_cluster() -> tuple[str, str]:
    """(version, name) of the local cluster on port 5432, from pg_lsclusters."""
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "5432":
            return parts[0], parts[1]
    raise RuntimeError(f"no PostgreSQL cluster on port 5432 in pg_lsclusters: {out!r}")


def pg_ready(timeout: float = 2.0) -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-t", str(int(max(timeout, 1)))],
                          capture_output=True).returncode == 0


def restart_postgres() -> dict[str, Any]:
    """Restart the cluster (fast mode: sessions are terminated). Tries the plain command first, then
    the form that skips the systemd redirect; returns what ran and how long PostgreSQL was away."""
    version, name = pg_cluster()
    started = time.monotonic()
    tried = []
    for cmd in (["pg_ctlcluster", version, name, "restart", "-m", "fast"],
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m", "fast"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        tried.append({"command": " ".join(cmd), "returncode": done.returncode, "stderr": done.stderr.strip()[-300:]})
        if done.returncode == 0:
            break
    ensure_postgres()
    return {"tried": tried, "down_s": round(time.monotonic() - started, 2)}


def ensure_postgres(timeout: float = 60.0) -> None:
    """PostgreSQL must be running when this benchmark ends, whatever happened."""
    if pg_ready():
        return
    version, name = pg_cluster()
    for cmd in (["pg_ctlcluster", version, name, "start"],
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"]):
        subprocess.run(cmd, capture_output=True, timeout=120)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pg_ready():
                return
            time.sleep(0.5)
    raise RuntimeError("PostgreSQL did not come back: start it with pg_ctlcluster")


class Faults:
    """The fault schedule and what happened at each fault."""

    def __init__(self, server: harness.Server, start_consumer: Any) -> None:
        self.server = server
        self.start_consumer = start_consumer
        self.consumer: subprocess.Popen[bytes] = start_consumer()
        self.log: list[dict[str, Any]] = []

    def kill_worker(self) -> dict[str, Any]:
        pids = self.server.worker_pids()
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        return {"fault": "kill -9 a uvicorn worker", "pid": victim, "workers_before": pids}

    def kill_consumer(self) -> dict[str, Any]:
        victim = self.consumer.pid
        os.kill(victim, signal.SIGKILL)
        self.consumer.wait()
        return {"fault": "kill -9 the edge-feed consumer (trainer stand-in)", "pid": victim}

    def restart_consumer(self) -> dict[str, Any]:
        self.consumer = self.start_consumer()
        return {"fault": "consumer restarted (resumes from its log)", "pid": self.consumer.pid}

    def restart_postgres(self) -> dict[str, Any]:
        return {"fault": "PostgreSQL restarted (fast mode)", **restart_postgres()}

    async def run(self, schedule: list[tuple[float, str]], t0: float) -> None:
        for at, name in schedule:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            started = time.monotonic()
            event = await asyncio.to_thread(getattr(self, name))
            event.update(at_s=round(started - t0, 2), t=started)
            self.log.append(event)
            print(f"  t={event['at_s']:5.1f}s {event['fault']}", flush=True)


def recovery(acked: list[float], fault_t: float, rate: float, horizon: float = 60.0) -> float | None:
    """Seconds from the fault until one second's acknowledgements reach half the offered rate."""
    times = sorted(t for t in acked if t >= fault_t)
    for i, t in enumerate(times):
        window_end = t + 1.0
        if window_end - fault_t > horizon:
            break
        n = 0
        for u in times[i:]:
            if u > window_end:
                break
            n += 1
        if n >= rate * 0.5:
            return round(t - fault_t, 2)
    return None


def errors_around(trace: list[tuple[float, str, int]], start: float, end: float) -> dict[str, int]:
    out: dict[str, int] = {}
    for t, endpoint, status in trace:
        if start <= t < end and (status == 0 or status >= 500):
            key = f"{endpoint} {'no reply' if status == 0 else status}"
            out[key] = out.get(key, 0) + 1
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work_dir = harness.empty_work_dir(args.work_dir)
    client_log, feed_log = work_dir / "answers.jsonl", work_dir / "feed.jsonl"
    ensure_postgres()
    url, db_name = harness.create_database("pal_faults")
    result: dict[str, Any] = {"machine": machine(), "postgres": harness.pg_version(),
                              "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    server = None
    faults = None
    try:
        seeded = harness.seed(url, n_annotators=args.annotators, n_items=args.items, budget_cap=10_000_000,
                              redundancy=2, n_candidates=8, oracle="random")
        env = {"PAL_LEASE_SECONDS": "10", "PAL_DB_POOL_OVERFLOW": "0", "PAL_GRAPH_REFRESH_SECONDS": "2"}
        server = harness.start_server(url, work_dir / "server.log", workers=args.workers, env=env)
        srv = server
        faults = Faults(server, lambda: harness.start_poller(srv.url, seeded.trainer_token, seeded.project_id,
                                                             feed_log, interval=0.3))
        mix = Mix(give_up_s=120.0)
        work = Workload(server.url, seeded.project_id, seeded.annotators, mix, client_log)
        d = args.duration
        schedule = [(0.15 * d, "kill_worker"), (0.3 * d, "kill_consumer"), (0.35 * d, "restart_consumer"),
                    (0.5 * d, "restart_postgres"), (0.75 * d, "kill_worker")]
        if not args.restart_postgres:
            schedule = [s for s in schedule if s[1] != "restart_postgres"]
        rec = Recorder()
        t0 = time.monotonic()
        print(f"load at {args.rate}/s for {d}s with faults", flush=True)
        try:
            await asyncio.gather(run_open(args.rate, d, annotator_arrival(work), rec), faults.run(schedule, t0))
        finally:
            await work.close()
        summary = summarise(rec, rate=args.rate, duration=d, t0=t0, settle=mix.think_s[1] + 0.5,
                            expected_share=1.0 - mix.abandon_share)
        expected_rate = args.rate * (1.0 - mix.abandon_share)
        events = []
        times = [e["t"] for e in faults.log] + [t0 + d + 30.0]
        for i, event in enumerate(faults.log):
            t = event.pop("t")
            if event["fault"].startswith(("kill -9 a uvicorn", "PostgreSQL")):
                event["recovered_after_s"] = recovery(rec.acked, t, expected_rate)
            # Errors the clients saw from this fault until the next one (10 s at most).
            event["errors_after"] = errors_around(rec.trace, t, min(t + 10, times[i + 1]))
            events.append(event)
        result.update(
            config={"restart_postgres": args.restart_postgres,
                    "workers": args.workers, "rate_per_s": args.rate, "duration_s": d, "items": args.items,
                    "annotators": args.annotators, "client_retry": "503 (after Retry-After, at most 1 s) and "
                    "connection errors, for up to 120 s per request", "consumer": "bench.poller"},
            faults=events, load=summary,
            workers_after=len(server.worker_pids()),
            killed_workers_replaced=len(server.worker_pids()) == args.workers and not (
                {e["pid"] for e in events if "uvicorn" in e["fault"]} & set(server.worker_pids())),
        )
        result["consumer"] = wait_consumer(url, seeded.project_id, feed_log)
    finally:
        if faults is not None and faults.consumer.poll() is None:
            faults.consumer.send_signal(signal.SIGTERM)
            faults.consumer.wait(timeout=30)
        if server is not None:
            server.stop()
        ensure_postgres()
    from server.audit import run_audit

    report = run_audit(database_url=url, project=str(seeded.project_id), client_log=client_log,
                       trainer_log=feed_log)
    result["audit"] = {"ok": report.ok, "checks": report.checks, "violations": report.violations}
    result["postgres_running_after"] = pg_ready()
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(report.render(), flush=True)
    if not args.keep_db:
        harness.drop_database(db_name)
    return result


def write_markdown(result: dict[str, Any], path: Path) -> None:
    m, load = result["machine"], result["load"]
    lines = [
        "# Faults: PAL killed and restarted under load",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared with other work), PostgreSQL {result['postgres']}; "
        f"load average before {result['load_average_before']}, after {result['load_average_after']}.",
        f"Load: {result['config']['rate_per_s']} annotator episodes/s for {result['config']['duration_s']} s "
        f"(claim, think 0.5-1.5 s, answer; 5% retried, 5% abandoned), {result['config']['workers']} uvicorn "
        f"workers; clients retry on {result['config']['client_retry']}.",
        "",
        "| t (s) | fault | recovered after (s) | errors clients saw until the next fault (10 s at most) |",
        "|---|---|---|---|",
    ]
    for e in result["faults"]:
        errors = ", ".join(f"{k}: {v}" for k, v in e["errors_after"].items()) or "none"
        lines.append(f"| {e['at_s']} | {e['fault']} | {e.get('recovered_after_s', '-')} | {errors} |")
    lines += [
        "",
        f"Answers acknowledged: {load['acked_total']} ({load['acked_per_s']}/s in steady state, "
        f"{load['expected_per_s']}/s offered); requests given up by clients: {load['n_failures']}; "
        f"idempotency violations: {len(load['idempotency_violations'])}; killed workers replaced by uvicorn's "
        f"supervisor: {result['killed_workers_replaced']} ({result['workers_after']} workers at the end); "
        f"PostgreSQL running at the end: {result['postgres_running_after']}.",
        "",
        f"Feed consumer: {result['consumer']['edges_consumed']} edges consumed of {result['consumer']['edges_in_db']}.",
        "",
        f"Audit: {'passed' if result['audit']['ok'] else 'FAILED'}",
    ]
    lines += [f"- {name}: {value}" for name, value in result["audit"]["checks"].items()]
    lines += [f"- VIOLATION: {v}" for v in result["audit"]["violations"]]
    for e in result["faults"]:
        if "tried" in e:
            lines += ["", "PostgreSQL restart: " + "; ".join(
                f"`{t['command']}` -> {t['returncode']}" for t in e["tried"]) + f" (back after {e['down_s']} s)."]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=60.0, help="annotator episodes per second")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--annotators", type=int, default=600)
    harness.add_run_arguments(parser, "faults", HERE)
    parser.add_argument("--no-postgres-restart", dest="restart_postgres", action="store_false",
                        help="leave PostgreSQL alone (it is shared with other work)")
    args = parser.parse_args(argv)
    harness.install_uvloop()
    try:
        result = asyncio.run(run(args))
    finally:
        ensure_postgres()
    (args.out_dir / "faults.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out_dir / "faults.md")
    ok = result["audit"]["ok"] and result["load"]["n_failures"] == 0 and result["postgres_running_after"]
    print(f"faults: audit {'passed' if result['audit']['ok'] else 'FAILED'}, {result['load']['n_failures']} "
          f"requests given up; wrote {args.out_dir / 'faults.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
