"""Pretrained backbones by name: torchvision models with their weight enums, a local weights
file, and (when installed) timm or open_clip models.

Weights are looked up in a cache folder (``--weights-cache``; default ``$PAL_DATA_DIR/weights``,
``var/weights`` when the variable is unset), downloaded once into it with
``torch.hub.download_url_to_file`` on a miss, and checked against the SHA-256 prefix that
torchvision's file names carry (``resnet50-11ad3fa6.pth``), as ``torch.hub``'s ``check_hash``
does. A cache hit touches no network. Without network and without the file, the trainer stops
with one :class:`WeightsUnavailable` line that names the file, the folder to put it in and the
URL it comes from.

The module built here maps a normalised (B, 3, S, S) batch to (B, feature_dim) pooled features:
the network's last ``nn.Linear`` (its classifier) is replaced by ``nn.Identity``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import urllib.error
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum, get_model, get_model_weights

HASH_REGEX = re.compile(r"-([a-f0-9]+)\.")  # as torch.hub: the hex digits after the last '-'
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What ``--backbone auto`` uses for colour images when these weights are on the machine, best first.
AUTO_PRETRAINED = (("resnet50", "IMAGENET1K_V2"), ("resnet18", "IMAGENET1K_V1"))
EXTRAS = {"timm": "timm", "open_clip": "open_clip_torch"}  # prefix -> the package to install


class BackboneSetupError(ValueError):
    """A problem with the backbone's setup that the CLI reports as one line, without a traceback."""


class WeightsUnavailable(BackboneSetupError):
    pass


class ChecksumMismatch(BackboneSetupError):
    pass


def default_data_dir() -> Path:
    """PAL's data directory, as the server names it: ``$PAL_DATA_DIR``, else ``var``."""
    return Path(os.environ.get("PAL_DATA_DIR") or "var")


def default_weights_cache() -> Path:
    return default_data_dir() / "weights"


@lru_cache
def torchvision_models() -> frozenset[str]:
    return frozenset(torchvision.models.list_models(module=torchvision.models))


def is_pretrained_name(name: str) -> bool:
    """A torchvision classification model, or ``timm:...`` / ``open_clip:...``."""
    return name in torchvision_models() or name.split(":", 1)[0] in EXTRAS


@dataclass(frozen=True)
class InputSpec:
    """What the network expects: square size and the per-channel normalisation of [0, 1] RGB."""

    size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


@dataclass(frozen=True)
class WeightsSpec:
    model: str  # torchvision model name
    enum: WeightsEnum | None  # the torchvision weights entry (url, meta, transforms), when known
    file: Path | None = None  # a local file given with --weights

    @property
    def file_name(self) -> str:
        if self.file is not None:
            return self.file.name
        assert self.enum is not None
        return os.path.basename(urlparse(self.enum.url).path)

    @property
    def label(self) -> str:
        return f"{self.model}/{self.enum.name if self.enum is not None else self.file_name}"

    def input_spec(self) -> InputSpec:
        if self.enum is None:
            return InputSpec(224)
        t = self.enum.transforms()
        return InputSpec(int(t.crop_size[0]), tuple(t.mean), tuple(t.std))


def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or weights.endswith((".pth", ".pt", ".bin")) or Path(weights).is_file()


def enum_for_file(file_name: str) -> tuple[str, WeightsEnum] | None:
    """The torchvision (model, weights) whose download has this file name, if any."""
    for model in sorted(torchvision_models()):
        for entry in get_model_weights(model):
            if os.path.basename(urlparse(entry.url).path) == file_name:
                return model, entry
    return None


def resolve_weights(model: str | None, weights: str | None) -> WeightsSpec:
    """``weights``: an enum name of ``model`` (``IMAGENET1K_V2``; default ``DEFAULT``) or a file.

    With a file and no model, the model is the one whose torchvision download has that name."""
    if weights is not None and _looks_like_path(weights):
        path = Path(weights).expanduser()
        known = enum_for_file(path.name)
        if model is None:
            model = known[0] if known else AUTO_PRETRAINED[-1][0]
        if model not in torchvision_models():
            raise BackboneSetupError(f"unknown torchvision model {model!r}")
        entry = known[1] if known and known[0] == model else get_model_weights(model).DEFAULT
        return WeightsSpec(model, entry, path)
    if model is None or model not in torchvision_models():
        raise BackboneSetupError(f"unknown torchvision model {model!r}")
    choices = get_model_weights(model)
    try:
        return WeightsSpec(model, choices[weights or "DEFAULT"])
    except KeyError:
        names = list(choices.__members__)
        raise BackboneSetupError(f"{model} has no weights {weights!r}; choose one of {names}") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, file_name: str) -> None:
    """Refuse a file whose SHA-256 does not start with the hex digits in ``file_name``."""
    match = HASH_REGEX.search(file_name)
    if match is None:
        return
    actual = sha256_of(path)
    if not actual.startswith(match.group(1)):
        raise ChecksumMismatch(
            f"{path}: SHA-256 {actual[:16]}... does not start with {match.group(1)} (a corrupt or wrong file; "
            f"delete it and fetch {file_name} again)"
        )


def _unavailable(spec: WeightsSpec, cache: Path, why: str) -> WeightsUnavailable:
    assert spec.enum is not None
    return WeightsUnavailable(
        f"weights {spec.label} unavailable ({why}): put {spec.file_name} in {cache.resolve()}/ "
        f"(it comes from {spec.enum.url}) or pass --weights /path/to/{spec.file_name}"
    )


