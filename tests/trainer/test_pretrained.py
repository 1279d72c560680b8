"""Pretrained backbones: weights by name or file, the cache, checksums, the offline error, auto."""

from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.error
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torchvision

from tests.trainer.trainer_fakes import FakeServer, colour_images
from trainer import loop, pretrained
from trainer.config import TrainConfig
from trainer.modes import plan_backbone
from trainer.pretrained import (
    BackboneSetupError,
    ChecksumMismatch,
    WeightsSpec,
    WeightsUnavailable,
    build_extra,
    build_torchvision,
    enum_for_file,
    fetch_weights,
    resolve_weights,
)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "my-resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def _no_download(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
    raise AssertionError(f"the network was touched: {url}")


def _offline(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def _spec_for(content: Path, name: str = "tiny") -> WeightsSpec:
    """A weights entry whose URL carries the first hex digits of ``content``'s SHA-256, as torchvision's do."""
    digest = hashlib.sha256(content.read_bytes()).hexdigest()[:8]
    real = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    url = f"https://example.invalid/models/{name}-{digest}.pth"
    entry = SimpleNamespace(name="TEST_V1", url=url, meta=real.meta, transforms=real.transforms)
    return WeightsSpec("resnet18", entry)  # type: ignore[arg-type]


def test_weights_by_enum_name_carry_url_file_and_input() -> None:
    spec = resolve_weights("resnet50", "IMAGENET1K_V2")
    assert spec.file_name == "resnet50-11ad3fa6.pth" and spec.input_spec().size == 224
    assert resolve_weights("resnet18", None).enum is torchvision.models.ResNet18_Weights.IMAGENET1K_V1


def test_unknown_weights_name_lists_the_choices() -> None:
    with pytest.raises(BackboneSetupError, match="IMAGENET1K_V1"):
        resolve_weights("resnet18", "IMAGENET9K")


def test_file_name_identifies_the_model() -> None:
    model, entry = enum_for_file("resnet50-11ad3fa6.pth")  # type: ignore[misc]
    assert model == "resnet50" and entry.name == "IMAGENET1K_V2"
    assert resolve_weights(None, "/somewhere/resnet50-11ad3fa6.pth").model == "resnet50"


def test_pretrained_backbone_loads_a_local_weights_file(resnet18_file: Path, tmp_path: Path) -> None:
    spec = resolve_weights("resnet18", str(resnet18_file))
    net, dim = build_torchvision(spec, tmp_path / "cache", download=False)
    saved = torch.load(resnet18_file, weights_only=True)
    assert dim == 512 and torch.equal(net.state_dict()["layer4.1.conv2.weight"], saved["layer4.1.conv2.weight"])
    assert net.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 512)
    assert not (tmp_path / "cache").exists()  # a given file is used where it is


def test_weights_of_another_model_are_refused(resnet18_file: Path, tmp_path: Path) -> None:
    with pytest.raises(BackboneSetupError, match="does not hold resnet34 weights"):
        build_torchvision(resolve_weights("resnet34", str(resnet18_file)), tmp_path)


def test_offline_error_names_the_file_the_folder_and_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)
    cache = tmp_path / "weights"
    with pytest.raises(WeightsUnavailable) as info:
        fetch_weights(resolve_weights("resnet18", "IMAGENET1K_V1"), cache)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and f"{cache.resolve()}/" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message and "\n" not in message
    assert list(cache.iterdir()) == []  # no partial file left behind


def test_cli_reports_missing_weights_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeServer(images=colour_images(4))
    monkeypatch.setattr(loop, "ApiClient", lambda *args, **kwargs: fake.client())
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)
    argv = ["--project", "1", "--device", "cpu", "--backbone", "resnet18", "--weights", "IMAGENET1K_V1"]
    with caplog.at_level(logging.ERROR, logger="trainer"):
        code = loop.main([*argv, "--weights-cache", str(tmp_path / "w"), "--checkpoint", str(tmp_path / "c.pt")])
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == 2 and len(errors) == 1 and "resnet18-f37072fd.pth" in errors[0].getMessage()
    assert errors[0].exc_info is None and "Traceback" not in capsys.readouterr().err


def test_download_once_into_the_cache(resnet18_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def copy(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
        calls.append(url)
        shutil.copyfile(resnet18_file, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", copy)
    spec, cache = _spec_for(resnet18_file), tmp_path / "weights"
    first = fetch_weights(spec, cache)
    second = fetch_weights(spec, cache)
    assert first == second == cache / spec.file_name and len(calls) == 1
    assert [p.name for p in cache.iterdir()] == [spec.file_name]


def test_cache_hit_touches_no_network(resnet18_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    spec = _spec_for(resnet18_file, "resnet18")
    (tmp_path / "weights").mkdir()
    shutil.copyfile(resnet18_file, tmp_path / "weights" / spec.file_name)
    net, dim = build_torchvision(spec, tmp_path / "weights")
    assert dim == 512


def test_checksum_mismatch_is_refused(resnet18_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, cache = _spec_for(resnet18_file), tmp_path / "weights"
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, *a, **k: Path(dst).write_bytes(b"junk"))
    with pytest.raises(ChecksumMismatch, match="SHA-256"):
        fetch_weights(spec, cache)
    assert list(cache.iterdir()) == []  # neither cached nor left as a partial file
    (cache / spec.file_name).write_bytes(b"a corrupt copy put there by hand")
    with pytest.raises(ChecksumMismatch):
        fetch_weights(spec, cache, download=False)


def test_optional_extras_say_what_to_install() -> None:
    for name, package in (("timm:resnet50", "timm"), ("open_clip:ViT-B-32/openai", "open_clip_torch")):
        if pretrained.importlib.util.find_spec(name.split(":")[0]) is not None:
            continue
        with pytest.raises(BackboneSetupError, match=f"pip install {package}"):
            build_extra(name)


# --- which mode a configuration trains ------------------------------------------------------------


def _config(tmp_path: Path, **overrides: Any) -> TrainConfig:
    return TrainConfig(project=1, weights_cache=str(tmp_path / "weights"), **overrides)


def test_auto_keeps_small_cnn_for_small_grayscale(tmp_path: Path) -> None:
    assert plan_backbone(_config(tmp_path), 1, 28).kind == "image"


def test_auto_colour_without_weights_falls_back_with_a_hint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="trainer"):
        assert plan_backbone(_config(tmp_path), 3, 32).kind == "image"
    assert "--weights IMAGENET1K_V1" in caplog.text and "resnet18-f37072fd.pth" in caplog.text


def test_auto_colour_uses_cached_weights(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "resnet18-f37072fd.pth").write_bytes(b"x")  # looked up, not read, by the plan
    plan = plan_backbone(_config(tmp_path), 3, 32)
    assert plan.kind == "frozen" and plan.weights is not None and plan.weights.label == "resnet18/IMAGENET1K_V1"


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({"backbone": "resnet18"}, "image"),  # the registered random-init backbone, as before
        ({"backbone": "resnet18", "weights": "IMAGENET1K_V1"}, "frozen"),
        ({"backbone": "resnet50"}, "frozen"),  # a torchvision name: its DEFAULT weights
        ({"backbone": "resnet50", "finetune_blocks": 1}, "finetune"),
        ({"backbone": "features"}, "server"),
        ({"backbone": "small_cnn"}, "image"),
    ],
)
def test_plan_by_backbone_and_weights(tmp_path: Path, overrides: dict[str, Any], kind: str) -> None:
    assert plan_backbone(_config(tmp_path, **overrides), 3, 64).kind == kind
