"""``pal simulate``: simulated annotators that drive a running PAL server over its HTTP API.

Each simulated annotator is a thread with its own account and bearer token and behaves like the
browser page: it loads the project, claims a task, (optionally) fetches the grid's images, thinks,
and posts its answer with a fresh idempotency key; it sometimes re-sends the same POST (a retry
after a lost response), sometimes undoes its last answer and answers again, renews its lease when
it thinks for long, and skips ("can't tell") with a configurable rate. Transport errors and 5xx
answers are retried with the same idempotency key, exactly what the page does.

Where the answers come from
---------------------------
The simulator answers from hidden ground truth that it reads from a SEPARATE source, never from
an annotator-visible route (annotators cannot see labels, and the simulator's annotator clients
are restricted to :data:`ANNOTATOR_ROUTES`; a request outside that set raises):

- ``--labels FILE.npz``: the ``.npz`` the project was imported from (``images``, ``labels``). Item
  ids are matched to rows of the file by their pixels, read with the admin token from
  ``GET /projects/{pid}/items/pixels`` (an admin route). Matching by pixels, not by import order,
  stays right when the importer skipped duplicates or when the project holds other items too.
  Items the file does not contain have no truth: a grid that shows one is answered "can't tell".

Each candidate's true mark (outlier or not, from the labels of it and of the reference) is flipped
with probability ``--error-rate``; a whole grid is skipped with probability ``--cant-tell-rate``.

Accounts: with an admin token (``--admin-token`` or ``$PAL_ADMIN_TOKEN``) the simulator creates
``--annotators`` accounts (``POST /users``), issues each a token (``POST /users/{id}/tokens``) and adds
them to the project (``POST /projects/{pid}/members/{uid}``).

Example::

    pal simulate --server http://127.0.0.1:8000 --project 1 --labels demo/fashion-mnist-demo.npz \\
        --annotators 4 --tasks 200 --error-rate 0.1 --think-ms 800
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from pal.wire import NEXT_AFTER_HEADER, decode_pixels

log = logging.getLogger("pal.simulate")

API = "/api/v1"

# Every route a browser annotator may call (method, path template). The simulator's annotator
# clients refuse anything else before it leaves the process.
ANNOTATOR_ROUTES: frozenset[tuple[str, str]] = frozenset({
    ("GET", "/api/v1/auth/me"),
    ("GET", "/api/v1/projects"),
    ("GET", "/api/v1/projects/{project_id}"),
    ("GET", "/api/v1/projects/{project_id}/me"),
    ("GET", "/api/v1/projects/{project_id}/tasks/mine"),
    ("POST", "/api/v1/projects/{project_id}/tasks/claim"),
    ("POST", "/api/v1/tasks/{task_id}/lease"),
    ("POST", "/api/v1/tasks/{task_id}/answers"),
    ("DELETE", "/api/v1/answers/{answer_id}"),
    ("GET", "/api/v1/items/{item_id}/image"),
})

_TEMPLATE_RE = [
    (re.compile("^" + re.sub(r"\{[a-z_]+\}", r"\\d+", tpl) + "$"), method, tpl) for method, tpl in ANNOTATOR_ROUTES
]


def route_template(method: str, path: str) -> tuple[str, str] | None:
    """The annotator route template that ``method path`` matches, or None."""
    for regex, m, tpl in _TEMPLATE_RE:
        if m == method and regex.match(path):
            return (m, tpl)
    return None


class ForbiddenRoute(RuntimeError):
    """An annotator client tried to call a route that annotators do not use."""


class RouteRecorder:
    """httpx request hook: refuses non-annotator routes and counts the ones called (thread-safe)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> None:
        template = route_template(request.method, request.url.path)
        if template is None:
            raise ForbiddenRoute(f"annotator client may not call {request.method} {request.url.path}")
        with self._lock:
            self.counts[f"{template[0]} {template[1]}"] += 1


# --------------------------------------------------------------------------- ground truth


def _pixel_key(img: np.ndarray) -> bytes:
    """Hash of an image's pixels; (H, W) and (H, W, 1) hash alike."""
    arr = np.ascontiguousarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return hashlib.blake2b(f"{arr.shape}".encode() + arr.tobytes(), digest_size=16).digest()