def local_weights(spec: WeightsSpec, cache: Path) -> Path | None:
    """The file on this machine (the given one, else the cache's), without verifying it."""
    if spec.file is not None:
        return spec.file if spec.file.is_file() else None
    target = cache / spec.file_name
    return target if target.is_file() else None


def fetch_weights(spec: WeightsSpec, cache: Path, *, download: bool = True) -> Path:
    """The verified weights file: the given one, the cached one, or downloaded once into ``cache``."""
    if spec.file is not None:
        if not spec.file.is_file():
            raise WeightsUnavailable(f"weights file {spec.file} does not exist")
        verify(spec.file, spec.file.name)
        return spec.file
    target = cache / spec.file_name
    if target.is_file():
        verify(target, target.name)
        return target
    if not download:
        raise _unavailable(spec, cache, "not in the cache")
    assert spec.enum is not None
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / f".{spec.file_name}.{os.getpid()}.part"
    try:
        torch.hub.download_url_to_file(spec.enum.url, str(part), progress=False)
        verify(part, spec.file_name)
    except (OSError, urllib.error.URLError) as exc:  # offline, refused, truncated
        part.unlink(missing_ok=True)
        raise _unavailable(spec, cache, f"download failed: {exc}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)
    return target


def _state_dict(path: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # a training checkpoint wrapping the weights
        if isinstance(state.get(key), dict):
            state = state[key]
    return state


def _builder_kwargs(spec: WeightsSpec) -> dict[str, Any]:
    """What torchvision's builder would set from the weights' meta, so that they load strictly."""
    if spec.enum is None:
        return {}
    meta = spec.enum.meta
    kwargs: dict[str, Any] = {"num_classes": len(meta["categories"])} if meta.get("categories") else {}
    if spec.model.startswith("vit_") and "min_size" in meta:
        kwargs["image_size"] = meta["min_size"][0]
    return kwargs


def strip_classifier(net: nn.Module) -> int:
    """Replace the last ``nn.Linear`` by ``nn.Identity``; returns its input width."""
    last = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError(f"{type(net).__name__} has no linear classifier to remove")
    parent_name, _, child = last[-1].rpartition(".")
    parent = net.get_submodule(parent_name)
    linear = getattr(parent, child)
    setattr(parent, child, nn.Identity())
    return int(linear.in_features)


def build_torchvision(spec: WeightsSpec, cache: Path, *, download: bool = True) -> tuple[nn.Module, int]:
    """The pretrained network without its classifier: (module, feature_dim)."""
    path = fetch_weights(spec, cache, download=download)
    net = get_model(spec.model, weights=None, **_builder_kwargs(spec))
    try:
        net.load_state_dict(_state_dict(path))
    except RuntimeError as exc:
        raise BackboneSetupError(f"{path} does not hold {spec.model} weights: {str(exc).splitlines()[0]}") from exc
    return net, strip_classifier(net)


def require_extra(prefix: str) -> Any:
    """The optional package behind ``timm:`` / ``open_clip:`` backbones, or a clear error."""
    module = prefix
    if importlib.util.find_spec(module) is None:
        raise BackboneSetupError(
            f"--backbone {prefix}:... needs the optional package {EXTRAS[prefix]!r}: pip install {EXTRAS[prefix]}"
        )
    return importlib.import_module(module)


def build_extra(name: str) -> tuple[nn.Module, int, InputSpec]:
    """``timm:<model>`` or ``open_clip:<arch>/<pretrained tag>``; these packages keep their own caches."""
    prefix, _, rest = name.partition(":")
    lib = require_extra(prefix)
    if prefix == "timm":
        net = lib.create_model(rest, pretrained=True, num_classes=0)
        cfg = lib.data.resolve_data_config({}, model=net)
        return net, int(net.num_features), InputSpec(int(cfg["input_size"][-1]), tuple(cfg["mean"]), tuple(cfg["std"]))
    arch, _, tag = rest.partition("/")
    model = lib.create_model(arch, pretrained=tag or None)
    visual = model.visual
    size = visual.image_size
    mean = getattr(visual, "image_mean", None) or lib.OPENAI_DATASET_MEAN
    std = getattr(visual, "image_std", None) or lib.OPENAI_DATASET_STD
    return visual, int(visual.output_dim), InputSpec(int(size[0] if isinstance(size, tuple) else size), mean, std)


def auto_weights(cache: Path, weights: str | None) -> WeightsSpec | None:
    """``--backbone auto``'s pretrained choice: the given weights, else the first of
    :data:`AUTO_PRETRAINED` whose file is in the cache; None when nothing is on the machine."""
    if weights is not None:
        return resolve_weights(None if _looks_like_path(weights) else AUTO_PRETRAINED[-1][0], weights)
    for model, name in AUTO_PRETRAINED:
        spec = resolve_weights(model, name)
        if local_weights(spec, cache) is not None:
            return spec
    return None


def auto_fallback_hint(cache: Path) -> str:
    model, name = AUTO_PRETRAINED[-1]
    spec = resolve_weights(model, name)
    return (
        f"no pretrained weights in {cache}/: these images train {model} from random init, which learns slowly "
        f"on a CPU; run once with network access with --backbone {model} --weights {name}, or put "
        f"{spec.file_name} (from {spec.enum.url if spec.enum else '?'}) in {cache}/"
    )
