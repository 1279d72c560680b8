"""Colour start: how soon a new colour-image project gets its first embedding from the real trainer
on this machine, with frozen pretrained features, against the small CNN trained from scratch.

    pal bench colour-start [--items 2000] [--size 64] [--baseline-timeout 300]

The benchmark generates its own data (no download): ``--items`` RGB images of ``--size`` px, eight
kinds (four shapes x two colours, with jittered position, scale, hue and a noisy background). It
writes a ResNet-18 weights file (torchvision's ``resnet18(weights=None)``, saved with
``torch.save`` of its state dict: this machine cannot download, and the timing does not depend on
the values) and passes it as a user with a downloaded file would: ``--backbone resnet18 --weights
FILE``. The file name carries no hash suffix, so ``trainer.pretrained`` does not check its SHA-256.

A fresh server (SQLite) gets one project per run. ``python -m trainer`` is started in a subprocess
with an empty data directory (no cached features) and stops after its first cycle
(``--max-steps`` = ``--publish-every``). Measured: seconds from the trainer's start to the project's
first current embedding (polled on the API), the feature-extraction images/s the trainer logs, and
the next grid: an annotator claims one, and the report gives the grid's oracle, the embedding id the
project's stats report, and where the candidates rank among the reference's neighbours in the
published vectors (the active oracle picks them near the reference; a grid drawn at random would sit
near the middle). The baseline in the same run is the same with ``--backbone small_cnn`` from random
init, cut off after ``--baseline-timeout`` seconds. Writes ``bench/colour_start.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from bench.machine import machine
from bench.stack import Database, ServerProcess, bootstrap_admin, fresh_database, start_server

ROOT = Path(__file__).resolve().parent.parent
API = "/api/v1"
GOAL_S = 120.0
FEATURES_LINE = re.compile(r"features: (\d+) / (\d+) items \(([\d.]+) img/s\)")
STEP_LINE = re.compile(r"step (\d+) \| ([\d.]+) steps/s")
PALETTE = ((220, 40, 40), (40, 90, 220))  # two colours; with four shapes, eight kinds


class TrainerFailed(RuntimeError):
    """The trainer stopped before it published anything; the message ends with its log's error."""


def colour_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, 3) uint8 images and (n,) labels: a disc, square, triangle or bar in one of two
    colours on a noisy background, with jittered position, scale and hue so that no two are alike."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % (4 * len(PALETTE))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = rng.integers(0, 90, size=(n, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        shape, colour = label % 4, label // 4
        cx, cy = rng.uniform(0.35, 0.65, 2)
        r = rng.uniform(0.18, 0.3)
        dx, dy = np.abs(xx - cx), np.abs(yy - cy)
        mask = [dx**2 + dy**2 < r**2, np.maximum(dx, dy) < r * 0.85,
                (yy - cy > -r) & (dx < (yy - cy + r) / 2), (dx < r) & (dy < r / 3)][shape]
        rgb = np.clip(np.array(PALETTE[colour]) + rng.integers(-30, 31, 3), 0, 255).astype(np.uint8)
        images[i][mask] = rgb
    return images, labels.astype(np.int64)


def write_weights(path: Path) -> Path:
    """A ResNet-18 state dict as torchvision's download holds one (random values: no network here)."""
    import torch
    import torchvision

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@dataclass
class Stack:
    db: Database
    server: ServerProcess
    admin: httpx.Client
    work: Path
    trainer_token: str
    annotator_id: int
    annotator_token: str

    def close(self) -> None:
        self.admin.close()
        self.server.stop()
        self.db.drop()


def _account(admin: httpx.Client, role: str) -> tuple[int, str]:
    resp = admin.post(f"{API}/users", json={"email": f"{role}-{uuid.uuid4().hex[:6]}@bench.invalid", "role": role})
    resp.raise_for_status()
    uid = int(resp.json()["id"])
    tok = admin.post(f"{API}/users/{uid}/tokens", json={"name": "bench"})
    tok.raise_for_status()
    return uid, str(tok.json()["token"])


