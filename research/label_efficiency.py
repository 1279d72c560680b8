"""Label efficiency: how good are PAL's labels after T human answers, and how does that compare
with plain self-supervised learning, passive grids and ordinary labelling, at the same compute?

    python -m research.label_efficiency --data demo/fashion-mnist-demo.npz --tasks 300 --oracle active --seed 0 \\
        --out result.json

One run, end to end, through the real system:

1. Data: the ``.npz`` (``images``, ``labels``; ``split`` when present, else the last 1,000 images of
   each class are the test set) cut to a fixed subset (``--max-train-items`` / ``--max-test-items``,
   drawn per class with a fixed seed, the same for every run) and written to the work folder.
2. A fresh database (SQLite in the work folder, or a new PostgreSQL database with
   ``--database-url``), a real ``uvicorn`` server on it, an admin (written to the database like
   ``pal user``), and over the API: the project (oracle, ``--n`` candidates, redundancy, gold rate,
   budget), the import of the subset, a trainer account.
3. The trainer (``trainer.engine.Engine`` fed by the trainer's own HTTP client: edge feed in,
   embedding versions out) runs ``--warmup-steps`` plain SSL steps and publishes, so every strategy
   starts from the same first embedding.
4. ``--rounds`` rounds: the human answers of the round (simulated annotators of ``pal.simulate``
   over HTTP, answering from the hidden labels with ``--error-rate``, or each by its model with
   ``--team``, e.g. ``confusion=0.1:4,spammer:1``: see :mod:`pal.simulate.team`), then the round's share of
   the remaining training steps, a published version, and the metrics of that version: one point
   of the quality curve. The total number of training steps is ``--train-steps`` whatever the
   strategy and T: equal compute.
5. Metrics of each point: ``knn_accuracy`` (k = 20, cosine, test items, train labels),
   ``cluster_accuracy`` (k-means, k = number of classes, on the test embeddings, Hungarian
   matched) and ``label_accuracy``: the exported cluster labels (``GET .../exports/clusters.csv``
   when the server has it, else :meth:`pal.core.graph.KnowledgeGraph.cluster_assignment` over the
   edge feed and the current embedding, which is what that export serves) scored on the training
   pool with :func:`pal.metrics.label_accuracy` (at most as many clusters as classes are mapped).

Strategies (``--oracle``): ``random``, ``active``, ``uncertainty`` (server oracles, human grids);
``ssl`` (no human edges at all); ``supervised-images`` (a labeller gives the true class of
T x (n + 1) training images: as many images as T grids show) and ``supervised-screens`` (T labels:
one per screen). Labels enter as the label graph in spanning form (each labelled image + to the
first labelled image of its class, - between the classes' first images), written straight into
the edge table, so the same trainer and the same export turn them into an embedding and labels.

``--tasks`` counts human answers (screens looked at; a "can't tell" counts). With ``--redundancy r``
the project issues T / r tasks, each answered r times.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from bench.machine import machine as bench_machine
from pal import metrics
from pal.simulate import (
    AnnotatorModel,
    SimConfig,
    build_team,
    create_annotators,
    match_items,
    parse_team,
    simulate,
    team_size,
)
from pal.simulate import GroundTruth as SimTruth
from research.behaviour import behaviour

log = logging.getLogger("research.label_efficiency")

API = "/api/v1"
SERVER_ORACLES = ("random", "active", "uncertainty")
SUPERVISED = ("supervised-images", "supervised-screens")
STRATEGIES = ("ssl", *SERVER_ORACLES, *SUPERVISED)
TEST_PER_CLASS = 1000  # the convention when the file has no split: the last 1,000 of each class


@dataclass
class RunConfig:
    data: Path
    tasks: int
    oracle: str
    seed: int = 0
    out: Path | None = None
    error_rate: float = 0.0
    # How each simulated annotator errs (a ``pal simulate --team`` spec, which also sets ``annotators``).
    # None: all make uniform flips at ``error_rate``, as every stored run did; ``_comparable`` in the suite
    # leaves the key out then, so those runs stay comparable.
    team: str | None = None
    cant_tell_rate: float = 0.0
    redundancy: int = 1
    gold_rate: float = 0.0
    # Known labels given by the admin before any answer (the paper's loop starts from one known item
    # per class): this many training items of each class, drawn with the run's seed.
    known_per_class: int = 0
    n: int = 8
    annotators: int = 4
    # Annotators take turns (one request at a time, a fixed order) and the server's oracle is seeded with
    # ``seed``: a run is then a function of its configuration, and re-running it reproduces its numbers.
    # False: they answer at once, in the network's order (closer to a crowd, not reproducible).
    in_turns: bool = True
    # Server processes behind one port (uvicorn workers), and whether the server keeps its deployed
    # defaults (graph settings as shipped) instead of the reproducible ones (PAL_GRAPH_REFRESH_SECONDS=0).
    server_workers: int = 1
    deployed: bool = False
    database_url: str | None = None  # None: SQLite in the work folder
    train_steps: int = 600
    warmup_steps: int = 150
    rounds: int = 4
    # Cumulative answers at the end of each round (e.g. 100, 300, 1000, 3000): one curve point per
    # entry, all strategies on the same schedule. None: ``rounds`` equal rounds up to ``tasks``.
    schedule: tuple[int, ...] | None = None
    max_train_items: int = 10_000
    max_test_items: int = 2_000
    subset_seed: int = 0
    backbone: str = "mlp"
    batch_size: int = 256
    lr: float = 1e-3
    threads: int = 1
    workdir: Path | None = None  # None: a temporary folder, removed afterwards
    keep_workdir: bool = False

    def __post_init__(self) -> None:
        if self.oracle not in STRATEGIES:
            raise ValueError(f"oracle must be one of {STRATEGIES}, got {self.oracle!r}")
        if self.tasks < 0:
            raise ValueError(f"tasks must be >= 0, got {self.tasks}")
        if self.schedule is not None:
            if not self.schedule or any(b < a for a, b in zip((0, *self.schedule), self.schedule, strict=False)):
                raise ValueError(f"schedule must be non-decreasing answer counts, got {self.schedule}")
            self.rounds, self.tasks = len(self.schedule), self.schedule[-1]
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not 0 <= self.warmup_steps <= self.train_steps:
            raise ValueError(f"warmup_steps must be in 0..train_steps, got {self.warmup_steps}")
        if self.team is not None:
            if self.oracle not in SERVER_ORACLES:
                raise ValueError(f"team applies to the server oracles {SERVER_ORACLES}, not to {self.oracle!r}")
            self.annotators = team_size(parse_team(self.team))
        if self.redundancy < 1 or self.annotators < self.redundancy:
            raise ValueError(f"need redundancy >= 1 and annotators >= redundancy, got {self.redundancy}, "
                             f"{self.annotators}")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # (N, H, W) or (N, H, W, 3) uint8
    labels: np.ndarray  # (N,)
    is_test: np.ndarray  # (N,) bool
    class_names: np.ndarray | None = None
    source_rows: np.ndarray | None = None  # rows of the original file

    @property
    def n_classes(self) -> int:
        return int(np.unique(self.labels).size)

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "images": self.images, "labels": self.labels,
            "split": np.where(self.is_test, "test", "train"),
        }
        if self.class_names is not None:
            arrays["class_names"] = self.class_names
        if self.source_rows is not None:
            arrays["source_index"] = self.source_rows
        np.savez(path, **arrays)  # type: ignore[arg-type]


def split_test_mask(labels: np.ndarray, split: np.ndarray | None) -> np.ndarray:
    """Test items: from ``split`` (strings 'test'/'train' or integers 1/0) when given, else the last
    1,000 items of each class (at most half of a class, so a small file keeps training items)."""
    if split is not None:
        if np.issubdtype(split.dtype, np.integer) or np.issubdtype(split.dtype, np.bool_):
            return np.asarray(split).astype(np.int64) == 1
        return np.char.lower(np.asarray(split).astype(str)) == "test"
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        mask[rows[len(rows) - min(TEST_PER_CLASS, len(rows) // 2):]] = True
    return mask


def _stratified(rows: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` of ``rows``, the same share of every class (largest remainders), sorted."""
    if k >= len(rows):
        return rows
    classes, counts = np.unique(labels[rows], return_counts=True)
    exact = counts * (k / len(rows))
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take))[: k - int(take.sum())]:
        take[i] += 1
    picked = [rng.choice(rows[labels[rows] == c], size=t, replace=False) for c, t in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(picked))


