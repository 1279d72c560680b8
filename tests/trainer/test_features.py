"""Frozen-feature training: the feature cache, the loop on a pretrained backbone's features and on
the server's embedding, fine-tuning the last blocks, and the progress lines."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from torch import Tensor

from tests.trainer.trainer_fakes import FakeServer, answer, colour_images, fake_config
from trainer import ddp
from trainer.checkpoint import load_checkpoint
from trainer.config import TrainConfig
from trainer.features import BackboneFeatures, item_features
from trainer.items import ItemTable
from trainer.loop import run
from trainer.modes import FeatureEngine, FinetuneEngine, build_engine
from trainer.pretrained import BackboneSetupError, InputSpec

CPU = ddp.DistContext(0, 1, 0, torch.device("cpu"))


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "mobilenet.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    return path


def config(tmp_path: Path, **overrides: Any) -> TrainConfig:
    return fake_config(tmp_path, **{"head_dim": 32, "weights_cache": str(tmp_path / "weights"),
                                    "features_cache": str(tmp_path / "features"), **overrides})


class CountingSource:
    computes_new_items = True

    def __init__(self, id: str = "counting") -> None:
        self.id, self.computed = id, 0

    def compute(self, ids: np.ndarray, images: Tensor) -> Tensor:
        self.computed += len(ids)
        return torch.from_numpy(ids.astype(np.float32)).view(-1, 1).repeat(1, 3)


def _images(n: int) -> Tensor:
    return torch.zeros(n, 3, 4, 4, dtype=torch.uint8)


def test_features_are_computed_once_and_read_back(tmp_path: Path) -> None:
    source, ids = CountingSource(), np.array([5, 7, 9])
    first = item_features(source, ids, _images(3), tmp_path)
    again = item_features(source, ids, _images(3), tmp_path)
    assert source.computed == 3 and torch.equal(first, again) and first[:, 0].tolist() == [5, 7, 9]


def test_only_new_items_are_computed(tmp_path: Path) -> None:
    source = CountingSource()
    item_features(source, np.array([5, 7]), _images(2), tmp_path)
    out = item_features(source, np.array([5, 7, 11]), _images(3), tmp_path)
    assert source.computed == 3 and out[:, 0].tolist() == [5, 7, 11]
    no_disk = CountingSource()
    item_features(no_disk, np.array([1, 2, 3]), _images(3), None, previous=(np.array([1, 2]), torch.ones(2, 3)))
    assert no_disk.computed == 1


def test_another_model_recomputes(tmp_path: Path) -> None:
    item_features(CountingSource("model a"), np.array([1, 2]), _images(2), tmp_path)
    other = CountingSource("model b")
    item_features(other, np.array([1, 2]), _images(2), tmp_path)
    assert other.computed == 2


def test_backbone_features_log_progress(mobilenet_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = torchvision.models.mobilenet_v3_small()
    net.classifier = torch.nn.Identity()  # type: ignore[assignment]
    source = BackboneFeatures(net, 576, InputSpec(32), "test", (3, 16, 16), torch.device("cpu"), batch_size=2)
    with caplog.at_level(logging.INFO, logger="trainer"):
        out = source.compute(np.arange(3), torch.from_numpy(colour_images(3)).permute(0, 3, 1, 2))
    assert out.shape == (3, 576) and "features: 2 / 3 items" in caplog.text and "features: 3 / 3 items" in caplog.text


def test_frozen_features_train_and_publish_through_the_loop(
    tmp_path: Path, mobilenet_file: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeServer(images=colour_images(12), edges=[answer(1, 100, 103, 1), answer(2, 101, 104, 1)])
    settings = config(tmp_path, backbone="mobilenet_v3_small", weights=str(mobilenet_file), max_steps=2)
    with caplog.at_level(logging.INFO, logger="trainer"):
        result = run(settings, server.client())
    upload = server.uploads[0]
    assert result.step == 2 and upload["vectors"].shape == (12, 32) and np.isfinite(upload["vectors"]).all()
    assert "features: 12 / 12 items" in caplog.text and "next publish in" in caplog.text
    assert str(load_checkpoint(settings.checkpoint)["features"]).startswith("torchvision mobilenet_v3_small/")

    def no_compute(*args: Any) -> Tensor:
        raise AssertionError("features recomputed")

    monkeypatch.setattr(BackboneFeatures, "compute", no_compute)
    settings = config(tmp_path, backbone="mobilenet_v3_small", weights=str(mobilenet_file), max_steps=4)
    resumed = run(settings, server.client())
    assert resumed.step == 4 and [u["meta"]["step"] for u in server.uploads] == [2, 4]


def test_frozen_checkpoint_is_refused_for_other_features(tmp_path: Path, mobilenet_file: Path) -> None:
    server = FakeServer(images=colour_images(6), current=(np.arange(100, 106), np.ones((6, 4), np.float32)))
    run(config(tmp_path, backbone="features", max_steps=1), server.client())
    with pytest.raises(ValueError, match="takes 4 features, these have 32"):  # the trainer's own output
        run(config(tmp_path, features_cache="none", backbone="features", max_steps=2), server.client())
    other = config(tmp_path, backbone="mobilenet_v3_small", weights=str(mobilenet_file), max_steps=2)
    with pytest.raises(ValueError, match="trained on 'server"):
        run(other, server.client())


def test_server_features_train_and_publish(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, 8)).astype(np.float32)
    server = FakeServer(images=colour_images(12), current=(np.arange(111, 99, -1), vectors[::-1].copy()))
    server.edges = [answer(1, 100, 103, 1)]
    run(config(tmp_path, backbone="features", max_steps=2), server.client())
    assert server.uploads[0]["vectors"].shape == (12, 32)
    # The features were aligned to the items by id, and a restart reads them from the cache, not from
    # the server's current version (by now the trainer's own output).
    engine = build_engine(config(tmp_path, backbone="features"), _table(server), CPU, None, server.client())
    assert isinstance(engine, FeatureEngine) and torch.allclose(engine.features, torch.from_numpy(vectors))


def test_server_features_need_a_published_embedding(tmp_path: Path) -> None:
    server = FakeServer(images=colour_images(4))
    with pytest.raises(BackboneSetupError, match="has none yet"):
        run(config(tmp_path, backbone="features", max_steps=1), server.client())


def _table(server: FakeServer) -> ItemTable:
    table = ItemTable.empty()
    table.extend(server.ids, server.images)
    return table


def test_finetune_trains_only_the_last_blocks(tmp_path: Path, mobilenet_file: Path) -> None:
    server = FakeServer(images=colour_images(6))
    settings = config(
        tmp_path, backbone="mobilenet_v3_small", weights=str(mobilenet_file), finetune_blocks=1, batch_size=2
    )
    engine = build_engine(settings, _table(server), CPU)
    assert isinstance(engine, FinetuneEngine) and engine.size == 224
    blocks = list(engine.model.backbone.net.features.children())
    first, last = [p.clone() for p in blocks[0].parameters()], [p.clone() for p in blocks[-1].parameters()]
    engine.train_step()
    assert all(torch.equal(a, b) for a, b in zip(first, blocks[0].parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(last, blocks[-1].parameters(), strict=True))
    assert not blocks[0].training and engine.embed_all().shape == (6, 1024)