def open_stack(work: Path) -> Stack:
    """A fresh SQLite database, a server on it, an admin, a trainer and an annotator account."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "pal-bench.sqlite3").unlink(missing_ok=True)  # a previous run's database: ids would differ
    db = fresh_database(None, work)
    server = start_server(db.url, work, env={"PAL_SECRET_KEY": "bench-" + uuid.uuid4().hex})
    admin = httpx.Client(base_url=server.url, timeout=300,
                         headers={"Authorization": f"Bearer {bootstrap_admin(db.url)}"})
    trainer = _account(admin, "trainer")
    annotator = _account(admin, "annotator")
    return Stack(db, server, admin, work, trainer[1], annotator[0], annotator[1])


def create_project(stack: Stack, images: np.ndarray, labels: np.ndarray, name: str) -> int:
    """A project with the active oracle, the images imported as an .npz through the API."""
    resp = stack.admin.post(f"{API}/projects", json={"name": f"{name}-{uuid.uuid4().hex[:6]}", "oracle": "active",
                                                     "n_candidates": 8, "budget_cap": 1000})
    resp.raise_for_status()
    project = int(resp.json()["id"])
    data = stack.work / f"{name}.npz"
    np.savez(data, images=images, labels=labels)
    with data.open("rb") as f:
        imp = stack.admin.post(f"{API}/projects/{project}/imports",
                               files={"file": (data.name, f, "application/octet-stream")})
    imp.raise_for_status()
    stack.admin.post(f"{API}/projects/{project}/members/{stack.annotator_id}").raise_for_status()
    return project


def _current_embedding(stack: Stack, project: int) -> int | None:
    resp = stack.admin.get(f"{API}/projects/{project}")
    resp.raise_for_status()
    current = resp.json()["current_embedding_id"]
    return None if current is None else int(current)


def _log_error(text: str) -> str:
    lines = [ln for ln in text.splitlines() if " ERROR " in ln or "Error" in ln]
    return lines[-1] if lines else (text.strip().splitlines() or ["(no output)"])[-1]


def first_version(stack: Stack, project: int, name: str, flags: list[str], timeout: float) -> dict[str, Any]:
    """Start the trainer on ``project`` with ``flags`` and wait for the project's first current
    embedding; stops early when the trainer exits without one. Cut off after ``timeout`` seconds."""
    data_dir = stack.work / f"data-{name}"
    shutil.rmtree(data_dir, ignore_errors=True)  # no features cached by a previous run, no checkpoint
    log_path = stack.work / f"trainer-{name}.log"
    env = {**os.environ, "PAL_DATA_DIR": str(data_dir), "PAL_TOKEN": stack.trainer_token,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "trainer", "--server", stack.server.url, "--project", str(project), *flags]
    with log_path.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        seconds, embedding_id = None, None
        try:
            while time.perf_counter() - started < timeout:
                embedding_id = _current_embedding(stack, project)
                if embedding_id is not None:
                    seconds = time.perf_counter() - started
                    break
                if proc.poll() is not None:
                    embedding_id = _current_embedding(stack, project)  # published just before exiting
                    seconds = time.perf_counter() - started if embedding_id is not None else None
                    break
                time.sleep(0.25)
        finally:
            if proc.poll() is None and embedding_id is None:
                proc.kill()  # cut off: the baseline's cap
            proc.wait(timeout=120)
    text = log_path.read_text(errors="replace")
    rates = [float(m.group(3)) for m in FEATURES_LINE.finditer(text)]
    steps = [float(m.group(2)) for m in STEP_LINE.finditer(text)]
    return {"trainer": name, "command": " ".join(["python -m trainer", *flags]), "published": seconds is not None,
            "seconds_to_first_version": None if seconds is None else round(seconds, 1), "timeout_s": timeout,
            "embedding_id": embedding_id, "exit_code": proc.returncode,
            "feature_images_per_s": rates[-1] if rates else None,
            "steps_per_s": round(float(np.median(steps)), 2) if steps else None,
            "error": None if seconds is not None else _log_error(text), "log": str(log_path)}


def require_published(result: dict[str, Any]) -> None:
    """Raise :class:`TrainerFailed` with the trainer's error line when it published nothing."""
    if not result["published"]:
        raise TrainerFailed(f"the {result['trainer']} trainer published no embedding within "
                            f"{result['timeout_s']:.0f} s (exit code {result['exit_code']}): {result['error']}")


def _vectors(stack: Stack, project: int) -> tuple[np.ndarray, np.ndarray]:
    from pal.wire import decode_npy

    base = f"{API}/projects/{project}/embeddings/current"
    ids = decode_npy(stack.admin.get(f"{base}/item_ids").content).astype(np.int64)
    return ids, decode_npy(stack.admin.get(f"{base}/vectors").content).astype(np.float32)