def load_dataset(path: Path, max_train: int, max_test: int, subset_seed: int = 0) -> Dataset:
    """The benchmark's fixed subset of ``path``, without repeated pictures (their first row stays)."""
    with np.load(path, allow_pickle=False) as npz:
        for key in ("images", "labels"):
            if key not in npz.files:
                raise SystemExit(f"{path} needs '{key}'; it has {sorted(npz.files)}")
        images, labels = npz["images"], npz["labels"]
        split = npz["split"] if "split" in npz.files else None
        names = npz["class_names"] if "class_names" in npz.files else None
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise SystemExit(f"{path}: want uint8 images [N,H,W] or [N,H,W,3] and labels [N], got "
                         f"{images.dtype} {images.shape} and {labels.shape}")
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    unique = np.zeros(len(images), dtype=bool)
    unique[first] = True
    is_test = split_test_mask(labels, split)
    rng = np.random.default_rng(subset_seed)
    train = _stratified(np.flatnonzero(~is_test & unique), labels, max_train, rng)
    test = _stratified(np.flatnonzero(is_test & unique), labels, max_test, rng)
    rows = np.concatenate([train, test])
    rows = rows[rng.permutation(len(rows))]  # interleave classes and splits, as a real import would
    return Dataset(images[rows], labels[rows], is_test[rows], names, rows.astype(np.int64))


