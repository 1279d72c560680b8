"""The training loop, top to bottom.

    fetch items -> [ poll the edge feed -> update the graph -> train K steps -> embed every
    item -> publish the version with its metrics -> checkpoint ] -> repeat

It resumes exactly from a checkpoint (model, optimizer, schedule, step, cursor and the edges
consumed so far). Stops: ``max_steps`` (once reached, published and checkpointed; it keeps
training through quiet spells until then) or ``until_idle`` (once a poll brings no new edge
after at least one published cycle). With neither, an idle trainer stops training, polls every
``poll_interval`` seconds, and trains again when edges come.

Each phase is a public function, so that a benchmark stepping the trainer itself runs this
code: :func:`load_items`, :func:`load_engine`, then per cycle :func:`poll`, :func:`decide`,
:func:`train_steps` and :func:`publish`.

Start it with :func:`main` (``pal train --server URL --token T --project P ...``), with
:func:`run_from_args` from a parser that used :func:`trainer.config.add_arguments`, with
:func:`run` from Python, or as ``python -m trainer --project P ...``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from pal.cli_parser import Parser
from pal.core.edges import EdgeRecord
from trainer import ddp
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.client import ApiClient
from trainer.config import TrainConfig, add_arguments, config_from_args
from trainer.engine import Engine
from trainer.items import ItemTable, fetch_items
from trainer.losses import LossTerms
from trainer.modes import build_engine
from trainer.pretrained import BackboneSetupError

log = logging.getLogger("trainer")


@dataclass
class RunResult:
    step: int
    cursor: str
    edges_consumed: int
    versions: list[dict[str, Any]] = field(default_factory=list)  # the server's answers to uploads
    metrics: dict[str, float] = field(default_factory=dict)  # the last published metrics


@dataclass
class Published:
    """One published version: the server's answer, the vectors sent and the metrics sent with them."""

    version: dict[str, Any]
    vectors: np.ndarray
    metrics: dict[str, float]


