"""Trainer throughput on this machine: the trainer's own training step against a bare PyTorch
loop with the same model, batch and loss, and the time to embed every item of a 60k project.

    pal bench trainer-throughput [--device cuda]   # writes bench/trainer_throughput.{json,md}
    python -m bench.trainer_throughput ...         # the same

Both sides draw a batch, augment it with the trainer's augmentation, run the small CNN on both
views, take VICReg and step AdamW. The bare side does it inline with the textbook two-view VICReg;
the trainer side is ``Engine.train_step`` (pair sampler, batch graph, graph-form loss). The two
alternate in short blocks so that other load on the machine hits both alike: the ratio is the
median over rounds of (trainer block) / (the bare block just before it). Data: synthetic 28x28
grayscale images (no download, the shapes of Fashion-MNIST).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.machine import cpu_model
from pal.core.edges import EdgeRecord
from trainer.augment import Augment
from trainer.backbones import build_model
from trainer.config import TrainConfig
from trainer.engine import Engine
from trainer.items import ItemTable

OUT = Path(__file__).resolve().parent


def synthetic_items(n: int, size: int = 28, classes: int = 10, seed: int = 0) -> tuple[ItemTable, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 50, size=(n, size, size, 1), dtype=np.uint8)
    for c in range(classes):
        rows = np.flatnonzero(labels == c)
        images[rows, 2 + 2 * c : 8 + 2 * c, 4:24] = 200  # a bar whose height says the class
    table = ItemTable.empty()
    table.extend(np.arange(1, n + 1, dtype=np.int64), images)
    return table, labels


def reference_vicreg(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The two-view VICReg of the paper's code (facebookresearch/vicreg), lambda = mu = 25, nu = 1."""
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x, y = x - x.mean(0), y - y.mean(0)
    std_loss = F.relu(1 - torch.sqrt(x.var(0) + 1e-4)).mean() / 2 + F.relu(1 - torch.sqrt(y.var(0) + 1e-4)).mean() / 2
    off = ~torch.eye(d, dtype=torch.bool)
    cov_loss = ((x.T @ x / (n - 1))[off].pow(2).sum() + (y.T @ y / (n - 1))[off].pow(2).sum()) / d
    return 25 * repr_loss + 25 * std_loss + cov_loss


