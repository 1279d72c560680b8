"""Augmentations for the two views of an image, sized to the image and cheap on a CPU.

Input: a uint8 batch (B, C, H, W); output: a normalised float32 batch (B, C, size, size).

The recipes follow torchvision's transforms (RandomResizedCrop's scale/ratio sampling,
RandomHorizontalFlip, ColorJitter, RandomGrayscale), but the parameters are drawn per image
and applied to the whole batch at once: one ``affine_grid``/``grid_sample`` call for all the
geometry and a few broadcast ops for the colour. ``transforms.v2`` draws one set of
parameters per call, and calling it image by image costs about 0.2 ms per 28x28 image here,
a third of a small-CNN training step; the batched form costs a few microseconds per image.

- small grayscale images: random resized crop with a mild scale range, a small translation,
  horizontal flip; no colour jitter, which means nothing on one channel.
- RGB images: random resized crop, flip, colour jitter (brightness, contrast, saturation, hue,
  in that fixed order), random grayscale; for natural images over 64 px also SimCLR's Gaussian
  blur (half the views, kernel a tenth of the side, sigma 0.1-2.0 px at 224 px, scaled with the
  side), which would destroy most of a small image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_images(cls, images: Tensor, max_images: int = 10_000) -> Normalization:
        """Per-channel mean/std in [0, 1] units from (a prefix of) a uint8 (N, C, H, W) set."""
        sample = images[:max_images].to(torch.float32) / 255.0
        mean = sample.mean(dim=(0, 2, 3))
        std = sample.std(dim=(0, 2, 3)).clamp(min=1e-3)
        return cls(tuple(mean.tolist()), tuple(std.tolist()))

    def apply(self, images01: Tensor) -> Tensor:
        mean = torch.tensor(self.mean, device=images01.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images01.device).view(1, -1, 1, 1)
        return (images01 - mean) / std


@dataclass(frozen=True)
class AugmentRecipe:
    scale: tuple[float, float]  # crop area as a fraction of the image
    ratio: tuple[float, float]  # crop aspect ratio w / h
    translate: float  # extra shift of the crop centre, as a fraction of the image side
    flip_p: float
    jitter: tuple[float, float, float, float] | None  # brightness, contrast, saturation, hue
    jitter_p: float
    grayscale_p: float
    blur_p: float = 0.0  # drawn after everything else, and only when > 0
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # in pixels of a 224-px view; scaled to the size

    @classmethod
    def for_images(cls, channels: int, size: int) -> AugmentRecipe:
        if channels == 1:
            return cls(
                (0.6, 1.0),
                (0.8, 1.25),
                translate=2.0 / 28 if size <= 64 else 0.0,
                flip_p=0.5,
                jitter=None,
                jitter_p=0.0,
                grayscale_p=0.0,
            )
        return cls(
            (0.2, 1.0),
            (3 / 4, 4 / 3),
            translate=0.0,
            flip_p=0.5,
            jitter=(0.4, 0.4, 0.2, 0.1),
            jitter_p=0.8,
            grayscale_p=0.2,
            blur_p=0.5 if size > 64 else 0.0,
        )


def _check_uint8_batch(images: Tensor) -> None:
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise ValueError(f"want a uint8 batch (B, C, H, W); got {images.dtype} {tuple(images.shape)}")


def _uniform(n: int, low: float, high: float, gen: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=gen) * (high - low) + low


def crop_flip_thetas(n: int, recipe: AugmentRecipe, gen: torch.Generator | None = None) -> Tensor:
    """Per-image affine maps (n, 2, 3) from output to input coordinates in [-1, 1]."""
    area = _uniform(n, *recipe.scale, gen)
    log_ratio = _uniform(n, math.log(recipe.ratio[0]), math.log(recipe.ratio[1]), gen)
    w = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)  # crop width / image width
    h = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    # The crop [c - w, c + w] stays inside [-1, 1]; translation may then push it past the edge.
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - w) + (
        torch.rand(n, generator=gen) * 2 - 1
    ) * 2 * recipe.translate
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - h) + (
        torch.rand(n, generator=gen) * 2 - 1
    ) * 2 * recipe.translate
    flip = torch.where(torch.rand(n, generator=gen) < recipe.flip_p, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    return theta


def _grayscale(x: Tensor) -> Tensor:
    r, g, b = x.unbind(dim=1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)  # (B, 1, H, W)


def _hue_rotation(angle: Tensor) -> Tensor:
    """Per-image RGB->RGB matrices (B, 3, 3) rotating chroma in YIQ space by ``angle`` radians."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    cos, sin = angle.cos(), angle.sin()
    rot = torch.zeros(len(angle), 3, 3)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    return torch.linalg.inv(to_yiq) @ rot @ to_yiq


