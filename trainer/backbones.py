"""Encoders: a backbone that produces the published representation, and a projector head.

Where embeddings are taken: the backbone's pooled features ``h`` (before the projector) are
what the trainer publishes; the loss sees the projector's output ``z = g(h)``. As in SimCLR,
VICReg and BarlowTwins, the projector absorbs what the loss forces to be invariant or
decorrelated (augmentation-specific detail, a whitened code), so ``h`` keeps more of the
image and transfers better to the kNN search and linear probes run on the published vectors.

Add an architecture with :func:`register_backbone`; build one with :func:`build_model`.
Pretrained torchvision/timm/OpenCLIP networks and the frozen-feature head live in
trainer/pretrained.py and trainer/modes.py, which also decides what ``--backbone auto`` means
(:func:`default_backbone` below is its choice when no pretrained weights are on the machine).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import resnet18

BackboneFactory = Callable[..., tuple[nn.Module, int]]
BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register ``factory(in_channels, image_size, **kwargs) -> (module, feature_dim)``."""

    def add(factory: BackboneFactory) -> BackboneFactory:
        BACKBONES[name] = factory
        return factory

    return add


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


@register_backbone("small_cnn")
def small_cnn(in_channels: int, image_size: int, width: int = 32) -> tuple[nn.Module, int]:
    """Four 3x3 conv blocks, two stride-2 downsamplings, global average pooling: (B, 4*width).

    Sized for 28x28-64x64 images on a CPU: about 15M multiply-adds per 28x28 image at width 32.
    """
    del image_size  # global pooling makes it size-agnostic
    net = nn.Sequential(
        _conv_bn_relu(in_channels, width),
        _conv_bn_relu(width, 2 * width, stride=2),
        _conv_bn_relu(2 * width, 4 * width, stride=2),
        _conv_bn_relu(4 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return net, 4 * width


@register_backbone("mlp")
def mlp(in_channels: int, image_size: int, width: int = 512, out_dim: int = 256) -> tuple[nn.Module, int]:
    """Two linear layers on the pixels: about 30 ms per 256-pair step on one CPU core, some 25 times
    cheaper than the small CNN. For small images and quick experiments (the label-efficiency
    benchmark trains it, several seeds per strategy)."""
    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size * image_size, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
        nn.Linear(width, out_dim, bias=False), nn.BatchNorm1d(out_dim), nn.ReLU(),
    )
    return net, out_dim


@register_backbone("resnet18")
def resnet18_backbone(in_channels: int, image_size: int, small_stem: bool | None = None) -> tuple[nn.Module, int]:
    """torchvision ResNet-18 without its classifier: (B, 512).

    ``small_stem`` (default: on for images up to 64 px) swaps the 7x7/stride-2 conv and the
    max-pool for one 3x3/stride-1 conv, the usual CIFAR stem: the ImageNet stem would shrink a
    32x32 image to 8x8 before the first residual stage.
    """
    net = resnet18(weights=None)
    if small_stem is None:
        small_stem = image_size <= 64
    if small_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()  # type: ignore[assignment]
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()  # type: ignore[assignment]
    return net, 512


def projector(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 3) -> nn.Sequential:
    """VICReg/BarlowTwins-style MLP: (Linear-BN-ReLU) x (layers - 1), then a plain Linear."""
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    mods.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*mods)


class EmbeddingModel(nn.Module):
    """``forward`` gives the projector output the loss needs; ``embed`` the published features."""

    def __init__(self, backbone: nn.Module, feature_dim: int, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.projector = head

    def embed(self, x: Tensor) -> Tensor:
        features: Tensor = self.backbone(x)  # (B, feature_dim)
        return features

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.projector(self.embed(x))  # (B, proj_dim)
        return out


def default_backbone(in_channels: int, image_size: int) -> str:
    """The small CNN for small grayscale images, ResNet-18 otherwise."""
    return "small_cnn" if in_channels == 1 and image_size <= 64 else "resnet18"


def build_model(
    name: str,
    in_channels: int,
    image_size: int,
    proj_dim: int = 128,
    proj_hidden_dim: int | None = None,
    proj_layers: int = 3,
    **backbone_kwargs: Any,
) -> EmbeddingModel:
    """Backbone ``name`` ("auto" picks by input) plus a projector to ``proj_dim``.

    ``proj_hidden_dim`` defaults to ``max(proj_dim, 2 * feature_dim)``.
    """
    if name == "auto":
        name = default_backbone(in_channels, image_size)
    try:
        factory = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)} or 'auto'") from None
    backbone, feature_dim = factory(in_channels, image_size, **backbone_kwargs)
    hidden = proj_hidden_dim or max(proj_dim, 2 * feature_dim)
    return EmbeddingModel(backbone, feature_dim, projector(feature_dim, hidden, proj_dim, proj_layers))


@torch.no_grad()
def feature_dim_of(model: EmbeddingModel, in_channels: int, image_size: int) -> int:
    """Published width, checked by a forward pass (catches a factory that lies about it)."""
    was_training = model.training
    model.eval()
    out = model.embed(torch.zeros(2, in_channels, image_size, image_size))
    model.train(was_training)
    return int(out.shape[1])