# --------------------------------------------------------------------------- trainer


class TrainerDriver:
    """The trainer's engine and HTTP client, stepped by the benchmark instead of by its own loop,
    through that loop's phases: poll the server, train K steps, embed every item, publish."""

    def __init__(self, server: str, token: str, project: int, config: RunConfig) -> None:
        import torch

        from trainer.client import ApiClient, RetryPolicy
        from trainer.config import TrainConfig
        from trainer.engine import Engine
        from trainer.items import ItemTable, fetch_items

        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.config = TrainConfig(server=server, token=token, project=project, backbone=config.backbone,
                                  batch_size=config.batch_size, lr=config.lr, seed=config.seed, device="cpu",
                                  warmup_steps=min(100, max(config.train_steps // 10, 1)),
                                  loss="vicreg")
        self.client = ApiClient(server, token, retry=RetryPolicy(max_attempts=6))
        self.items = ItemTable.empty()
        fetch_items(self.client, project, self.items, None, self.config.pixel_page)
        self.engine = Engine(self.config, self.items)
        self.vectors: np.ndarray | None = None

    def train(self, steps: int) -> np.ndarray:
        """One cycle of the trainer's own loop, ``steps`` long; returns the vectors it published."""
        from trainer.loop import poll, publish, train_steps

        poll(self.client, self.engine)
        meter = train_steps(self.engine, steps)
        self.vectors = publish(self.client, self.engine, meter).vectors
        return self.vectors

    def edge_counts(self) -> tuple[int, int]:
        edges = self.engine.store.graph.edges()
        return sum(1 for e in edges if e.sign > 0), sum(1 for e in edges if e.sign < 0)

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------------- exported labels


def exported_clusters(admin: httpx.Client, project: int) -> tuple[dict[int, int], str]:
    """``({item id: cluster (-1: none)}, source)``: what an admin exports (the clusters export)."""
    resp = admin.get(f"{API}/projects/{project}/exports/clusters.csv")
    if resp.status_code != 200:
        raise RuntimeError(f"clusters export failed: {resp.status_code} {resp.text[:300]}")
    out: dict[int, int] = {}
    for row in csv.DictReader(io.StringIO(resp.text)):
        cluster = (row.get("cluster") or "").strip()
        out[int(row["item_id"])] = int(cluster) if cluster.lstrip("-").isdigit() else -1
    return out, "export route"


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalSet:
    """The project's items matched to the dataset: ids and labels of the train pool and the test set."""

    train_ids: np.ndarray
    train_labels: np.ndarray
    test_ids: np.ndarray
    test_labels: np.ndarray

    @classmethod
    def build(cls, admin: httpx.Client, project: int, data: Dataset) -> EvalSet:
        rows, unmatched = match_items(admin, project, data.images)
        if unmatched:
            raise RuntimeError(f"{unmatched} project items are not in the benchmark data")
        ids = np.asarray(sorted(rows), dtype=np.int64)
        r = np.asarray([rows[int(i)] for i in ids], dtype=np.int64)
        test = data.is_test[r]
        return cls(ids[~test], data.labels[r[~test]], ids[test], data.labels[r[test]])


def _rows(item_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(item_ids, wanted)
    if not np.array_equal(item_ids[pos.clip(0, len(item_ids) - 1)], wanted):
        raise RuntimeError("the embedding lacks some evaluation items")
    return pos


def evaluate(admin: httpx.Client, project: int, item_ids: np.ndarray, vectors: np.ndarray, ev: EvalSet,
             seed: int = 0) -> dict[str, Any]:
    train = vectors[_rows(item_ids, ev.train_ids)]
    test = vectors[_rows(item_ids, ev.test_ids)]
    exported, source = exported_clusters(admin, project)
    clusters = np.asarray([exported.get(int(i), -1) for i in ev.train_ids], dtype=np.int64)
    known = clusters >= 0
    return {
        "knn_accuracy": metrics.knn_accuracy(train, ev.train_labels, test, ev.test_labels, k=20),
        "cluster_accuracy": metrics.cluster_accuracy(test, ev.test_labels, seed=seed),
        "label_accuracy": metrics.label_accuracy(clusters, ev.train_labels),
        "labelled_share": float(known.mean()),
        "clusters": int(np.unique(clusters[known]).size),
        "labels_from": source,
    }


# --------------------------------------------------------------------------- supervised labeller


class SupervisedLabeller:
    """A person who gives true class labels (each flipped to another class with ``error_rate``).

    Labels become the label graph in spanning form: each labelled image gets a + edge to its
    class's first labelled image, and a class's first image gets - edges to the other classes'
    first images. The closure of these edges is exactly ``G = Y Y^T`` on the labelled images."""

    def __init__(self, database_url: str, project: int, user_id: int, ev: EvalSet, total: int,
                 error_rate: float, seed: int) -> None:
        rng = np.random.default_rng([seed, 7])
        self.engine = sa.create_engine(database_url)
        self.project, self.user_id = project, user_id
        order = rng.permutation(len(ev.train_ids))[: min(total, len(ev.train_ids))]
        self.queue_ids = ev.train_ids[order]
        given = ev.train_labels[order].copy()
        classes = np.unique(ev.train_labels)
        flip = rng.random(len(given)) < error_rate
        for i in np.flatnonzero(flip):
            others = classes[classes != given[i]]
            given[i] = others[rng.integers(len(others))]
        self.given = given
        self.flipped = int(flip.sum())
        self.done = 0
        self.first: dict[Hashable, int] = {}

    def label(self, count: int) -> int:
        from server import models
        from server.timeutil import utcnow

        stop = min(self.done + count, len(self.queue_ids))
        rows: list[dict[str, Any]] = []
        now = utcnow()

        def edge(src: int, dst: int, sign: int) -> None:
            rows.append({"project_id": self.project, "src": src, "dst": dst, "sign": sign, "weight": 1.0,
                         "kind": "answer", "annotator_id": self.user_id, "created_at": now})

        for item, lab in zip(self.queue_ids[self.done:stop].tolist(), self.given[self.done:stop].tolist(),
                             strict=True):
            rep = self.first.get(lab)
            if rep is None:
                for other in self.first.values():
                    edge(other, item, -1)
                self.first[lab] = item
            else:
                edge(rep, item, 1)
        if rows:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(models.Edge), rows)
        given = stop - self.done
        self.done = stop
        return given

    def close(self) -> None:
        self.engine.dispose()


# --------------------------------------------------------------------------- one run


def machine() -> dict[str, Any]:
    return bench_machine(load_average=[round(x, 2) for x in os.getloadavg()])


def stop_on_sigterm() -> None:
    """SIGTERM raises SystemExit in the main thread, so the server is stopped and the work folder
    removed on the way out (a background job also ignores SIGINT)."""
    import signal

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def snapshot(database_url: str, project: int, item_ids: np.ndarray, vectors: np.ndarray, ev: EvalSet,
             config: RunConfig, stage: str) -> None:
    """With ``PAL_LE_SNAPSHOTS=<folder>`` set, keep what the export saw at this point (edges, the
    published vectors, the truth) as an .npz, so that label inference can be studied offline."""
    folder = os.environ.get("PAL_LE_SNAPSHOTS")
    if not folder:
        return
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, src, dst, sign, weight, kind, COALESCE(annotator_id, -1), COALESCE(retracts_id, -1)"
            " FROM edges WHERE project_id = :p ORDER BY id"), {"p": project}).all()
    engine.dispose()
    kinds = {"answer": 0, "known": 1, "retract": 2}
    edges = np.asarray([(r[0], r[1], r[2], r[3], kinds.get(r[5], 3), r[6], r[7]) for r in rows], dtype=np.int64)
    weights = np.asarray([r[4] for r in rows], dtype=np.float64)
    name = f"{config.oracle}-e{config.error_rate:g}-{config.team or 'uniform'}-s{config.seed}-{stage}".replace(" ", "")
    out = Path(folder) / (name.replace(":", "_").replace(",", "+").replace("=", "") + ".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, edges=edges.reshape(-1, 7), weights=weights, item_ids=item_ids, vectors=vectors,
                        train_ids=ev.train_ids, train_labels=ev.train_labels)