def colour_jitter(x: Tensor, recipe: AugmentRecipe, gen: torch.Generator | None = None) -> Tensor:
    """Per-image brightness, contrast, saturation, hue and grayscale on RGB in [0, 1]."""
    n = x.shape[0]
    if recipe.jitter is not None:
        b, c, s, h = recipe.jitter
        on = (torch.rand(n, generator=gen) < recipe.jitter_p).float()  # identity where off

        def factor(strength: float) -> Tensor:
            f = 1 + on * (_uniform(n, 1 - strength, 1 + strength, gen) - 1)
            return f.view(n, 1, 1, 1).to(x.device)

        x = (x * factor(b)).clamp(0, 1)
        mean = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * factor(c) + mean).clamp(0, 1)
        gray = _grayscale(x)
        x = ((x - gray) * factor(s) + gray).clamp(0, 1)
        angle = on * _uniform(n, -h, h, gen) * 2 * math.pi
        x = torch.einsum("bij,bjhw->bihw", _hue_rotation(angle).to(x.device), x).clamp(0, 1)
    if recipe.grayscale_p > 0:
        to_gray = (torch.rand(n, generator=gen) < recipe.grayscale_p).view(n, 1, 1, 1).to(x.device)
        x = torch.where(to_gray, _grayscale(x).expand_as(x), x)
    return x


def gaussian_blur(x: Tensor, recipe: AugmentRecipe, gen: torch.Generator | None = None) -> Tensor:
    """Blur a ``blur_p`` share of the images of a float (B, C, S, S) batch, sigma drawn per image.

    One separable grouped convolution for the whole batch (a kernel per image and channel),
    reflect padding; the images drawn off are returned unchanged."""
    n, c, size = x.shape[0], x.shape[1], x.shape[-1]
    on = torch.rand(n, generator=gen) < recipe.blur_p
    sigma = _uniform(n, *recipe.blur_sigma, gen) * size / 224
    radius = max(1, min(size // 20, (size - 1) // 2))  # kernel 2r+1, about a tenth of the side
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(x.device)  # (n, 2r+1)
    weights = kernel.repeat_interleave(c, dim=0)  # (n*C, 2r+1): one kernel per image and channel
    flat = F.pad(x.reshape(1, n * c, size, size), [radius] * 4, mode="reflect")
    flat = F.conv2d(flat, weights.view(n * c, 1, -1, 1), groups=n * c)  # along H
    flat = F.conv2d(flat, weights.view(n * c, 1, 1, -1), groups=n * c)  # along W
    return torch.where(on.view(n, 1, 1, 1).to(x.device), flat.view_as(x), x)


class Augment:
    """Random view of each image in a uint8 batch -> normalised float32 batch."""

    def __init__(
        self, channels: int, size: int, normalization: Normalization, recipe: AugmentRecipe | None = None
    ) -> None:
        self.channels, self.size, self.normalization = channels, size, normalization
        self.recipe = recipe or AugmentRecipe.for_images(channels, size)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_uint8_batch(images)
        if images.shape[1] != self.channels:
            raise ValueError(f"built for {self.channels} channels; got a batch {tuple(images.shape)}")
        n = images.shape[0]
        # Parameters come from a CPU generator (reproducible on any device), then move.
        theta = crop_flip_thetas(n, self.recipe, generator).to(images.device)  # (n, 2, 3)
        grid = F.affine_grid(theta, [n, self.channels, self.size, self.size], align_corners=False)
        x = F.grid_sample(
            images.to(torch.float32) / 255.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (n, C, size, size)
        if self.channels == 3:
            x = colour_jitter(x, self.recipe, generator)
        if self.recipe.blur_p > 0:
            x = gaussian_blur(x, self.recipe, generator)
        return self.normalization.apply(x)


class Preprocess:
    """Deterministic path for embedding: resize if needed, then the same normalisation."""

    def __init__(self, size: int, normalization: Normalization) -> None:
        self.size, self.normalization = size, normalization

    def __call__(self, images: Tensor) -> Tensor:
        _check_uint8_batch(images)
        if images.shape[-2:] != (self.size, self.size):
            images = v2.functional.resize(images, [self.size, self.size], antialias=True)
        return self.normalization.apply(images.to(torch.float32) / 255.0)
