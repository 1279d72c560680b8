from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.backbones import BACKBONES, build_model, default_backbone, feature_dim_of, register_backbone


def test_small_cnn_gives_features_and_projections() -> None:
    model = build_model("small_cnn", 1, 28, proj_dim=32).eval()
    x = torch.zeros(3, 1, 28, 28)
    assert model.embed(x).shape == (3, 128) and model(x).shape == (3, 32)


def test_small_cnn_accepts_other_sizes_and_channels() -> None:
    assert build_model("small_cnn", 3, 40).eval().embed(torch.zeros(2, 3, 40, 40)).shape == (2, 128)


def test_resnet18_small_stem_keeps_resolution() -> None:
    model = build_model("resnet18", 3, 32)
    conv1 = model.backbone.conv1
    assert (conv1.kernel_size, conv1.stride) == ((3, 3), (1, 1)) and isinstance(model.backbone.maxpool, nn.Identity)


def test_resnet18_large_images_keep_imagenet_stem() -> None:
    model = build_model("resnet18", 3, 224)
    assert model.backbone.conv1.kernel_size == (7, 7) and isinstance(model.backbone.maxpool, nn.MaxPool2d)


def test_resnet18_grayscale_gives_512_features() -> None:
    model = build_model("resnet18", 1, 32, proj_dim=16)
    assert feature_dim_of(model, 1, 32) == 512 and model.feature_dim == 512


@pytest.mark.parametrize(
    ("channels", "size", "name"), [(1, 28, "small_cnn"), (3, 32, "resnet18"), (1, 128, "resnet18")]
)
def test_default_backbone_by_input(channels: int, size: int, name: str) -> None:
    assert default_backbone(channels, size) == name


def test_build_model_unknown_backbone_names_choices() -> None:
    with pytest.raises(ValueError, match="small_cnn"):
        build_model("vit_h", 3, 32)


def test_register_backbone_makes_it_buildable() -> None:
    @register_backbone("test_linear")
    def linear(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, 5)), 5

    try:
        assert build_model("test_linear", 1, 4, proj_dim=3)(torch.zeros(2, 1, 4, 4)).shape == (2, 3)
    finally:
        BACKBONES.pop("test_linear")


def test_projector_output_is_not_the_published_feature() -> None:
    model = build_model("small_cnn", 1, 28, proj_dim=128).eval()
    x = torch.randn(4, 1, 28, 28)
    assert not torch.allclose(model.embed(x), model(x))


def test_mlp_is_shipped_and_gives_features_and_projections() -> None:
    model = build_model("mlp", 1, 28, proj_dim=32).eval()
    with torch.no_grad():
        assert model.embed(torch.zeros(3, 1, 28, 28)).shape == (3, 256)
        assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 32)