def _split_evenly(total: int, parts: int) -> list[int]:
    return [total * (i + 1) // parts - total * i // parts for i in range(parts)]


@dataclass
class Progress:
    answers: int = 0
    tasks_issued: int = 0
    labels_given: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)


def run(config: RunConfig) -> dict[str, Any]:
    """One benchmark run; returns (and writes to ``config.out``) the result document."""
    from bench.stack import bootstrap_admin, fresh_database, start_server

    started = time.perf_counter()
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="pal-bench-le-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data = load_dataset(config.data, config.max_train_items, config.max_test_items, config.subset_seed)
    data_path = workdir / "data.npz"
    data.save(data_path)
    db = fresh_database(config.database_url, workdir)
    server = None
    driver: TrainerDriver | None = None
    labeller: SupervisedLabeller | None = None
    progress = Progress()
    sim_total: dict[str, Any] = {}
    try:
        env = {"PAL_ORACLE_SEED": str(config.seed), "PAL_SECRET_KEY": "bench-" + uuid.uuid4().hex}
        if not config.deployed:
            env["PAL_GRAPH_REFRESH_SECONDS"] = "0"
        server = start_server(db.url, workdir, env=env, workers=config.server_workers)
        admin_token = bootstrap_admin(db.url)
        admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=600)
        project = _create_project(admin, config, data_path)
        ev = EvalSet.build(admin, project, data)
        known = _give_known_labels(admin, project, ev, config) if config.oracle in SERVER_ORACLES else 0
        trainer_token = _account(admin, "trainer", f"trainer-{uuid.uuid4().hex[:6]}@bench.invalid")[1]
        driver = TrainerDriver(server.url, trainer_token, project, config)
        setup_s = time.perf_counter() - started

        def point(stage: str) -> None:
            assert driver is not None and driver.vectors is not None
            pos, neg = driver.edge_counts()
            t0 = time.perf_counter()
            m = evaluate(admin, project, driver.engine.items.ids, driver.vectors, ev, seed=config.seed)
            m["eval_s"] = round(time.perf_counter() - t0, 2)
            snapshot(db.url, project, driver.engine.items.ids, driver.vectors, ev, config, stage)
            point_ = {"stage": stage, "answers": progress.answers, "tasks": progress.tasks_issued,
                      "labels_given": progress.labels_given, "edges_pos": pos, "edges_neg": neg,
                      "train_step": driver.engine.step, **m, "elapsed_s": round(time.perf_counter() - started, 1)}
            progress.curve.append(point_)
            log.info("%s: answers %d, step %d, knn %.3f, cluster %.3f, labels %.3f (%d clusters, %.0f%% labelled)"
                     " [eval %.1fs]", stage, progress.answers, driver.engine.step, m["knn_accuracy"],
                     m["cluster_accuracy"], m["label_accuracy"], m["clusters"], 100 * m["labelled_share"],
                     m["eval_s"])

        driver.train(config.warmup_steps)
        point("warm-up")
        accounts = []
        truth: SimTruth | None = None
        team: list[AnnotatorModel] | None = None
        if config.oracle in SERVER_ORACLES:
            truth = SimTruth.from_npz(admin, project, data_path)
            accounts = create_annotators(admin, project, config.annotators)
            if config.team is not None:
                team = build_team(parse_team(config.team), error_rate=config.error_rate, labels_file=data_path)
        elif config.oracle in SUPERVISED:
            per_screen = config.n + 1 if config.oracle == "supervised-images" else 1
            uid = _account(admin, "annotator", f"labeller-{uuid.uuid4().hex[:6]}@bench.invalid")[0]
            labeller = SupervisedLabeller(db.url, project, uid, ev, config.tasks * per_screen,
                                          config.error_rate, config.seed)
        if config.schedule is not None:
            answers_per_round = [b - a for a, b in zip((0, *config.schedule), config.schedule, strict=False)]
        else:
            answers_per_round = _split_evenly(config.tasks, config.rounds)
        steps_per_round = _split_evenly(config.train_steps - config.warmup_steps, config.rounds)
        sim_seconds = 0.0
        for r in range(config.rounds):
            if truth is not None and answers_per_round[r]:
                sim = SimConfig(annotators=config.annotators, tasks=answers_per_round[r],
                                error_rate=config.error_rate, cant_tell_rate=config.cant_tell_rate,
                                think_ms=0.0, retry_rate=0.02, fetch_images=False, seed=config.seed * 1000 + r,
                                in_turns=config.in_turns)
                report = simulate(server.url, project, truth, sim, accounts, team)
                if report.errors:
                    raise RuntimeError(f"simulated annotators failed: {report.errors[:3]}")
                progress.answers += report.answers
                sim_seconds += report.seconds
                log.info("round %d: %d answers in %.1fs", r + 1, report.answers, report.seconds)
                _accumulate(sim_total, report.to_dict())
            elif labeller is not None:
                per_screen = config.n + 1 if config.oracle == "supervised-images" else 1
                progress.answers += answers_per_round[r]
                progress.labels_given += labeller.label(answers_per_round[r] * per_screen)
            progress.tasks_issued = int(admin.get(f"{API}/projects/{project}").json()["budget_spent"])
            t0 = time.perf_counter()
            driver.train(steps_per_round[r])
            log.info("round %d: %d steps in %.1fs", r + 1, steps_per_round[r], time.perf_counter() - t0)
            point(f"round {r + 1}")
        final = progress.curve[-1]
        result: dict[str, Any] = {
            "oracle": config.oracle,
            "tasks": progress.answers,
            "tasks_issued": progress.tasks_issued,
            "labels_given": progress.labels_given,
            "known_labels": known,
            "edges_pos": final["edges_pos"],
            "edges_neg": final["edges_neg"],
            "knn_accuracy": final["knn_accuracy"],
            "cluster_accuracy": final["cluster_accuracy"],
            "label_accuracy": final["label_accuracy"],
            "labelled_share": final["labelled_share"],
            "clusters": final["clusters"],
            "labels_from": final["labels_from"],
            "wall_s": round(time.perf_counter() - started, 1),
            "setup_s": round(setup_s, 1),
            "annotation_s": round(sim_seconds, 1),
            "curve": progress.curve,
            "simulator": sim_total or None,
            "supervised_labels_flipped": labeller.flipped if labeller is not None else None,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
            "data": {"file": str(config.data), "train_items": len(ev.train_ids), "test_items": len(ev.test_ids),
                     "classes": data.n_classes, "image_shape": list(data.images.shape[1:])},
            "machine": machine(),
            "behaviour": behaviour(),
        }
        admin.close()
    finally:
        if labeller is not None:
            labeller.close()
        if driver is not None:
            driver.close()
        if server is not None:
            server.stop()
        db.drop()
        if config.workdir is None and not config.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if config.out is not None:
        config.out.parent.mkdir(parents=True, exist_ok=True)
        config.out.write_text(json.dumps(result, indent=2))
    return result