@dataclass(frozen=True)
class GroundTruth:
    """Hidden labels by item id (known to the simulator, never to the server's annotators)."""

    labels: Mapping[int, Hashable]
    unmatched: int = 0  # project items the source file does not contain

    def label(self, item_id: int) -> Hashable | None:
        return self.labels.get(int(item_id))

    @classmethod
    def from_npz(cls, admin: httpx.Client, project: int, path: Path) -> GroundTruth:
        """Match the project's items to the rows of ``path`` by their pixels (admin route)."""
        with np.load(path, allow_pickle=False) as npz:
            if "images" not in npz.files or "labels" not in npz.files:
                raise ValueError(f"{path} needs 'images' and 'labels' arrays; it has {sorted(npz.files)}")
            images, labels = npz["images"], npz["labels"]
        if len(images) != len(labels):
            raise ValueError(f"{path}: images {images.shape} and labels {labels.shape} differ in length")
        rows, unmatched = match_items(admin, project, images)
        truth: dict[int, Hashable] = {}
        for item_id, row in rows.items():
            value = labels[row]
            truth[item_id] = value.item() if hasattr(value, "item") else value
        return cls(labels=truth, unmatched=unmatched)


def match_items(admin: httpx.Client, project: int, images: np.ndarray, page: int = 5000) -> tuple[dict[int, int], int]:
    """``({item id: row of images}, number of unmatched items)``: the project's items found in ``images``
    (uint8 (N, H, W) or (N, H, W, 3)) by their pixels, read from the admin route ``items/pixels``.
    A picture that occurs twice in ``images`` maps to its first row."""
    index: dict[bytes, int] = {}
    for i in range(len(images)):
        index.setdefault(_pixel_key(images[i]), i)
    channels = 3 if images.ndim == 4 else 1
    rows: dict[int, int] = {}
    unmatched = 0
    after = 0
    while True:
        resp = admin.get(f"{API}/projects/{project}/items/pixels",
                         params={"after": after, "limit": page, "channels": channels})
        _raise_for(resp)
        ids, pixels = decode_pixels(resp.content)
        for item_id, img in zip(ids.tolist(), pixels, strict=True):
            row = index.get(_pixel_key(img))
            if row is None:
                unmatched += 1
            else:
                rows[int(item_id)] = row
        nxt = resp.headers.get(NEXT_AFTER_HEADER, "")
        if not nxt or len(ids) == 0:
            return rows, unmatched
        after = int(nxt)


# --------------------------------------------------------------------------- configuration and report


