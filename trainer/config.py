"""Trainer settings: one dataclass, and the command-line flags that fill it."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class TrainConfig:
    # where
    server: str = "http://127.0.0.1:8000"
    token: str = ""
    project: int = 0
    checkpoint: str | None = None  # file path; resumed from when it exists
    # model
    backbone: str = "auto"  # see trainer.modes: small_cnn / pretrained features / resnet18 by input
    weights: str | None = None  # pretrained weights: an enum name (IMAGENET1K_V2, DEFAULT) or a file
    weights_cache: str | None = None  # None: $PAL_DATA_DIR/weights (var/weights)
    features_cache: str | None = None  # None: $PAL_DATA_DIR/features; "none": keep features in memory only
    finetune_blocks: int = 0  # pretrained backbones: train the last N blocks on images (0: frozen features)
    head_dim: int = 256  # frozen-feature modes: the published width (the head's output)
    feature_size: int | None = None  # frozen features: the side the backbone sees (None: see trainer.modes)
    image_size: int | None = None  # None: the size the server stores (items must then share one size)
    proj_dim: int = 128
    # loss
    loss: str = "vicreg"
    temperature: float = 0.5  # NT-Xent only
    negative_weight: float = 2.0  # NT-Xent only: how many times a human - edge counts
    # optimisation
    batch_size: int = 256  # pairs per step: 2 * batch_size images go through the model
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    # batch mix (see trainer.batching)
    human_fraction: float = 0.5
    closure_fraction: float = 0.5
    negative_fraction: float = 0.25
    # loop
    publish_every: int = 200  # training steps between embedding versions (and checkpoints)
    max_steps: int | None = None  # stop once this many steps are done and published
    until_idle: bool = False  # stop instead of waiting once the edge feed has gone quiet
    idle_cycles: int = 1  # cycles without a new edge after which the loop is idle
    poll_interval: float = 5.0  # seconds between feed polls while idle
    edge_page: int = 1000
    pixel_page: int = 2048
    embed_batch_size: int = 1024
    log_every: int = 50
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # CUDA only: bf16 autocast where supported, else fp16 with loss scaling
    threads: int | None = None  # torch CPU threads; None leaves torch's default

    def __post_init__(self) -> None:
        for name in (
            "batch_size",
            "publish_every",
            "edge_page",
            "pixel_page",
            "embed_batch_size",
            "log_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.finetune_blocks < 0:
            raise ValueError(f"finetune_blocks must be >= 0; got {self.finetune_blocks}")
        if self.feature_size is not None and self.feature_size < 16:
            raise ValueError(f"feature_size must be >= 16; got {self.feature_size}")
        if self.head_dim < 1:
            raise ValueError(f"head_dim must be >= 1; got {self.head_dim}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2; got {self.batch_size}")
        for name in ("human_fraction", "closure_fraction", "negative_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """Settings without the token, fit for a checkpoint or a log."""
        out = dataclasses.asdict(self)
        out.pop("token")
        return out


_HELP = {
    "server": "server base URL",
    "token": "bearer token (default: $PAL_TOKEN)",
    "project": "project id",
    "checkpoint": "checkpoint file; resumed from when it exists",
    "backbone": "auto, small_cnn, mlp, resnet18 (random init), a torchvision model with --weights (resnet50...), "
    "features (a head on the server's current embedding), timm:NAME or open_clip:ARCH/TAG",
    "weights": "pretrained weights: a torchvision enum name (IMAGENET1K_V2; default DEFAULT) or a local file",
    "weights_cache": "folder of downloaded weights (default: $PAL_DATA_DIR/weights, else var/weights)",
    "features_cache": "folder of cached frozen features (default: $PAL_DATA_DIR/features; 'none': off)",
    "finetune_blocks": "pretrained backbones: fine-tune the last N blocks on augmented images (0: frozen features)",
    "head_dim": "frozen-feature modes: width of the published vectors (the trained head's output)",
    "feature_size": "frozen features: the image side the pretrained backbone sees (default: the weights' size on "
    "a GPU; on a CPU at most twice the stored side, rounded up to 32)",
    "image_size": "train at this size (the server resizes); default: stored size",
    "loss": "vicreg, simclr or barlow",
    "max_steps": "stop after this many steps (published and checkpointed)",
    "until_idle": "stop once the edge feed is quiet instead of waiting for edges",
    "publish_every": "steps between embedding versions and checkpoints",
    "human_fraction": "share of each batch drawn from human edges (0 still lets the batch graph relate rows "
    "that the answers put in one cluster or cannot-link; a project without answers is augmentation-only)",
    "device": "auto, cpu, cuda or cuda:N",
    "proj_dim": "width of the projector's output the loss sees (default 128)",
    "temperature": "NT-Xent (simclr) only: softmax temperature (default 0.5)",
    "negative_weight": "NT-Xent only: how many times a human 'different' edge counts (default 2)",
    "batch_size": "pairs per step; 2 x this many images go through the model (default 256)",
    "lr": "AdamW learning rate (default 1e-3)",
    "weight_decay": "AdamW weight decay (default 1e-4)",
    "warmup_steps": "steps of linear learning-rate warm-up (default 100)",
    "closure_fraction": "share of human 'same' pairs drawn inside known clusters rather than from asserted edges",
    "negative_fraction": "share of human pairs that are 'different' edges (contrastive losses only)",
    "idle_cycles": "cycles without a new edge after which the loop counts as idle (default 1)",
    "poll_interval": "seconds between feed polls while idle (default 5)",
    "edge_page": "edges per feed request (default 1000)",
    "pixel_page": "items per pixel request (default 2048)",
    "embed_batch_size": "items per forward pass when embedding every item (default 1024)",
    "log_every": "steps between progress lines (default 50)",
    "seed": "random seed of sampling, augmentation and initialisation (default 0)",
    "amp": "CUDA only: mixed precision (bf16, else fp16 with loss scaling)",
    "threads": "torch CPU threads (default: torch's choice)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (``--batch-size``...); ``--no-amp`` turns AMP off."""
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if f.name == "project":
            parser.add_argument(flag, type=int, required=True, help=_HELP[f.name])
        elif f.type in ("bool",):
            if default:
                parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                    help=f"turn off: {_HELP.get(f.name, f.name)}")
            else:
                parser.add_argument(flag, action="store_true", help=_HELP.get(f.name))
        else:
            kind = {"int": int, "float": float, "int | None": int}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=default, help=_HELP.get(f.name))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if not values.get("token"):
        values["token"] = os.environ.get("PAL_TOKEN", "")
    return TrainConfig(**values)