def _accumulate(total: dict[str, Any], report: dict[str, Any]) -> None:
    for key, value in report.items():
        if key == "annotators":
            _accumulate_annotators(total.setdefault(key, []), value)
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            sub = total.setdefault(key, {})
            for k, v in value.items():
                sub[k] = sub.get(k, 0) + v
    total["measured_error_rate"] = total["flipped"] / total["marks"] if total.get("marks") else 0.0


def _accumulate_annotators(rows: list[dict[str, Any]], report: list[dict[str, Any]]) -> None:
    """Per-annotator rows summed over rounds (the same accounts, the same models, every round)."""
    for new in report:
        row = next((r for r in rows if r["annotator"] == new["annotator"]), None)
        if row is None:
            rows.append(row := {"annotator": new["annotator"], "model": new["model"]})
        for key in ("answers", "cant_tell", "marks", "flipped"):
            row[key] = row.get(key, 0) + new[key]
        row["measured_error_rate"] = row["flipped"] / row["marks"] if row["marks"] else 0.0


def _account(admin: httpx.Client, role: str, email: str) -> tuple[int, str]:
    resp = admin.post(f"{API}/users", json={"email": email, "role": role})
    resp.raise_for_status()
    uid = int(resp.json()["id"])
    tok = admin.post(f"{API}/users/{uid}/tokens", json={"name": "bench"})
    tok.raise_for_status()
    return uid, str(tok.json()["token"])


