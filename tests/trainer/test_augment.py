from __future__ import annotations

import pytest
import torch

from trainer.augment import Augment, AugmentRecipe, Normalization, Preprocess

UNIT = Normalization((0.0,), (1.0,))
IDENTITY = AugmentRecipe((1.0, 1.0), (1.0, 1.0), translate=0.0, flip_p=0.0, jitter=None, jitter_p=0.0, grayscale_p=0.0)


def images(n: int = 4, channels: int = 1, size: int = 28) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def test_augment_gives_normalised_float_batch() -> None:
    x = images(8)
    out = Augment(1, 28, Normalization.from_images(x))(x)
    assert out.shape == (8, 1, 28, 28) and out.dtype == torch.float32


def test_augment_identity_recipe_is_exact() -> None:
    x = images()
    assert torch.allclose(Augment(1, 28, UNIT, IDENTITY)(x), x.float() / 255, atol=1e-5)


def test_augment_flip_mirrors_columns() -> None:
    x = images()
    flip = AugmentRecipe((1.0, 1.0), (1.0, 1.0), 0.0, 1.0, None, 0.0, 0.0)
    assert torch.allclose(Augment(1, 28, UNIT, flip)(x), x.flip(-1).float() / 255, atol=1e-5)


def test_augment_draws_parameters_per_image() -> None:
    x = images(1).repeat(6, 1, 1, 1)
    out = Augment(1, 28, UNIT)(x, torch.Generator().manual_seed(1))
    assert len({tuple(o.flatten()[:200].tolist()) for o in out}) == 6


def test_augment_same_generator_seed_same_views() -> None:
    x, aug = images(), Augment(3, 32, UNIT.__class__((0.5,) * 3, (0.25,) * 3))
    x = images(channels=3, size=32)
    one = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(one, aug(x, torch.Generator().manual_seed(3)))


def test_augment_rgb_jitter_changes_colours() -> None:
    x = images(8, channels=3, size=32)
    no_geometry = AugmentRecipe((1.0, 1.0), (1.0, 1.0), 0.0, 0.0, (0.4, 0.4, 0.2, 0.1), 1.0, 0.0)
    out = Augment(3, 32, Normalization((0.0,) * 3, (1.0,) * 3), no_geometry)(x)
    assert not torch.allclose(out, x.float() / 255, atol=1e-2) and out.min() >= 0 and out.max() <= 1


def test_augment_grayscale_makes_channels_equal() -> None:
    x = images(4, channels=3, size=32)
    gray = AugmentRecipe((1.0, 1.0), (1.0, 1.0), 0.0, 0.0, None, 0.0, 1.0)
    out = Augment(3, 32, Normalization((0.0,) * 3, (1.0,) * 3), gray)(x)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])


def test_augment_resizes_to_target_size() -> None:
    assert Augment(1, 20, UNIT)(images(2, size=28)).shape == (2, 1, 20, 20)


def test_augment_rejects_float_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Augment(1, 28, UNIT)(torch.zeros(2, 1, 28, 28))


def test_augment_rejects_wrong_channel_count() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3, 28, 28\)"):
        Augment(1, 28, UNIT)(images(2, channels=3))


def test_preprocess_resizes_and_normalises() -> None:
    x = torch.full((2, 1, 32, 32), 255, dtype=torch.uint8)
    out = Preprocess(28, Normalization((0.5,), (0.5,)))(x)
    assert out.shape == (2, 1, 28, 28) and torch.allclose(out, torch.ones_like(out))


def test_normalization_from_images_matches_pixel_statistics() -> None:
    x = images(16)
    norm = Normalization.from_images(x)
    assert norm.mean[0] == pytest.approx(float(x.float().mean() / 255), abs=1e-5)


# --- natural (colour) images ------------------------------------------------------------------

RGB_UNIT = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def photos(n: int = 4, size: int = 96) -> torch.Tensor:
    """Smooth colour gradients plus a little noise: something a blur visibly changes."""
    ramp = torch.linspace(0, 1, size)
    across, down = ramp.view(1, -1).expand(size, -1), ramp.view(-1, 1).expand(-1, size)
    base = torch.stack([across, down, 1 - across])
    noise = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    return ((0.7 * base + 0.3 * noise).clamp(0, 1) * 255).to(torch.uint8)


def test_natural_image_views_have_shape_dtype_and_range() -> None:
    out = Augment(3, 64, RGB_UNIT, AugmentRecipe.for_images(3, 96))(photos(), torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 64, 64) and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_natural_image_two_views_differ_and_repeat_under_a_seed() -> None:
    augment, x = Augment(3, 96, RGB_UNIT), photos()
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(4))
    again = augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, again) and (a - b).abs().amax(dim=(1, 2, 3)).min() > 0.05


def test_blur_only_for_colour_images_over_64_px() -> None:
    assert AugmentRecipe.for_images(3, 96).blur_p == 0.5
    assert AugmentRecipe.for_images(3, 32).blur_p == 0.0 and AugmentRecipe.for_images(1, 96).blur_p == 0.0


def test_blur_smooths_and_keeps_the_mean() -> None:
    blur = AugmentRecipe((1.0, 1.0), (1.0, 1.0), 0.0, 0.0, None, 0.0, 0.0, blur_p=1.0, blur_sigma=(2.0, 2.0))
    x = photos()
    plain = Augment(3, 96, RGB_UNIT, IDENTITY)(x)
    blurred = Augment(3, 96, RGB_UNIT, blur)(x, torch.Generator().manual_seed(0))
    roughness = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert roughness(blurred) < 0.6 * roughness(plain)
    assert torch.allclose(blurred.mean(), plain.mean(), atol=0.01)


def test_blur_draws_per_image() -> None:
    recipe = AugmentRecipe((1.0, 1.0), (1.0, 1.0), 0.0, 0.0, None, 0.0, 0.0, blur_p=0.5)
    x = photos(1).repeat(8, 1, 1, 1)
    out = Augment(3, 96, RGB_UNIT, recipe)(x, torch.Generator().manual_seed(0))
    assert len({round(float(o.std()), 5) for o in out}) > 2  # some untouched, some blurred by various sigmas