def neighbour_ranks(ids: np.ndarray, vectors: np.ndarray, reference: int, candidates: list[int]) -> np.ndarray:
    """Each candidate's rank (1 = nearest) among the reference's neighbours by cosine similarity."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    row = {int(i): n for n, i in enumerate(ids)}
    sims = unit @ unit[row[reference]]
    sims[row[reference]] = -np.inf
    order = np.argsort(-sims)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(1, len(ids) + 1)
    return rank[[row[c] for c in candidates]]


def next_grid(stack: Stack, project: int, tries: int = 10) -> dict[str, Any]:
    """The annotator's next grid after the publish: its oracle (a grid the server makes while its
    project state is still building is a "warming" one, answered "can't tell" and claimed again),
    the embedding id the stats report, and the candidates' neighbour ranks in that embedding."""
    client = httpx.Client(base_url=stack.server.url, timeout=120,
                          headers={"Authorization": f"Bearer {stack.annotator_token}"})
    engine = sa.create_engine(stack.db.url)
    try:
        for _ in range(tries):
            resp = client.post(f"{API}/projects/{project}/tasks/claim")
            resp.raise_for_status()
            task = resp.json()["task"]
            if task is None:
                raise RuntimeError(f"the claim after the publish gave no grid: {resp.json()}")
            with engine.connect() as conn:
                oracle = conn.execute(sa.text("SELECT oracle FROM tasks WHERE id = :t"), {"t": task["id"]}).scalar()
            if oracle != "warming":
                break
            client.post(f"{API}/tasks/{task['id']}/answers", json={
                "idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "cant_tell": True,
            }).raise_for_status()
            time.sleep(1.0)
    finally:
        client.close()
        engine.dispose()
    stats = stack.admin.get(f"{API}/projects/{project}/stats").json()["trainer"]
    ids, vectors = _vectors(stack, project)
    ranks = neighbour_ranks(ids, vectors, int(task["reference"]), [int(c) for c in task["candidates"]])
    return {"task": task["id"], "oracle": oracle, "stats_embedding_id": stats["embedding_id"],
            "stats_version": stats["current_version"], "candidate_ranks": ranks.tolist(),
            "median_rank_share": round(float(np.median(ranks)) / (len(ids) - 1), 4)}