def _create_project(admin: httpx.Client, config: RunConfig, data_path: Path) -> int:
    oracle = config.oracle if config.oracle in SERVER_ORACLES else "random"
    budget = math.ceil(config.tasks / config.redundancy) if config.oracle in SERVER_ORACLES else 0
    resp = admin.post(f"{API}/projects", json={
        "name": f"label-efficiency-{config.oracle}-{uuid.uuid4().hex[:6]}", "oracle": oracle,
        "n_candidates": config.n, "redundancy": config.redundancy, "gold_rate": config.gold_rate,
        "budget_cap": budget,
    })
    resp.raise_for_status()
    project = int(resp.json()["id"])
    with data_path.open("rb") as f:
        imp = admin.post(f"{API}/projects/{project}/imports",
                         files={"file": (data_path.name, f, "application/octet-stream")})
    imp.raise_for_status()
    report = imp.json()
    if report["skipped"]:
        log.warning("import skipped %d items, e.g. %s", len(report["skipped"]), report["skipped"][:3])
    return project


def _give_known_labels(admin: httpx.Client, project: int, ev: EvalSet, config: RunConfig) -> int:
    """Post ``config.known_per_class`` training items of each class as known labels (the admin's
    route, as a user would); returns how many."""
    if config.known_per_class <= 0:
        return 0
    rng = np.random.default_rng([config.seed, 7])
    picked = []
    for label in np.unique(ev.train_labels):
        pool = ev.train_ids[ev.train_labels == label]
        chosen = rng.choice(pool, min(config.known_per_class, len(pool)), replace=False)
        picked += [(int(i), str(label)) for i in chosen]
    resp = admin.post(f"{API}/projects/{project}/known-labels",
                      json={"labels": [{"item_id": i, "label": lab} for i, lab in picked]})
    resp.raise_for_status()
    return len(picked)


