"""trainer.modes.feature_input: the image side a frozen pretrained backbone sees."""

from __future__ import annotations

import torch

from trainer.config import TrainConfig
from trainer.modes import feature_input
from trainer.pretrained import InputSpec

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_feature_input_small_images_on_cpu_at_twice_their_side() -> None:
    assert feature_input(InputSpec(224), None, 64, CPU).size == 128
    assert feature_input(InputSpec(224), None, 50, CPU).size == 128  # 100 rounded up to 32


def test_feature_input_large_images_on_cpu_at_the_weights_size() -> None:
    assert feature_input(InputSpec(224), None, 256, CPU).size == 224


def test_feature_input_tiny_images_on_cpu_at_least_64() -> None:
    assert feature_input(InputSpec(224), None, 8, CPU).size == 64


def test_feature_input_on_gpu_at_the_weights_size() -> None:
    assert feature_input(InputSpec(224), None, 64, CUDA).size == 224


def test_feature_input_given_size_wins_and_keeps_normalisation() -> None:
    spec = InputSpec(224, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    out = feature_input(spec, 96, 512, CPU)
    assert out.size == 96 and out.mean == spec.mean and out.std == spec.std


def test_feature_size_below_16_refused() -> None:
    try:
        TrainConfig(feature_size=8)
    except ValueError as exc:
        assert "feature_size" in str(exc)
    else:
        raise AssertionError("feature_size 8 was accepted")
