"""The simulation: annotators answer until the quota is given or no task is left, in turns
(reproducible) or at once (in threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from pal.simulate.annotator import AnswerQuota, SimConfig, SimReport, SimulatedAnnotator
from pal.simulate.api import Account, RouteRecorder, annotator_client
from pal.simulate.models import AnnotatorModel
from pal.simulate.truth import GroundTruth


def simulate(server: str, project: int, truth: GroundTruth, config: SimConfig, accounts: list[Account],
             models: Sequence[AnnotatorModel] | None = None) -> SimReport:
    """Run ``len(accounts)`` annotators until ``config.tasks`` answers are given or no task is left.
    ``models``: how each annotator errs (:mod:`pal.simulate.team`); None: uniform flips at
    ``config.error_rate`` for all."""
    if not accounts:
        raise ValueError("need at least one annotator account")
    if models is not None and len(models) != len(accounts):
        raise ValueError(f"{len(models)} annotator models for {len(accounts)} accounts")
    recorder = RouteRecorder()
    quota = AnswerQuota(config.tasks)
    stop = threading.Event()
    started = time.perf_counter()
    clients = [annotator_client(server, a.token, recorder) for a in accounts]
    workers = [SimulatedAnnotator(i, c, project, truth, config, quota, stop, None if models is None else models[i])
               for i, c in enumerate(clients)]
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
    total.annotators = [w.tally() for w in workers]
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