@dataclass
class SimConfig:
    annotators: int = 4
    tasks: int = 100  # answers to give in all (a "can't tell" counts: a person looked at the grid)
    error_rate: float = 0.0  # each candidate's mark flipped with this probability
    cant_tell_rate: float = 0.0  # a whole grid skipped with this probability
    think_ms: float = 0.0  # median think time per grid; log-normal spread (sigma 0.5)
    retry_rate: float = 0.05  # share of answers whose POST is sent twice (same idempotency key)
    undo_rate: float = 0.0  # share of answers undone and answered again
    fetch_images: bool = True  # load the grid's thumbnails like the page does
    thumb_size: int = 128
    seed: int = 0
    max_transport_retries: int = 8
    in_turns: bool = False  # annotators answer one at a time in a fixed order (reproducible), not at once

    def __post_init__(self) -> None:
        if self.annotators < 1:
            raise ValueError(f"annotators must be >= 1, got {self.annotators}")
        if self.tasks < 0:
            raise ValueError(f"tasks must be >= 0, got {self.tasks}")
        for name in ("error_rate", "cant_tell_rate", "retry_rate", "undo_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.think_ms < 0:
            raise ValueError(f"think_ms must be >= 0, got {self.think_ms}")


@dataclass
class SimReport:
    answers: int = 0  # acknowledged answers (a replayed POST is not counted twice)
    cant_tell: int = 0
    marks: int = 0  # candidates judged in answers with marks
    flipped: int = 0  # of which answered against the truth
    unknown_truth: int = 0  # grids skipped because an item has no ground truth
    retries_sent: int = 0  # deliberate duplicate POSTs
    replays_confirmed: int = 0  # duplicates the server answered with the stored answer
    transport_retries: int = 0  # POSTs re-sent after a network error or 5xx
    undos: int = 0
    lease_lost: int = 0
    stop_reasons: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.flipped / self.marks if self.marks else 0.0

    def merge(self, other: SimReport) -> None:
        for name in ("answers", "cant_tell", "marks", "flipped", "unknown_truth", "retries_sent",
                     "replays_confirmed", "transport_retries", "undos", "lease_lost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.stop_reasons.update(other.stop_reasons)
        self.errors.extend(other.errors)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop_reasons"] = dict(self.stop_reasons)
        out["routes"] = dict(self.routes)
        out["measured_error_rate"] = self.error_rate
        return out


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class Account:
    user_id: int
    email: str
    token: str


class SimulationError(RuntimeError):
    pass


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        raise SimulationError(f"{resp.request.method} {resp.request.url.path} -> {resp.status_code}: {resp.text[:300]}")


def create_annotators(admin: httpx.Client, project: int, n: int, tag: str | None = None) -> list[Account]:
    """``n`` new annotator accounts with tokens, members of ``project`` (admin API)."""
    tag = tag or uuid.uuid4().hex[:8]
    accounts = []
    for i in range(n):
        email = f"sim-{tag}-{i}@simulated.invalid"
        resp = admin.post(f"{API}/users", json={"email": email, "name": f"Simulated annotator {i}",
                                                "role": "annotator"})
        _raise_for(resp)
        uid = int(resp.json()["id"])
        resp = admin.post(f"{API}/users/{uid}/tokens", json={"name": "pal simulate"})
        _raise_for(resp)
        token = str(resp.json()["token"])
        _raise_for(admin.post(f"{API}/projects/{project}/members/{uid}"))
        accounts.append(Account(uid, email, token))
    return accounts


# --------------------------------------------------------------------------- one annotator


class AnswerQuota:
    """The shared number of answers still to give; an annotator reserves one before claiming, so
    the simulation never claims (and never charges the budget for) a task it will not answer."""

    def __init__(self, total: int) -> None:
        self._left = total
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._left += 1


class SimulatedAnnotator:
    def __init__(self, index: int, client: httpx.Client, project: int, truth: GroundTruth, config: SimConfig,
                 quota: AnswerQuota, stop: threading.Event) -> None:
        self.index = index
        self.http = client
        self.project = project
        self.truth = truth
        self.config = config
        self.quota = quota
        self.stop = stop
        self.rng = np.random.default_rng([config.seed, index])
        self.report = SimReport()
        self._last: tuple[int, int, int, int] | None = None  # (answer id, cant_tell, marks, flipped)

    # -- HTTP with the page's retry rule: same body (same idempotency key) after a network error or 5xx

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        delay = 0.05
        for attempt in range(self.config.max_transport_retries + 1):
            try:
                resp = self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                problem: str = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code not in (429, 500, 502, 503, 504):
                    return resp
                problem = f"HTTP {resp.status_code}"
            if attempt == self.config.max_transport_retries:
                raise SimulationError(f"{method} {url} failed {attempt + 1} times; last: {problem}")
            self.report.transport_retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def run(self) -> SimReport:
        if self.begin():
            while self.step():
                pass
        return self.report

    def begin(self) -> bool:
        """Open the project like the page does. False (and an error reported) when that fails."""
        return self._guarded(self._open_project)

    def step(self) -> bool:
        """One grid: claim, answer. False when this annotator is done (quota, no task, stop or error)."""
        return self._guarded(self._next)

    def _open_project(self) -> bool:
        _raise_for(self._send("GET", f"{API}/projects/{self.project}"))
        _raise_for(self._send("GET", f"{API}/projects/{self.project}/me"))
        return True

    def _next(self) -> bool:
        if self.stop.is_set():
            return False
        if not self.quota.take():
            self.report.stop_reasons["quota_reached"] += 1
            return False
        if not self._one_task():
            self.quota.give_back()
            return False
        return True

    def _guarded(self, action: Callable[[], bool]) -> bool:
        try:
            return action()
        except Exception as exc:  # a thread must report, not die silently
            self.report.errors.append(f"annotator {self.index}: {type(exc).__name__}: {exc}")
            log.exception("annotator %d failed", self.index)
            return False

    def _one_task(self) -> bool:
        """Claim, answer, maybe undo and answer again. False when no task is left."""
        resp = self._send("POST", f"{API}/projects/{self.project}/tasks/claim")
        _raise_for(resp)
        body = resp.json()
        task = body.get("task")
        if task is None:
            self.report.stop_reasons[str(body.get("reason") or "no_task")] += 1
            return False
        if self.config.fetch_images:
            for item in [task["reference"], *task["candidates"]]:
                _raise_for(self._send("GET", f"{API}/items/{item}/image", params={"size": self.config.thumb_size}))
        think = self._think()
        if think > 0.5 * _lease_left(task):
            renewed = self._send("POST", f"{API}/tasks/{task['id']}/lease", json={"lease_token": task["lease_token"]})
            _raise_for(renewed)
            task = renewed.json()
        answered = self._answer(task, think)
        if answered is None:
            return True
        if self.rng.random() < self.config.undo_rate:
            undo = self._send("DELETE", f"{API}/answers/{answered}")
            if undo.status_code == 200:
                self.report.undos += 1
                self._uncount(answered)
                self._answer(undo.json()["task"], self._think())
        return True

    def _think(self) -> float:
        if self.config.think_ms <= 0:
            return 0.0
        seconds = self.config.think_ms / 1000.0 * float(self.rng.lognormal(0.0, 0.5))
        self.stop.wait(seconds)
        return seconds

    def _decide(self, task: Mapping[str, Any]) -> tuple[list[int], bool, int, int]:
        """(outliers, cant_tell, marks, flipped) for this grid."""
        ref_label = self.truth.label(task["reference"])
        cands = [int(c) for c in task["candidates"]]
        cand_labels = [self.truth.label(c) for c in cands]
        if ref_label is None or any(lab is None for lab in cand_labels):
            self.report.unknown_truth += 1
            return [], True, 0, 0
        if self.rng.random() < self.config.cant_tell_rate:
            return [], True, 0, 0
        flips = self.rng.random(len(cands)) < self.config.error_rate
        outliers = [c for c, lab, flip in zip(cands, cand_labels, flips, strict=True)
                    if (lab != ref_label) != bool(flip)]
        return outliers, False, len(cands), int(flips.sum())

    def _answer(self, task: Mapping[str, Any], think: float) -> int | None:
        outliers, cant_tell, marks, flipped = self._decide(task)
        payload = {"idempotency_key": str(uuid.UUID(bytes=self.rng.bytes(16), version=4)),
                   "lease_token": task["lease_token"], "outlier_ids": outliers, "cant_tell": cant_tell,
                   "seconds": round(think, 3)}
        url = f"{API}/tasks/{task['id']}/answers"
        resp = self._send("POST", url, json=payload)
        if resp.status_code == 409:
            # The lease expired and the task went to someone else: the page shows a new grid.
            self.report.lease_lost += 1
            return None
        _raise_for(resp)
        stored = resp.json()
        if self.rng.random() < self.config.retry_rate:
            self.report.retries_sent += 1
            again = self._send("POST", url, json=payload)
            _raise_for(again)
            if again.json().get("replayed") and int(again.json()["id"]) == int(stored["id"]):
                self.report.replays_confirmed += 1
            else:
                self.report.errors.append(f"retried answer to task {task['id']} was not a replay: {again.text[:200]}")
        self.report.answers += 1
        self.report.cant_tell += int(cant_tell)
        self.report.marks += marks
        self.report.flipped += flipped
        self._last = (int(stored["id"]), int(cant_tell), marks, flipped)
        return int(stored["id"])

    def _uncount(self, answer_id: int) -> None:
        last = self._last
        if last is not None and last[0] == answer_id:
            self.report.answers -= 1
            self.report.cant_tell -= last[1]
            self.report.marks -= last[2]
            self.report.flipped -= last[3]


def _lease_left(task: Mapping[str, Any]) -> float:
    from datetime import datetime, timezone

    try:
        expires = datetime.fromisoformat(str(task["lease_expires_at"]).replace("Z", "+00:00"))
    except ValueError:
        return 60.0
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    return max(0.0, (expires - datetime.now(timezone.utc)).total_seconds())


# --------------------------------------------------------------------------- the simulation


def annotator_client(server: str, token: str, recorder: RouteRecorder, timeout: float = 30.0) -> httpx.Client:
    """An httpx client that can only call annotator routes, and records the ones it calls."""
    return httpx.Client(base_url=server.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                        timeout=timeout, event_hooks={"request": [recorder]})


def simulate(server: str, project: int, truth: GroundTruth, config: SimConfig, accounts: list[Account]) -> SimReport:
    """Run ``len(accounts)`` annotators until ``config.tasks`` answers are given or no task is left."""
    if not accounts:
        raise ValueError("need at least one annotator account")
    recorder = RouteRecorder()
    quota = AnswerQuota(config.tasks)
    stop = threading.Event()
    started = time.perf_counter()
    clients = [annotator_client(server, a.token, recorder) for a in accounts]
    workers = [SimulatedAnnotator(i, c, project, truth, config, quota, stop) for i, c in enumerate(clients)]
    try:
        if config.in_turns:
            _take_turns(workers)
        else:
            _run_threads(workers, stop)
    finally:
        for c in clients:
            c.close()
    total = SimReport()
    for w in workers:
        total.merge(w.report)
    total.routes = recorder.counts
    total.seconds = time.perf_counter() - started
    return total


def _run_threads(workers: list[SimulatedAnnotator], stop: threading.Event) -> None:
    """Every annotator in its own thread, at once: the order of their requests is the network's."""
    threads = [threading.Thread(target=w.run, name=f"sim-annotator-{w.index}", daemon=True) for w in workers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join(timeout=10)


def _take_turns(workers: list[SimulatedAnnotator]) -> None:
    """One grid per annotator in a fixed order, round after round, one request at a time: the server
    sees the same requests in the same order on every run, so a seeded run is reproducible."""
    active = [w for w in workers if w.begin()]
    while active:
        active = [w for w in active if w.step()]


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pal simulate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="http://127.0.0.1:8000", help="server base URL")
    p.add_argument("--project", type=int, required=True, help="project id")
    p.add_argument("--labels", type=Path, required=True,
                   help=".npz the project was imported from (images, labels): the hidden ground truth")
    p.add_argument("--admin-token", default=os.environ.get("PAL_ADMIN_TOKEN", ""),
                   help="admin bearer token, to create the annotator accounts (default: $PAL_ADMIN_TOKEN)")
    p.add_argument("--annotators", type=int, default=4)
    p.add_argument("--tasks", type=int, default=100, help="answers to give in all")
    p.add_argument("--error-rate", type=float, default=0.0, help="probability of flipping each candidate's mark")
    p.add_argument("--cant-tell-rate", type=float, default=0.0, help="probability of skipping a grid")
    p.add_argument("--think-ms", type=float, default=1000.0, help="median think time per grid (ms)")
    p.add_argument("--retry-rate", type=float, default=0.05, help="share of answers POSTed twice (same key)")
    p.add_argument("--undo-rate", type=float, default=0.0, help="share of answers undone and answered again")
    p.add_argument("--no-images", dest="fetch_images", action="store_false", help="do not load the thumbnails")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--in-turns", action="store_true",
                   help="annotators answer one grid at a time in a fixed order (with a server started with "
                        "PAL_ORACLE_SEED, the same seed gives the same run)")
    p.add_argument("--report", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the report
    if not args.admin_token:
        print("pal simulate: an admin token is needed (--admin-token or $PAL_ADMIN_TOKEN)", file=sys.stderr)
        return 2
    config = SimConfig(annotators=args.annotators, tasks=args.tasks, error_rate=args.error_rate,
                       cant_tell_rate=args.cant_tell_rate, think_ms=args.think_ms, retry_rate=args.retry_rate,
                       undo_rate=args.undo_rate, fetch_images=args.fetch_images, seed=args.seed,
                       in_turns=args.in_turns)
    with httpx.Client(base_url=args.server.rstrip("/"), headers={"Authorization": f"Bearer {args.admin_token}"},
                      timeout=120) as admin:
        truth = GroundTruth.from_npz(admin, args.project, args.labels)
        log.info("ground truth for %d items (%d project items not in %s)", len(truth.labels), truth.unmatched,
                 args.labels)
        accounts = create_annotators(admin, args.project, config.annotators)
    report = simulate(args.server, args.project, truth, config, accounts)
    summary = report.to_dict()
    print(json.dumps({k: v for k, v in summary.items() if k != "errors"} | {"errors": len(report.errors)}, indent=2))
    if args.report:
        args.report.write_text(json.dumps(summary, indent=2))
    for err in report.errors[:10]:
        print(f"error: {err}", file=sys.stderr)
    return 1 if report.errors else 0