# --------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = RunConfig(data=Path("."), tasks=0, oracle="active")
    p.add_argument("--data", type=Path, required=True, help=".npz with images, labels (and split)")
    p.add_argument("--tasks", type=int, default=None, help="human answers (screens looked at)")
    p.add_argument("--oracle", required=True, choices=STRATEGIES)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=None, help="result JSON (default: print it)")
    p.add_argument("--error-rate", type=float, default=d.error_rate)
    p.add_argument("--team", default=None, metavar="SPEC",
                   help="how each simulated annotator errs, as pal simulate --team (e.g. 'confusion=0.1:4,spammer:1', "
                        "the headline noise team); sets --annotators. Default: uniform flips at --error-rate")
    p.add_argument("--cant-tell-rate", type=float, default=d.cant_tell_rate)
    p.add_argument("--redundancy", type=int, default=d.redundancy)
    p.add_argument("--gold-rate", type=float, default=d.gold_rate)
    p.add_argument("--known-per-class", type=int, default=d.known_per_class,
                   help="training items per class given as known labels before any answer")
    p.add_argument("--n", type=int, default=d.n, help="candidates per grid")
    p.add_argument("--annotators", type=int, default=None, help=f"simulated annotators (default {d.annotators}, "
                                                                 "or the team's size)")
    p.add_argument("--at-once", dest="in_turns", action="store_false",
                   help="annotators answer concurrently (default: in turns, so that a re-run reproduces the run)")
    p.add_argument("--database-url", default=None,
                   help="PostgreSQL server to create a fresh database on (default: SQLite in the work folder)")
    p.add_argument("--train-steps", type=int, default=d.train_steps, help="training steps in all (fixed compute)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="SSL-only steps before any answer")
    p.add_argument("--rounds", type=int, default=d.rounds, help="answer/train rounds (points of the curve)")
    p.add_argument("--schedule", default=None,
                   help="cumulative answers at the end of each round, e.g. 100,300,1000 (sets --tasks, --rounds)")
    p.add_argument("--max-train-items", type=int, default=d.max_train_items)
    p.add_argument("--max-test-items", type=int, default=d.max_test_items)
    p.add_argument("--backbone", default=d.backbone, help="mlp (default), small_cnn, resnet18")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")
    p.add_argument("--workdir", type=Path, default=None, help="keep the database and logs here")
    p.add_argument("--log-level", default="INFO")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    team = args.team
    if team is not None and args.annotators is not None and args.annotators != team_size(parse_team(team)):
        raise ValueError(f"--annotators {args.annotators} but the team has {team_size(parse_team(team))}")
    return RunConfig(
        data=args.data, tasks=args.tasks or 0, oracle=args.oracle, seed=args.seed, out=args.out,
        error_rate=args.error_rate, team=team, cant_tell_rate=args.cant_tell_rate, redundancy=args.redundancy,
        gold_rate=args.gold_rate, known_per_class=args.known_per_class, n=args.n,
        annotators=args.annotators if args.annotators is not None else RunConfig.annotators,
        in_turns=args.in_turns,
        database_url=args.database_url,
        train_steps=args.train_steps, warmup_steps=args.warmup_steps, rounds=args.rounds,
        schedule=tuple(int(x) for x in args.schedule.split(",")) if args.schedule else None,
        max_train_items=args.max_train_items, max_test_items=args.max_test_items, backbone=args.backbone,
        batch_size=args.batch_size, threads=args.threads, workdir=args.workdir,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.label_efficiency", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop_on_sigterm()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.data.exists():
        print(f"python -m research.label_efficiency: {args.data} does not exist", file=sys.stderr)
        return 2
    if args.tasks is None and not args.schedule:
        parser.error("give --tasks T (or --schedule)")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"python -m research.label_efficiency: {exc}", file=sys.stderr)
        return 2
    result = run(config)
    summary = {k: v for k, v in result.items() if k not in ("curve", "config", "simulator", "machine", "data")}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