class Meter:
    """Running sums of loss terms (kept on the device: no sync per step) and throughput."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros(()))
        self.steps = 0
        self.images = 0
        self.started = time.perf_counter()

    def add(self, terms: LossTerms, images: int) -> None:
        for name, value in {"loss": terms.total, **terms.terms}.items():
            self.sums[name] = self.sums[name].to(value.device) + value.detach()
        self.steps += 1
        self.images += images

    def summary(self) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        out = {name: float(total) / max(self.steps, 1) for name, total in self.sums.items()}
        out.update(steps_per_s=self.steps / seconds, images_per_s=self.images / seconds)
        return out


def poll_feed(client: ApiClient, project: int, cursor: str, page: int) -> tuple[list[EdgeRecord], str]:
    """Every row after ``cursor``, draining all pages, and the cursor after the last one."""
    rows: list[EdgeRecord] = []
    while True:
        got = client.get_edges(project, cursor, page)
        rows.extend(got.edges)
        cursor = got.next_cursor
        if not got.has_more:
            if got.held_back:
                h = got.held_back
                log.warning("%s committed edges held back for %.0f s by transaction pid %s in database %s (%s)",
                            h.get("edges"), h.get("oldest_edge_age_s") or 0.0, h.get("blocker_pid"),
                            h.get("blocker_database"), h.get("blocker_state"))
            return rows, cursor


def graph_metrics(engine: Engine) -> dict[str, float]:
    snap = engine.snap
    return {
        "edges_positive": float(len(snap.positives)),
        "edges_negative": float(len(snap.negatives)),
        "components": float(len(snap.components)),
        "items_in_components": float(sum(len(c) for c in snap.components)),
        "edges_unknown_items": float(snap.unknown_items),
    }


def run(config: TrainConfig, client: ApiClient | None = None) -> RunResult:
    ctx = ddp.setup(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    own_client = client is None and ctx.is_main
    if own_client:
        client = ApiClient(config.server, config.token)
    try:
        return _run(config, client, ctx)
    finally:
        if own_client and client is not None:
            client.close()
        ddp.teardown()


def _run(config: TrainConfig, client: ApiClient | None, ctx: ddp.DistContext) -> RunResult:
    items = load_items(client, config, ctx)
    engine = load_engine(config, items, ctx, client)
    result = RunResult(engine.step, engine.cursor, engine.store.consumed)
    cycles, quiet_polls = 0, 0
    # Stop before polling once the step budget is spent: rows read then would be counted in the
    # result but not in the last checkpoint (a resume re-reads them, but the two would disagree).
    while config.max_steps is None or engine.step < config.max_steps:
        quiet_polls = 0 if poll(client, engine) else quiet_polls + 1
        action = decide(config, cycles, quiet_polls)
        if action == "stop":
            break
        if action == "wait":
            time.sleep(config.poll_interval)
            continue
        meter = train_steps(engine, cycle_steps(config, engine.step))
        if ctx.is_main and client is not None:
            published = publish(client, engine, meter)
            result.versions.append(published.version)
            result.metrics = published.metrics
        ctx.barrier()
        cycles += 1
    result.step, result.cursor, result.edges_consumed = engine.step, engine.cursor, engine.store.consumed
    return result


def load_items(client: ApiClient | None, config: TrainConfig, ctx: ddp.DistContext) -> ItemTable:
    """Every item of the project: rank 0 (the one with a client) reads them and hands them to the others."""
    items = ItemTable.empty()
    if client is not None:
        project = client.get_project(config.project)
        log.info("project %s (%s)", config.project, project.get("name", "?"))
        fetch_items(client, config.project, items, config.image_size, config.pixel_page)
    return ctx.broadcast(items)


def load_engine(
    config: TrainConfig, items: ItemTable, ctx: ddp.DistContext, client: ApiClient | None = None
) -> Engine:
    """Model, optimizer and graph: fresh, or resumed from ``config.checkpoint`` when that file exists.
    The backbone setting picks the engine (trainer.modes); ``client`` serves ``--backbone features``."""
    checkpoint = load_checkpoint(config.checkpoint) if config.checkpoint else None
    engine = build_engine(config, items, ctx, checkpoint, client)
    if checkpoint is not None:
        log.info(
            "resumed at step %d, cursor %s, %d edges consumed",
            engine.step,
            engine.cursor,
            engine.store.consumed,
        )
    return engine


def poll(client: ApiClient | None, engine: Engine) -> int:
    """Fold what the server has new into the engine: items after the table's last one, then every
    feed row after the cursor. Rank 0 (the one with a client) reads and hands both to the other
    ranks, so every rank trains on the same table and graph. Returns the number of new rows."""
    config, ctx, items = engine.config, engine.ctx, engine.items
    news: tuple[np.ndarray, np.ndarray, list[EdgeRecord], str] | None = None
    if client is not None:
        before = len(items)
        fetch_items(client, config.project, items, config.image_size, config.pixel_page)
        rows, cursor = poll_feed(client, config.project, engine.cursor, config.edge_page)
        news = (items.ids[before:], items.images[before:].numpy(), rows, cursor)
    new_ids, new_images, rows, cursor = ctx.broadcast(news)  # type: ignore[misc]
    if not ctx.is_main and len(new_ids):
        items.extend(new_ids, new_images.transpose(0, 2, 3, 1))
    if len(new_ids):
        engine.items_added()
    return engine.consume(rows, cursor)


Action = Literal["stop", "wait", "train"]


def decide(config: TrainConfig, cycles: int, quiet_polls: int) -> Action:
    """What a poll leads to. Idle means a cycle was published and the last ``idle_cycles`` polls
    brought no new edge: ``until_idle`` then stops; without a step budget there is nothing new to
    learn from, so the loop waits for answers; with one it keeps training towards it."""
    idle = cycles > 0 and quiet_polls >= config.idle_cycles
    if idle and config.until_idle:
        return "stop"
    if idle and config.max_steps is None:
        return "wait"
    return "train"


def cycle_steps(config: TrainConfig, step: int) -> int:
    """Steps in the cycle starting at ``step``: ``publish_every``, cut to what ``max_steps`` leaves."""
    if config.max_steps is None:
        return config.publish_every
    return min(config.publish_every, config.max_steps - step)


def train_steps(engine: Engine, n_steps: int) -> Meter:
    """Train ``n_steps`` steps and return the cycle's meter; rank 0 logs every ``log_every`` steps.

    The random state restarts from (seed, rank, step) first, so a resumed run repeats the draws."""
    config = engine.config
    engine.reseed()
    meter, window = Meter(), Meter()
    for done in range(1, n_steps + 1):
        terms = engine.train_step()
        meter.add(terms, 2 * config.batch_size)
        window.add(terms, 2 * config.batch_size)
        if engine.ctx.is_main and engine.step % config.log_every == 0:
            summary = window.summary()
            log_progress(engine.step, summary, (n_steps - done) / max(summary["steps_per_s"], 1e-9))
            window = Meter()
    return meter


def log_progress(step: int, summary: dict[str, float], publish_in_s: float | None = None) -> None:
    """Throughput, the seconds left to the cycle's publish at that rate, and the loss terms."""
    throughput = ("loss", "steps_per_s", "images_per_s")
    log.info(
        "step %d | %.2f steps/s %.0f img/s%s | loss %.4f | %s",
        step,
        summary["steps_per_s"],
        summary["images_per_s"],
        "" if publish_in_s is None else f" | next publish in {publish_in_s:.0f}s",
        summary["loss"],
        " ".join(f"{k} {v:.4f}" for k, v in summary.items() if k not in throughput),
    )


def publish(client: ApiClient, engine: Engine, meter: Meter) -> Published:
    """Embed every item, upload the version with the cycle's metrics, then checkpoint (when the
    config names a file): a cycle's end, where a resume picks up."""
    config = engine.config
    started = time.perf_counter()
    vectors = engine.embed_all()
    metrics = {
        **meter.summary(),
        **graph_metrics(engine),
        "embed_seconds": time.perf_counter() - started,
    }
    metrics["lr"] = float(engine.scheduler.get_last_lr()[0])
    version = client.upload_embeddings(
        config.project,
        item_ids=engine.items.ids,
        vectors=vectors,
        step=engine.step,
        edges_seen=engine.store.consumed,
        cursor=engine.cursor,
        metrics=metrics,
    )
    log.info(
        "published version %s at step %d (%d items x %d, %d edges consumed, embed %.1fs)",
        version.get("id", "?"),
        engine.step,
        *vectors.shape,
        engine.store.consumed,
        metrics["embed_seconds"],
    )
    if config.checkpoint:
        save_checkpoint(config.checkpoint, engine.checkpoint())
    return Published(version, vectors, metrics)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pal train", description="Train and publish PAL embeddings.")
    add_arguments(parser)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """For a CLI that added :func:`trainer.config.add_arguments` to its ``train`` parser."""
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: one line per feed poll drowns the trainer's own progress.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    result = run(config_from_args(args))
    log.info("stopped at step %d, cursor %s, %d edges consumed", result.step, result.cursor, result.edges_consumed)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``pal train ...``: parse flags, run until a stop condition or Ctrl-C."""
    try:
        return run_from_args(build_parser().parse_args(argv))
    except BackboneSetupError as exc:  # missing weights or extra: one line, no traceback
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.info("interrupted; a restart resumes from the last checkpoint")
        return 130
