"""An open-model load generator: work arrives at a constant rate whether or not the server keeps
up, so a slow server shows as latency and backlog instead of being hidden by a closed loop.

Each arrival is one simulated annotator's episode: claim -> think -> answer. An idle annotator is
taken from a pool (one episode at a time per annotator, as a person works); when none is idle the
arrival is counted as dropped. Mixed in: retried answers (the same idempotency key sent again after
the first response, or twice at once), abandoned claims (the lease runs out), "can't tell" answers.
Clients retry on 503 (after Retry-After, capped) and on connection errors, as the web page does.
Requests go through :mod:`bench.http` (a lean keep-alive client; httpx on request).
Every acknowledged answer goes to a JSONL client log that ``pal audit --client-log`` checks."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from bench.http import FastClient, HTTPError, HttpxClient, Response

ENDPOINTS = ("claim", "answer", "insert")


@dataclass
class Mix:
    think_s: tuple[float, float] = (0.5, 1.5)  # uniform think time per grid
    retry_share: float = 0.05  # answers sent again with the same idempotency key
    abandon_share: float = 0.05  # claims never answered (their leases expire)
    cant_tell_share: float = 0.05
    outlier_p: float = 0.4  # chance each candidate is marked an outlier
    max_retry_wait_s: float = 1.0  # cap on Retry-After
    give_up_s: float = 60.0  # a client stops retrying one request after this long


@dataclass
class Recorder:
    """Everything measured in one phase."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    conn_errors: Counter[str] = field(default_factory=Counter)
    acked: list[float] = field(default_factory=list)  # monotonic time of each first acknowledgement
    arrivals: int = 0
    dropped: int = 0  # no idle annotator when work arrived
    episodes_done: int = 0
    claim_empty: Counter[str] = field(default_factory=Counter)  # claims that returned no task, by reason
    abandoned: int = 0
    retries_sent: int = 0
    idempotency_violations: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # requests given up or answered unexpectedly
    lag: list[float] = field(default_factory=list)  # how late each arrival started (client saturation)
    trace: list[tuple[float, str, int]] = field(default_factory=list)  # (monotonic, endpoint, status; 0 = no reply)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.latencies[endpoint].append(seconds)
        self.statuses[endpoint][status] += 1
        self.trace.append((time.monotonic(), endpoint, status))


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values) * 1000.0
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"n": len(values), "p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2),
            "p99_ms": round(float(p99), 2), "max_ms": round(float(arr.max()), 2)}


class AnswerLog:
    """The client log: one JSON line per acknowledged answer (a replay logs its ack too)."""

    def __init__(self, path: Path | None) -> None:
        self._out: TextIO | None = path.open("a") if path else None

    def write(self, record: dict[str, Any]) -> None:
        if self._out is not None:
            self._out.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._out is not None:
            self._out.flush()
            self._out.close()


Client = FastClient | HttpxClient


