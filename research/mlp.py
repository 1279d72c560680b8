"""The harness's backbone: an MLP on pixels, cheap enough for a multi-seed benchmark on a CPU."""

from __future__ import annotations


def register_mlp_backbone() -> None:
    """A small MLP on pixels (``--backbone mlp``): about 30 ms per 256-pair step on one CPU core,
    some 25 times cheaper than the small CNN, which makes a multi-seed benchmark affordable."""
    from torch import nn

    from trainer.backbones import BACKBONES, register_backbone

    if "mlp" in BACKBONES:
        return

    @register_backbone("mlp")
    def mlp(in_channels: int, image_size: int, width: int = 512, out_dim: int = 256) -> tuple[nn.Module, int]:
        net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * image_size * image_size, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Linear(width, out_dim, bias=False), nn.BatchNorm1d(out_dim), nn.ReLU(),
        )
        return net, out_dim