def bare_loop(engine: Engine, batch: int, seed: int) -> Callable[[], None]:
    """The same model (same initial weights), optimiser, augmentation, batch, device and precision
    (on CUDA: the uint8 table on the GPU, channels_last, bf16 autocast), nothing else."""
    device = engine.device
    model = build_model(engine.config.backbone, engine.items.channels, engine.size, proj_dim=engine.config.proj_dim)
    model.load_state_dict(engine.model.state_dict())
    model.to(device)
    if engine.on_cuda:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(model.parameters(), lr=engine.config.lr, weight_decay=engine.config.weight_decay)
    augment = Augment(engine.items.channels, engine.size, engine.normalization)
    images, n = engine.images, len(engine.items)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)

    def step() -> None:
        rows = torch.from_numpy(rng.choice(n, size=batch, replace=False)).to(images.device)
        x = augment(images[torch.cat([rows, rows])], gen).to(device, non_blocking=True)
        if engine.on_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with engine.autocast():
            z = model(x).float()  # (2B, D)
        loss = reference_vicreg(*z.chunk(2))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def images_per_second(step: Callable[[], None], steps: int, images_per_step: int) -> float:
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()  # GPU work is asynchronous: count it inside the block that queued it
    return steps * images_per_step / (time.perf_counter() - start)


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_1m": os.getloadavg()[0],
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pal bench trainer-throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=60_000)
    parser.add_argument("--batch-size", type=int, default=256, help="pairs per step (2x images)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of one block per loop")
    parser.add_argument("--steps", type=int, default=1, help="steps per block")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (the trainer's own choice)")
    parser.add_argument("--backbone", default="small_cnn", choices=["small_cnn", "resnet18"])
    parser.add_argument("--out", type=Path, default=OUT / "trainer_throughput")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    items, labels = synthetic_items(args.items)
    config = TrainConfig(project=1, batch_size=args.batch_size, device=args.device, backbone=args.backbone)
    plain = Engine(config, items)  # no human edge yet: the augmentation graph
    human = Engine(config, items)  # 20k label-graph edges: half of each batch from human pairs
    rng = np.random.default_rng(1)
    src = rng.integers(0, args.items, 20_000)
    dst = np.array([rng.choice(np.flatnonzero(labels == labels[s])[:500]) for s in src])
    human.consume(
        [
            EdgeRecord(i + 1, int(items.ids[s]), int(items.ids[d]), 1, 1.0)
            for i, (s, d) in enumerate(zip(src, dst, strict=True))
        ],
        "0:0",
    )
    bare = bare_loop(plain, args.batch_size, seed=0)
    per_step = 2 * args.batch_size

    sides: dict[str, Callable[[], None]] = {
        "bare PyTorch loop": bare,
        "trainer step, augmentation graph": lambda: None if plain.train_step() else None,
        "trainer step, 50% human pairs": lambda: None if human.train_step() else None,
    }
    for step in sides.values():  # warm-up: allocator, kernels, first-call paths
        images_per_second(step, 2, per_step)
    names = list(sides)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate: no side always goes first
            samples[name].append(images_per_second(sides[name], args.steps, per_step))
    medians = {name: statistics.median(v) for name, v in samples.items()}
    best = {name: max(v) for name, v in samples.items()}
    bare_blocks = samples["bare PyTorch loop"]
    ratios = {
        name: statistics.median(x / b for x, b in zip(v, bare_blocks, strict=True)) for name, v in samples.items()
    }

    if plain.on_cuda:
        plain.embed_all()  # warm-up (first-call paths, cuDNN autotuning), then the timed pass
        synchronize()
    start = time.perf_counter()
    vectors = plain.embed_all()
    embed_s = time.perf_counter() - start

    result = {
        "machine": machine(),
        "settings": {
            "items": args.items,
            "image": "1x28x28 uint8",
            "backbone": args.backbone,
            "device": str(plain.device),
            "amp": str(plain.amp_dtype).removeprefix("torch.") if plain.on_cuda and config.amp else "off",
            "loss": "vicreg",
            "batch_pairs": args.batch_size,
            "images_per_step": per_step,
            "rounds": args.rounds,
            "steps_per_block": args.steps,
        },
        "train_images_per_s": {name: round(v, 1) for name, v in medians.items()},
        "train_samples_images_per_s": {name: [round(x, 1) for x in v] for name, v in samples.items()},
        "train_best_block_images_per_s": {name: round(v, 1) for name, v in best.items()},
        "ratio_to_bare": {name: round(v, 3) for name, v in ratios.items()},
        "ratio_to_bare_best_blocks": {name: round(v / best["bare PyTorch loop"], 3) for name, v in best.items()},
        "embed_all": {
            "items": len(vectors),
            "dim": int(vectors.shape[1]),
            "seconds": round(embed_s, 2),
            "images_per_s": round(len(vectors) / embed_s, 1),
        },
    }
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    m, s = r["machine"], r["settings"]
    on_gpu = m.get("gpu") and s.get("device", "cpu") != "cpu"
    gpu = f"GPU {m['gpu']} (training on {s['device']}, AMP {s['amp']}); " if on_gpu else ""
    lines = [
        "# Trainer throughput",
        "",
        f"Machine: {gpu}{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads); "
        f"1-min load average {m['load_avg_1m']:.1f} at the start, {m['load_avg_1m_end']:.1f} at the end "
        "(other processes share the cores: medians move with them, ratios much less). "
        "Written by `python -m bench.trainer_throughput`.",
        "",
        f"Training: {s['backbone']} + VICReg, {s['batch_pairs']} pairs = {s['images_per_step']} augmented "
        f"{s['image']} images per step; {s['rounds']} rounds, each running every loop for "
        f"{s['steps_per_block']} step(s) in rotating order. Ratio: median over rounds of the loop's speed "
        "over the bare loop's speed in the same round; best: fastest block of each loop.",
        "",
        "| loop | median images/s | best images/s | ratio to bare (paired median) | ratio to bare (best) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in r["train_images_per_s"].items():
        lines.append(
            f"| {name} | {v:.0f} | {r['train_best_block_images_per_s'][name]:.0f} "
            f"| {r['ratio_to_bare'][name]:.2f} | {r['ratio_to_bare_best_blocks'][name]:.2f} |"
        )
    e = r["embed_all"]
    lines += [
        "",
        f"Embedding all {e['items']:,} items ({e['dim']}-d, no grad, batches of 1024): "
        f"{e['seconds']:.1f} s ({e['images_per_s']:.0f} images/s).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