async def send(client: Client, rec: Recorder, mix: Mix, endpoint: str, method: str, url: str,
               token: str | None, body: dict[str, Any] | None = None) -> Response | None:
    """One logical request: retried on 503 and connection errors; None when given up."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    deadline = time.monotonic() + mix.give_up_s
    wait = 0.05
    while True:
        started = time.perf_counter()
        try:
            resp = await client.request(method, url, json_body=body, headers=headers)
        except HTTPError as exc:
            rec.conn_errors[f"{endpoint}:{type(exc).__name__}"] += 1
            rec.trace.append((time.monotonic(), endpoint, 0))
            if time.monotonic() > deadline:
                rec.failures.append(f"{endpoint}: gave up after {type(exc).__name__}")
                return None
            await asyncio.sleep(wait)
            wait = min(wait * 2, mix.max_retry_wait_s)
            continue
        rec.request(endpoint, resp.status_code, time.perf_counter() - started)
        if resp.status_code in (502, 503, 504):
            if time.monotonic() > deadline:
                rec.failures.append(f"{endpoint}: gave up after {resp.status_code}")
                return None
            retry_after = float(resp.headers.get("Retry-After", "0.1") or 0.1)
            await asyncio.sleep(min(retry_after, mix.max_retry_wait_s) * random.uniform(0.5, 1.0))
            continue
        return resp


@dataclass
class Annotator:
    user_id: int
    token: str


class Workload:
    """The annotators, the HTTP client and the answer log shared by the phases of one run."""

    def __init__(self, base_url: str, project_id: int, annotators: list[tuple[int, str]], mix: Mix,
                 answer_log: Path | None, seed: int = 0, client: str = "fast") -> None:
        self.project_id = project_id
        self.mix = mix
        self.idle: deque[Annotator] = deque(Annotator(u, t) for u, t in annotators)
        self.client: Client = (HttpxClient if client == "httpx" else FastClient)(base_url, max_connections=256)
        self.log = AnswerLog(answer_log)
        self.rng = random.Random(seed)

    async def close(self) -> None:
        await self.client.aclose()
        self.log.close()

    async def episode(self, who: Annotator, rec: Recorder) -> None:
        try:
            await self._episode(who, rec)
        except Exception as exc:  # a bug in the generator must show, not vanish in a task
            rec.failures.append(f"episode crashed: {exc!r}")
        finally:
            self.idle.append(who)
            rec.episodes_done += 1

    async def _episode(self, who: Annotator, rec: Recorder) -> None:
        mix, rng = self.mix, self.rng
        resp = await send(self.client, rec, mix, "claim", "POST", f"/api/v1/projects/{self.project_id}/tasks/claim",
                          who.token)
        if resp is None:
            return
        if resp.status_code != 200:
            rec.failures.append(f"claim: {resp.status_code} {resp.text[:200]}")
            return
        task = resp.json()["task"]
        if task is None:
            rec.claim_empty[resp.json().get("reason") or "?"] += 1
            return
        await asyncio.sleep(rng.uniform(*mix.think_s))
        if rng.random() < mix.abandon_share:
            rec.abandoned += 1
            return
        cant_tell = rng.random() < mix.cant_tell_share
        outliers = [] if cant_tell else [c for c in task["candidates"] if rng.random() < mix.outlier_p]
        body = {"idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": outliers,
                "cant_tell": cant_tell, "seconds": 1.0}
        url = f"/api/v1/tasks/{task['id']}/answers"
        retry = rng.random() < mix.retry_share
        if retry and rng.random() < 0.5:
            # Two tabs or a double click: the same answer twice at once.
            rec.retries_sent += 1
            results = await asyncio.gather(*(send(self.client, rec, mix, "answer", "POST", url, who.token, body)
                                             for _ in range(2)))
        else:
            results = [await send(self.client, rec, mix, "answer", "POST", url, who.token, body)]
            if retry:
                # The response was "lost": the client sends the same answer again.
                rec.retries_sent += 1
                results.append(await send(self.client, rec, mix, "answer", "POST", url, who.token, body))
        ids = set()
        for resp in results:
            if resp is None:
                continue
            if resp.status_code not in (200, 201):
                rec.failures.append(f"answer: {resp.status_code} {resp.text[:200]}")
                continue
            stored = resp.json()
            ids.add(stored["id"])
            self.log.write({
                "answer_id": stored["id"], "task_id": task["id"], "user_id": who.user_id,
                "key": body["idempotency_key"], "edges": stored["edges"], "cant_tell": cant_tell,
                "reference": task["reference"], "candidates": task["candidates"], "outliers": outliers,
                "replayed": stored["replayed"],
            })
        if ids:
            rec.acked.append(time.monotonic())
        if len(ids) > 1:
            rec.idempotency_violations.append(f"task {task['id']} key {body['idempotency_key']}: answers {ids}")


async def run_open(rate: float, duration: float, start_one: Any, rec: Recorder) -> None:
    """Arrivals at a constant ``rate`` per second for ``duration`` seconds; waits for the stragglers."""
    tasks: set[asyncio.Task[None]] = set()
    t0 = time.monotonic()
    n = 0
    while True:
        due = t0 + n / rate
        if due - t0 >= duration:
            break
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        rec.lag.append(max(0.0, time.monotonic() - due))
        rec.arrivals += 1
        task = start_one(rec)
        if task is not None:
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.wait(tasks, timeout=120)


def annotator_arrival(work: Workload) -> Any:
    def start(rec: Recorder) -> asyncio.Task[None] | None:
        if not work.idle:
            rec.dropped += 1
            return None
        return asyncio.create_task(work.episode(work.idle.popleft(), rec))

    return start


def insert_arrival(client: Client, mix: Mix) -> Any:
    async def one(rec: Recorder) -> None:
        resp = await send(client, rec, mix, "insert", "POST", "/bench/insert", None)
        if resp is not None:
            if resp.status_code == 200:
                rec.acked.append(time.monotonic())
            else:
                rec.failures.append(f"insert: {resp.status_code}")

    def start(rec: Recorder) -> asyncio.Task[None]:
        return asyncio.create_task(one(rec))

    return start


def summarise(rec: Recorder, *, rate: float, duration: float, t0: float, settle: float, expected_share: float
              ) -> dict[str, Any]:
    """Per-phase figures. Throughput counts acknowledgements in the steady window [t0 + settle, t0 + duration]."""
    window = max(duration - settle, 1e-9)
    steady = sum(1 for t in rec.acked if t0 + settle <= t <= t0 + duration)
    requests = sum(sum(c.values()) for c in rec.statuses.values())
    n503 = sum(c[503] for c in rec.statuses.values())
    n5xx = sum(n for c in rec.statuses.values() for s, n in c.items() if s >= 500 and s != 503)
    conn = sum(rec.conn_errors.values())
    return {
        "offered_per_s": rate,
        "duration_s": duration,
        "acked_per_s": round(steady / window, 1),
        "expected_per_s": round(rate * expected_share, 1),
        "acked_total": len(rec.acked),
        "arrivals": rec.arrivals,
        "dropped": rec.dropped,
        "abandoned": rec.abandoned,
        "retries_sent": rec.retries_sent,
        "claim_empty": dict(rec.claim_empty),
        "requests": requests,
        "rate_503": round(n503 / max(requests, 1), 5),
        "rate_5xx_other": round(n5xx / max(requests, 1), 5),
        "conn_errors": dict(rec.conn_errors),
        "rate_conn_errors": round(conn / max(requests + conn, 1), 5),
        "statuses": {k: {str(s): n for s, n in v.items()} for k, v in rec.statuses.items()},
        "latency": {k: percentiles(v) for k, v in rec.latencies.items()},
        "client_lag": percentiles(rec.lag),
        "failures": rec.failures[:20],
        "n_failures": len(rec.failures),
        "idempotency_violations": rec.idempotency_violations[:20],
    }


def sustainable(summary: dict[str, Any], *, endpoints: tuple[str, ...], p99_ms: float = 100.0) -> tuple[bool, str]:
    """Kept up: acknowledgements at >= 97% of the expected rate, p99 under the bound for every
    endpoint, under 0.1% errors (503 included), no dropped arrivals, no failures."""
    why = []
    if summary["acked_per_s"] < 0.97 * summary["expected_per_s"]:
        why.append(f"acked {summary['acked_per_s']}/s < 97% of {summary['expected_per_s']}/s")
    for ep in endpoints:
        lat = summary["latency"].get(ep, {})
        if lat.get("p99_ms", 0.0) > p99_ms:
            why.append(f"{ep} p99 {lat['p99_ms']} ms > {p99_ms} ms")
    errors = summary["rate_503"] + summary["rate_5xx_other"] + summary["rate_conn_errors"]
    if errors > 0.001:
        why.append(f"error rate {errors:.4f}")
    if summary["dropped"]:
        why.append(f"{summary['dropped']} arrivals dropped (no idle annotator)")
    if summary["n_failures"]:
        why.append(f"{summary['n_failures']} failed requests")
    return (not why, "; ".join(why) or "ok")


def keeps_up(summary: dict[str, Any]) -> bool:
    """Throughput only: acknowledgements keep up with the arrivals, under 0.1% errors, nothing
    dropped or given up (whatever the latency tail)."""
    errors = summary["rate_503"] + summary["rate_5xx_other"] + summary["rate_conn_errors"]
    return (summary["acked_per_s"] >= 0.97 * summary["expected_per_s"] and errors <= 0.001
            and not summary["dropped"] and not summary["n_failures"])
