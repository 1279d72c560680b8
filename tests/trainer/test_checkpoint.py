from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pal.core.edges import EdgeRecord
from tests.trainer.trainer_fakes import blob_images
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.config import TrainConfig
from trainer.engine import Engine
from trainer.items import ItemTable


def engine(**overrides: object) -> Engine:
    items = ItemTable.empty()
    items.extend(np.arange(100, 132), blob_images(n=32))
    cfg = TrainConfig(project=1, batch_size=4, proj_dim=8, device="cpu", warmup_steps=1, **overrides)  # type: ignore[arg-type]
    return Engine(cfg, items)


def trained_engine() -> Engine:
    e = engine()
    e.consume([EdgeRecord(1, 100, 101, 1), EdgeRecord(2, 100, 102, -1)], "0:2")
    e.train_step()
    return e


def test_checkpoint_round_trip_restores_model_optimizer_step_cursor(tmp_path: Path) -> None:
    before = trained_engine()
    save_checkpoint(tmp_path / "c.pt", before.checkpoint())
    loaded = load_checkpoint(tmp_path / "c.pt")
    after = Engine(before.config, before.items, checkpoint=loaded)
    assert (after.step, after.cursor, after.store.consumed) == (1, "0:2", 2)
    for name, tensor in before.model.state_dict().items():
        assert torch.equal(tensor, after.model.state_dict()[name]), name
    assert after.optimizer.state_dict()["state"].keys() == before.optimizer.state_dict()["state"].keys()
    assert after.scheduler.last_epoch == before.scheduler.last_epoch


def test_checkpoint_restored_engine_takes_the_same_next_step(tmp_path: Path) -> None:
    before = trained_engine()
    save_checkpoint(tmp_path / "c.pt", before.checkpoint())
    after = Engine(before.config, before.items, checkpoint=load_checkpoint(tmp_path / "c.pt"))
    before.reseed()
    after.reseed()
    assert torch.equal(before.train_step().total, after.train_step().total)


def test_checkpoint_is_a_plain_dict_loadable_weights_only(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", trained_engine().checkpoint())
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    assert isinstance(raw, dict) and raw["step"] == 1 and raw["edges_consumed"] == 2


def test_checkpoint_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "c.pt"
    save_checkpoint(target, engine().checkpoint())
    old = target.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, trained_engine().checkpoint())
    assert target.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_checkpoint_missing_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cursor"):
        save_checkpoint(tmp_path / "c.pt", {k: v for k, v in engine().checkpoint().items() if k != "cursor"})


def test_checkpoint_absent_file_loads_as_none(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path / "nothing.pt") is None


def test_checkpoint_unknown_format_is_refused(tmp_path: Path) -> None:
    ckpt = engine().checkpoint()
    ckpt["format"] = 99
    save_checkpoint(tmp_path / "c.pt", ckpt)
    with pytest.raises(ValueError, match="format 99"):
        load_checkpoint(tmp_path / "c.pt")


def test_checkpoint_with_inconsistent_edge_count_is_refused(tmp_path: Path) -> None:
    ckpt = trained_engine().checkpoint()
    ckpt["edges_consumed"] = 5
    with pytest.raises(ValueError, match="inconsistent"):
        Engine(engine().config, engine().items, checkpoint=ckpt)