def trainer_flags(args: argparse.Namespace, backbone: list[str]) -> list[str]:
    """The same loop settings for both trainers: one cycle of ``--steps`` steps, then stop."""
    return [*backbone, "--max-steps", str(args.steps), "--publish-every", str(args.steps),
            "--batch-size", str(args.batch_size), "--log-every", str(max(1, args.steps // 4))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both tracks on one server, frozen features first; raises :class:`TrainerFailed` when the
    frozen-feature trainer publishes nothing (a benchmark of nothing would only hide the error)."""
    images, labels = colour_images(args.items, args.size, seed=args.seed)
    stack = open_stack(args.work_dir)
    try:
        weights = args.weights or write_weights(args.work_dir / "resnet18_random_init.pth")
        project = create_project(stack, images, labels, "colour-frozen")
        load_before = os.getloadavg()
        frozen = first_version(stack, project, "frozen", trainer_flags(args, [
            "--backbone", "resnet18", "--weights", str(weights)]), args.timeout)
        require_published(frozen)
        frozen["next_grid"] = next_grid(stack, project)
        baseline: dict[str, Any] | None = None
        if args.baseline_timeout > 0:
            scratch = create_project(stack, images, labels, "colour-scratch")
            baseline = first_version(stack, scratch, "small_cnn", trainer_flags(args, ["--backbone", "small_cnn"]),
                                     args.baseline_timeout)
        load_after = os.getloadavg()
    finally:
        stack.close()
    ratio = None
    if baseline is not None and baseline["published"]:
        ratio = round(baseline["seconds_to_first_version"] / max(frozen["seconds_to_first_version"], 1e-9), 2)
    return {"items": args.items, "size": args.size, "kinds": 4 * len(PALETTE), "steps": args.steps,
            "batch_size": args.batch_size, "frozen": frozen, "baseline": baseline,
            "baseline_over_frozen": ratio, "goal_s": GOAL_S,
            "goal_met": frozen["seconds_to_first_version"] < GOAL_S,
            "machine": machine(load_before=[round(x, 2) for x in load_before],
                               load_after=[round(x, 2) for x in load_after])}


def _cell(track: dict[str, Any] | None) -> str:
    if track is None:
        return "not run"
    if not track["published"]:
        return f"not published within {track['timeout_s']:.0f} s"
    return f"{track['seconds_to_first_version']:.1f} s"


def _ratio(result: dict[str, Any]) -> str:
    if result["baseline_over_frozen"] is not None:
        return f"{result['baseline_over_frozen']}x"
    return "no baseline figure (not published within its cut-off)" if result["baseline"] else "no baseline run"


def _rate(track: dict[str, Any] | None) -> str:
    rate = None if track is None else track.get("steps_per_s")
    return "-" if rate is None else f"{rate:.2f}"


def write_markdown(result: dict[str, Any], path: Path) -> None:
    frozen, base, m = result["frozen"], result["baseline"], result["machine"]
    grid = frozen["next_grid"]
    rate = frozen["feature_images_per_s"]
    lines = [
        "# Colour start", "",
        f"`pal bench colour-start --steps {result['steps']}`: {result['items']:,} generated {result['size']} px RGB "
        f"images ({result['kinds']} kinds), SQLite, one server process, the trainer in a subprocess stopping after "
        f"one cycle of {result['steps']} steps ({result['batch_size']} pairs); on {m['cpu']} ({m['cores']} cores), "
        f"load average {m['load_before'][0]:.2f} before and {m['load_after'][0]:.2f} after.", "",
        "| trainer | first embedding after start | feature extraction | goal |", "|---|---|---|---|",
        f"| frozen ResNet-18 features (`--backbone resnet18 --weights FILE`) | {_cell(frozen)} | "
        f"{'-' if rate is None else f'{rate:.1f} images/s'} | < {result['goal_s']:.0f} s |",
        f"| small CNN from scratch (baseline) | {_cell(base)} | - | |", "",
        f"Training steps/s (median of the progress lines): frozen {_rate(frozen)}, small CNN {_rate(base)}. "
        "Each extra step of a longer first cycle (the trainer's default `--publish-every` is 200) adds 1 / that "
        "to the time.", "",
        f"Baseline / frozen: {_ratio(result)}.", "",
        f"Next grid after the publish: oracle `{grid['oracle']}`; the project's stats report embedding id "
        f"{grid['stats_embedding_id']} (the trainer published {frozen['embedding_id']}); the candidates rank "
        f"{grid['candidate_ranks']} among the reference's {result['items'] - 1:,} neighbours in those vectors "
        f"(median at {100 * grid['median_rank_share']:.1f} % of the list; a random grid sits near 50 %).", "",
        "The weights file is torchvision's `resnet18(weights=None)` saved locally (no download here): the "
        "timing is that of pretrained weights, the vectors' quality is not measured.", "",
    ]
    path.write_text("\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pal bench colour-start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000, help="generated images (default 2,000)")
    parser.add_argument("--size", type=int, default=64, help="image side in px (default 64)")
    parser.add_argument("--steps", type=int, default=50, help="steps of the trainers' one cycle, their "
                        "--publish-every (default 50; the trainer's own default is 200)")
    parser.add_argument("--batch-size", type=int, default=256, help="pairs per step (default 256, the trainer's)")
    parser.add_argument("--weights", type=Path, default=None, help="a ResNet-18 weights file (default: one written "
                        "from torchvision's resnet18(weights=None))")
    parser.add_argument("--timeout", type=float, default=600.0, help="cut-off for the frozen trainer (s)")
    parser.add_argument("--baseline-timeout", type=float, default=300.0,
                        help="cut-off for the small-CNN baseline (s; 0: no baseline)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench" / "colour-start-run",
                        help="database, server and trainer logs of the run (not committed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except TrainerFailed as exc:
        print(f"pal bench colour-start: {exc}", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "colour_start.json").write_text(json.dumps(result, indent=2))
    write_markdown(result, args.out_dir / "colour_start.md")
    print(json.dumps({k: result[k] for k in ("goal_met", "baseline_over_frozen")} | {
        "frozen_s": result["frozen"]["seconds_to_first_version"],
        "baseline": _cell(result["baseline"])}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
