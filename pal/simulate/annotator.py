"""One simulated annotator: its configuration, its report, and the page's behaviour over HTTP
(claim, think, answer, retry, undo, renew the lease)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np

from pal.simulate.api import API, SimulationError, raise_for
from pal.simulate.models import AnnotatorModel, UniformFlips, true_marks
from pal.simulate.truth import GroundTruth

log = logging.getLogger("pal.simulate")


@dataclass
class SimConfig:
    annotators: int = 4
    tasks: int = 100  # answers to give in all (a "can't tell" counts: a person looked at the grid)
    error_rate: float = 0.0  # each candidate's mark flipped with this probability (the default model)
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
    # One row per annotator (filled by the simulation): its model and its measured wrong-mark rate.
    annotators: list[dict[str, Any]] = field(default_factory=list)

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
                 quota: AnswerQuota, stop: threading.Event, model: AnnotatorModel | None = None) -> None:
        self.index = index
        self.http = client
        self.project = project
        self.truth = truth
        self.config = config
        self.quota = quota
        self.stop = stop
        self.rng = np.random.default_rng([config.seed, index])
        self.model: AnnotatorModel = model if model is not None else UniformFlips(config.error_rate)
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

    def tally(self) -> dict[str, Any]:
        """This annotator's row of the report: its model, its answers and its measured wrong-mark rate."""
        r = self.report
        return {"annotator": self.index, "model": self.model.describe(), "answers": r.answers,
                "cant_tell": r.cant_tell, "marks": r.marks, "flipped": r.flipped,
                "measured_error_rate": r.error_rate}

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
        raise_for(self._send("GET", f"{API}/projects/{self.project}"))
        raise_for(self._send("GET", f"{API}/projects/{self.project}/me"))
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
        raise_for(resp)
        body = resp.json()
        task = body.get("task")
        if task is None:
            self.report.stop_reasons[str(body.get("reason") or "no_task")] += 1
            return False
        if self.config.fetch_images:
            for item in [task["reference"], *task["candidates"]]:
                raise_for(self._send("GET", f"{API}/items/{item}/image", params={"size": self.config.thumb_size}))
        think = self._think()
        if think > 0.5 * _lease_left(task):
            renewed = self._send("POST", f"{API}/tasks/{task['id']}/lease", json={"lease_token": task["lease_token"]})
            raise_for(renewed)
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
        marks = self.model.marks(self.rng, ref_label, cand_labels)
        outliers = [c for c, mark in zip(cands, marks.tolist(), strict=True) if mark]
        wrong = int((marks != true_marks(ref_label, cand_labels)).sum())
        return outliers, False, len(cands), wrong

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
        raise_for(resp)
        stored = resp.json()
        if self.rng.random() < self.config.retry_rate:
            self.report.retries_sent += 1
            again = self._send("POST", url, json=payload)
            raise_for(again)
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

