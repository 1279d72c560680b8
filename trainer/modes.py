"""Which engine a configuration trains: images through a backbone, or a head on frozen features.

- ``image``: today's path (:class:`trainer.engine.Engine`): a backbone from
  :data:`trainer.backbones.BACKBONES` trained from random init on augmented views.
- ``frozen`` (:class:`FeatureEngine`): a pretrained backbone's pooled features are computed once
  per item (trainer.features) and a small head is trained on them with the same graph loss and
  batches. No image augmentation: the features are fixed, so a step costs a few matrix products.
  The published vectors are the head's trunk output; its projector feeds the loss, as the
  backbone/projector split of trainer/backbones.py.
- ``server`` (``--backbone features``): the same, on the server's current embedding version.
- ``finetune`` (``--finetune-blocks N``, for a GPU): the pretrained backbone in the image path,
  its last N blocks trained on augmented views, the rest frozen.

``--backbone auto``: small grayscale images -> small_cnn (unchanged); otherwise frozen
pretrained features when weights are on the machine (the given file, or the cache), else
ResNet-18 from random init as before, with a one-line warning that says how to get weights.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from trainer import ddp
from trainer.augment import Normalization
from trainer.backbones import BACKBONES, EmbeddingModel, default_backbone, projector
from trainer.client import ApiClient
from trainer.config import TrainConfig
from trainer.engine import Engine
from trainer.features import BackboneFeatures, FeatureSource, ServerFeatures, default_features_cache, item_features
from trainer.items import ItemTable
from trainer.pretrained import (
    EXTRAS,
    InputSpec,
    WeightsSpec,
    auto_fallback_hint,
    auto_weights,
    build_extra,
    build_torchvision,
    default_weights_cache,
    resolve_weights,
    sha256_of,
    torchvision_models,
)

log = logging.getLogger("trainer")

Kind = Literal["image", "frozen", "finetune", "server"]


@dataclass(frozen=True)
class Plan:
    kind: Kind
    weights: WeightsSpec | None = None  # torchvision weights (frozen / finetune)
    extra: str | None = None  # a timm:/open_clip: name (frozen / finetune)


def weights_cache(config: TrainConfig) -> Path:
    return Path(config.weights_cache) if config.weights_cache else default_weights_cache()


def features_cache(config: TrainConfig) -> Path | None:
    if config.features_cache is None:
        return default_features_cache()
    return None if config.features_cache.lower() in ("", "none") else Path(config.features_cache)


def plan_backbone(config: TrainConfig, channels: int, image_size: int) -> Plan:
    name = config.backbone
    pretrained: Kind = "finetune" if config.finetune_blocks > 0 else "frozen"
    if name == "features":
        return Plan("server")
    if name == "auto":
        if config.weights is None and default_backbone(channels, image_size) == "small_cnn":
            return Plan("image")
        spec = auto_weights(weights_cache(config), config.weights)
        if spec is None:
            log.warning(auto_fallback_hint(weights_cache(config)))
            return Plan("image")
        return Plan(pretrained, spec)
    if name.split(":", 1)[0] in EXTRAS:
        return Plan(pretrained, extra=name)
    if name in torchvision_models() and (name not in BACKBONES or config.weights is not None):
        return Plan(pretrained, resolve_weights(name, config.weights))
    return Plan("image")  # a registered backbone (or an unknown name, which build_model reports)


def head_model(in_dim: int, out_dim: int, proj_dim: int, dropout: float = 0.1) -> EmbeddingModel:
    """The trainable head on frozen features: standardise (running statistics, no affine), drop
    a few inputs (the two views of an item then differ), Linear-BN-ReLU-Linear to ``out_dim``:
    the published vectors. A two-layer projector feeds the loss."""
    hidden = max(out_dim, min(2 * in_dim, 1024))
    trunk = nn.Sequential(
        nn.BatchNorm1d(in_dim, affine=False),
        nn.Dropout(dropout),
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )
    return EmbeddingModel(trunk, out_dim, projector(out_dim, max(proj_dim, 2 * out_dim), proj_dim, layers=2))


class FeatureEngine(Engine):
    """:class:`Engine` on a table of frozen item features instead of images."""

    def __init__(self, config: TrainConfig, items: ItemTable, ctx: ddp.DistContext | None,
                 checkpoint: dict[str, Any] | None, source: FeatureSource, cache: Path | None) -> None:
        self.source, self.features_cache = source, cache
        self.ctx = ctx or ddp.DistContext(0, 1, 0, ddp.pick_device(config.device))
        self.features = self._item_features(items, None)  # (N, D) float32 on the CPU
        super().__init__(config, items, self.ctx, checkpoint)

    def _item_features(self, items: ItemTable, previous: tuple[np.ndarray, Tensor] | None) -> Tensor:
        """Rank 0 computes (or reads) them; the other ranks get its table."""
        table = None
        if self.ctx.is_main:
            table = item_features(self.source, items.ids, items.images, self.features_cache, previous)
        return self.ctx.broadcast(table)  # type: ignore[return-value]

    def _build_model(self) -> EmbeddingModel:
        return head_model(int(self.features.shape[1]), self.config.head_dim, self.config.proj_dim)

    def _initial_normalization(self) -> Normalization:
        return Normalization((0.0,), (1.0,))  # the source normalises its own input

    def _device_images(self) -> Tensor:
        return self.features.to(self.device)  # ``self.images`` holds the features here

    def _views(self, rows: np.ndarray) -> Tensor:
        return self.images[torch.from_numpy(rows).to(self.images.device)]  # (2n, D)

    def _embed_input(self, start: int, stop: int) -> Tensor:
        return self.images[start:stop]

    def items_added(self) -> None:
        known = len(self.features)
        self.features = self._item_features(self.items, (self.items.ids[:known], self.features))
        super().items_added()

    def checkpoint(self) -> dict[str, Any]:
        return {**super().checkpoint(), "features": self.source.id, "feature_dim": int(self.features.shape[1])}

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint.get("features") != self.source.id:
            raise ValueError(
                f"the checkpoint's head was trained on {checkpoint.get('features') or 'images'!r}, "
                f"not on {self.source.id!r}: start with another --checkpoint"
            )
        if checkpoint.get("feature_dim") != self.features.shape[1]:
            raise ValueError(
                f"the checkpoint's head takes {checkpoint.get('feature_dim')} features, these have "
                f"{self.features.shape[1]} (with --backbone features, a restart without the features cache "
                "reads the trainer's own output): keep the features cache or start with another --checkpoint"
            )
        super()._restore(checkpoint)


class _Gray3(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class PartlyFrozen(nn.Module):
    """A pretrained network whose blocks before the last ``trainable`` stay frozen (and in eval
    mode, so their batch-norm statistics stay the pretrained ones)."""

    def __init__(self, net: nn.Module, trainable: int) -> None:
        super().__init__()
        self.gray3, self.net = _Gray3(), net
        blocks = finetune_blocks(net)
        self.n_frozen = max(len(blocks) - trainable, 0)
        for p in net.parameters():
            p.requires_grad_(False)
        for block in blocks[self.n_frozen :]:
            for p in block.parameters():
                p.requires_grad_(True)
        self.train()

    def train(self, mode: bool = True) -> PartlyFrozen:
        super().train(mode)
        for block in finetune_blocks(self.net)[: self.n_frozen]:
            block.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(self.gray3(x))
        return out.flatten(1)


def finetune_blocks(net: nn.Module) -> list[nn.Module]:
    """The network's blocks in order: a ViT's encoder layers, the stages of ``features``
    (ConvNeXt, EfficientNet, MobileNet...), else its top-level children with parameters (ResNet:
    conv1, bn1, layer1..layer4)."""
    for path in ("encoder.layers", "features"):
        try:
            return list(net.get_submodule(path).children())
        except AttributeError:
            continue
    return [m for m in net.children() if any(True for _ in m.parameters())]


class FinetuneEngine(Engine):
    """:class:`Engine` on images through a pretrained backbone, its last blocks trained."""

    def __init__(self, config: TrainConfig, items: ItemTable, ctx: ddp.DistContext | None,
                 checkpoint: dict[str, Any] | None, net: nn.Module, dim: int, spec: InputSpec) -> None:
        self.pretrained, self.pretrained_dim, self.input_spec = net, dim, spec
        super().__init__(config, items, ctx, checkpoint)

    def _input_size(self) -> int:
        return self.input_spec.size

    def _build_model(self) -> EmbeddingModel:
        backbone = PartlyFrozen(self.pretrained, self.config.finetune_blocks)
        d, p = self.pretrained_dim, self.config.proj_dim
        return EmbeddingModel(backbone, d, projector(d, max(p, 2 * d), p))

    def _initial_normalization(self) -> Normalization:
        spec = self.input_spec
        if self.items.channels == 1:  # gray -> the same value in R, G and B
            return Normalization((float(np.mean(spec.mean)),), (float(np.mean(spec.std)),))
        return Normalization(spec.mean, spec.std)


def _pretrained(plan: Plan, ctx: ddp.DistContext, cache: Path) -> tuple[nn.Module, int, InputSpec, str]:
    """(network without classifier, feature width, its input, a label naming model and weights).

    Rank 0 downloads on a cache miss; the other ranks then read the cache."""
    if plan.extra is not None:
        net, dim, spec = build_extra(plan.extra)
        return net, dim, spec, plan.extra
    weights = plan.weights
    assert weights is not None
    if not ctx.is_main:
        ctx.barrier()  # wait for rank 0's download
    net, dim = build_torchvision(weights, cache, download=ctx.is_main)
    if ctx.is_main:
        ctx.barrier()
    label = f"torchvision {weights.label}"
    if weights.file is not None:
        label += f" sha256 {sha256_of(weights.file)[:16]}"
    return net, dim, weights.input_spec(), label


def feature_input(spec: InputSpec, feature_size: int | None, stored_side: int, device: torch.device) -> InputSpec:
    """The input the frozen backbone gets: ``feature_size`` when given; on a GPU the weights' own
    size; on a CPU at most twice the stored side, rounded up to 32 px. Upsampling a 64 px image to
    224 px adds no detail and costs three times the compute of 128 px (ResNet-18 on 2 CPU cores: 16
    against 52 images/s), which on a CPU is the difference between a first embedding in a minute
    and in several."""
    if feature_size is not None:
        size = feature_size
    elif device.type == "cuda" or stored_side <= 0:
        size = spec.size
    else:
        size = min(spec.size, max(64, -(-2 * stored_side // 32) * 32))
    return dataclasses.replace(spec, size=size)


def build_engine(
    config: TrainConfig,
    items: ItemTable,
    ctx: ddp.DistContext | None = None,
    checkpoint: dict[str, Any] | None = None,
    client: ApiClient | None = None,
) -> Engine:
    """The engine ``config`` asks for (see the module docstring)."""
    ctx = ctx or ddp.DistContext(0, 1, 0, ddp.pick_device(config.device))
    plan = plan_backbone(config, items.channels, config.image_size or int(items.images.shape[-1]))
    if plan.kind == "image":
        return Engine(config, items, ctx, checkpoint)
    source: FeatureSource
    if plan.kind == "server":
        source = ServerFeatures(client, config.project, config.server)
    else:
        net, dim, spec, label = _pretrained(plan, ctx, weights_cache(config))
        if plan.kind == "finetune":
            log.info("backbone: %s (%d features, %d px input, %s)", label, dim, spec.size, plan.kind)
            return FinetuneEngine(config, items, ctx, checkpoint, net, dim, spec)
        spec = feature_input(spec, config.feature_size, int(items.images.shape[-1]), ctx.device)
        log.info("backbone: %s (%d features, %d px input, %s)", label, dim, spec.size, plan.kind)
        batch = min(config.embed_batch_size, 256 if ctx.device.type == "cuda" else 32)
        shape = tuple(items.images.shape[1:])
        source = BackboneFeatures(net, dim, spec, label, shape, ctx.device, batch)
    return FeatureEngine(config, items, ctx, checkpoint, source, features_cache(config))
