"""The loop against an in-process fake of the server's API: publishing, stopping, resuming."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.trainer.trainer_fakes import FakeServer, answer, blob_images, fake_config, retract
from trainer import ddp
from trainer.checkpoint import load_checkpoint
from trainer.config import TrainConfig
from trainer.engine import Engine
from trainer.loop import cycle_steps, decide, load_engine, load_items, poll, publish, run, train_steps


def config(tmp_path: Path, **overrides: Any) -> TrainConfig:
    return fake_config(tmp_path, **{"embed_batch_size": 16, **overrides})


def test_run_max_steps_publishes_every_cycle_and_stops(tmp_path: Path, fake_server: FakeServer) -> None:
    result = run(config(tmp_path, max_steps=4), fake_server.client())
    assert [u["meta"]["step"] for u in fake_server.uploads] == [2, 4] and result.step == 4


def test_run_publishes_backbone_features_of_every_item(tmp_path: Path, fake_server: FakeServer) -> None:
    run(config(tmp_path, max_steps=2), fake_server.client())
    upload = fake_server.uploads[0]
    assert upload["item_ids"].tolist() == fake_server.ids.tolist()
    assert upload["vectors"].shape == (48, 128) and np.isfinite(upload["vectors"]).all()


def test_run_publishes_loss_terms_and_graph_metrics(tmp_path: Path, fake_server: FakeServer) -> None:
    fake_server.edges = [answer(1, 100, 104, 1)]
    run(config(tmp_path, max_steps=2), fake_server.client())
    metrics = fake_server.uploads[0]["meta"]["metrics"]
    assert {"loss", "invariance", "variance", "covariance", "images_per_s", "components"} <= set(metrics)
    assert metrics["components"] == 1.0


def test_run_until_idle_stops_after_a_quiet_poll(tmp_path: Path, fake_server: FakeServer) -> None:
    fake_server.edges = [answer(1, 100, 104, 1)]
    result = run(config(tmp_path, until_idle=True), fake_server.client())
    assert len(fake_server.uploads) == 1 and result.step == 2 and result.edges_consumed == 1


def test_run_trains_again_when_edges_arrive(tmp_path: Path, fake_server: FakeServer) -> None:
    fake_server.later_edges = {1: [answer(1, 100, 104, 1)]}
    run(config(tmp_path, until_idle=True), fake_server.client())
    assert [u["meta"]["edges_seen"] for u in fake_server.uploads] == [0, 1]


def test_run_drains_every_feed_page(tmp_path: Path, fake_server: FakeServer) -> None:
    fake_server.edges = [answer(i, 100 + i, 104 + i, 1) for i in range(1, 8)]
    result = run(config(tmp_path, max_steps=2, edge_page=3), fake_server.client())
    assert result.edges_consumed == 7 and result.cursor == "0:7"
    assert fake_server.uploads[0]["meta"]["cursor"] == "0:7"


def test_run_applies_retractions(tmp_path: Path, fake_server: FakeServer) -> None:
    fake_server.edges = [answer(1, 100, 104, 1), answer(2, 101, 105, 1), retract(3, 1)]
    run(config(tmp_path, max_steps=2), fake_server.client())
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt is not None and ckpt["edge_store"]["edge_ids"].tolist() == [2]
    assert fake_server.uploads[0]["meta"]["metrics"]["edges_positive"] == 1.0


def test_run_fetches_items_imported_later(tmp_path: Path) -> None:
    images = blob_images(n=40)
    server = FakeServer(images=images[:32], ids=np.arange(100, 132))
    client = server.client()
    run(config(tmp_path, max_steps=2), client)
    server.images, server.ids = images, np.arange(100, 140)
    run(config(tmp_path, max_steps=4), client)
    assert len(server.uploads[-1]["item_ids"]) == 40


def test_run_checkpoint_holds_step_cursor_and_consumed_count(tmp_path: Path, fake_server: FakeServer) -> None:
    fake_server.edges = [answer(1, 100, 104, 1), answer(2, 101, 105, -1)]
    run(config(tmp_path, max_steps=2), fake_server.client())
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt is not None
    assert (ckpt["step"], ckpt["cursor"], ckpt["edges_consumed"]) == (2, "0:2", 2)
    assert "token" not in ckpt["config"]


def _scripted_server() -> FakeServer:
    server = FakeServer(images=blob_images())
    server.edges = [answer(1, 100, 104, 1), answer(2, 101, 105, 1)]
    server.later_edges = {1: [answer(3, 102, 106, 1), retract(4, 2), answer(5, 103, 107, -1)]}
    return server


def test_run_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    straight = _scripted_server()
    run(config(tmp_path / "a", max_steps=4), straight.client())

    interrupted = _scripted_server()
    run(config(tmp_path / "b", max_steps=2), interrupted.client())
    run(config(tmp_path / "b", max_steps=4), interrupted.client())

    a, b = load_checkpoint(tmp_path / "a" / "ckpt.pt"), load_checkpoint(tmp_path / "b" / "ckpt.pt")
    assert a is not None and b is not None
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert (a["step"], a["cursor"], a["edges_consumed"]) == (b["step"], b["cursor"], b["edges_consumed"])
    assert np.array_equal(straight.uploads[-1]["vectors"], interrupted.uploads[-1]["vectors"])


def test_run_resume_never_recounts_or_skips_an_edge(tmp_path: Path) -> None:
    server = _scripted_server()
    run(config(tmp_path, max_steps=2), server.client())
    run(config(tmp_path, max_steps=4), server.client())
    assert [u["meta"]["edges_seen"] for u in server.uploads] == [2, 5]
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt is not None and ckpt["edge_store"]["seen"].tolist() == [1, 2, 3, 4, 5]


def test_run_resume_at_max_steps_does_nothing(tmp_path: Path, fake_server: FakeServer) -> None:
    run(config(tmp_path, max_steps=2), fake_server.client())
    result = run(config(tmp_path, max_steps=2), fake_server.client())
    assert result.step == 2 and len(fake_server.uploads) == 1


def test_run_checkpoint_of_another_project_is_refused(tmp_path: Path, fake_server: FakeServer) -> None:
    run(config(tmp_path, max_steps=2), fake_server.client())
    fake_server.project = 2
    with pytest.raises(ValueError, match="project 1, not 2"):
        run(config(tmp_path, project=2, max_steps=4), fake_server.client())


@pytest.mark.parametrize("loss", ["simclr", "barlow"])
def test_run_other_losses_train_and_publish(tmp_path: Path, fake_server: FakeServer, loss: str) -> None:
    fake_server.edges = [answer(1, 100, 104, 1), answer(2, 101, 105, -1)]
    run(config(tmp_path, loss=loss, max_steps=2), fake_server.client())
    assert np.isfinite(fake_server.uploads[0]["meta"]["metrics"]["loss"])


def test_run_logs_throughput(tmp_path: Path, fake_server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trainer"):
        run(config(tmp_path, max_steps=2), fake_server.client())
    assert "steps/s" in caplog.text and "img/s" in caplog.text and "published version 1" in caplog.text


# --- the phases, one at a time ------------------------------------------------------------------

CPU = ddp.DistContext(0, 1, 0, torch.device("cpu"))


def _engine(tmp_path: Path, server: FakeServer, **overrides: Any) -> Engine:
    settings = config(tmp_path, **overrides)
    return load_engine(settings, load_items(server.client(), settings, CPU), CPU)


@pytest.mark.parametrize(
    ("cycles", "quiet_polls", "until_idle", "max_steps", "action"),
    [
        (0, 3, True, None, "train"),  # nothing published yet: never idle
        (1, 0, True, None, "train"),  # new edges came
        (1, 1, True, None, "stop"),
        (1, 1, False, None, "wait"),
        (1, 1, False, 10, "train"),  # a step budget keeps it training through quiet spells
        (1, 1, True, 10, "stop"),
    ],
)
def test_decide_stops_waits_or_trains(
    tmp_path: Path, cycles: int, quiet_polls: int, until_idle: bool, max_steps: int | None, action: str
) -> None:
    assert decide(config(tmp_path, until_idle=until_idle, max_steps=max_steps), cycles, quiet_polls) == action


def test_decide_idle_after_idle_cycles_quiet_polls(tmp_path: Path) -> None:
    settings = config(tmp_path, until_idle=True, idle_cycles=3)
    assert [decide(settings, 1, quiet) for quiet in (1, 2, 3)] == ["train", "train", "stop"]


def test_cycle_steps_cuts_publish_every_to_the_budget(tmp_path: Path) -> None:
    assert cycle_steps(config(tmp_path, publish_every=5), 7) == 5
    assert cycle_steps(config(tmp_path, publish_every=5, max_steps=9), 7) == 2


def test_poll_folds_new_items_and_rows_and_counts_only_new_rows(tmp_path: Path) -> None:
    images = blob_images(n=40)
    server = FakeServer(images=images[:32], ids=np.arange(100, 132))
    engine = _engine(tmp_path, server)
    server.images, server.ids = images, np.arange(100, 140)
    server.edges = [answer(1, 100, 136, 1), answer(2, 101, 105, -1)]
    assert poll(server.client(), engine) == 2
    assert len(engine.items) == 40 and engine.sampler.n_items == 40 and engine.cursor == "0:2"
    assert len(engine.snap.positives) == 1  # the edge to a new item is usable
    assert poll(server.client(), engine) == 0


def test_train_steps_draws_from_the_step_not_from_earlier_draws(tmp_path: Path, fake_server: FakeServer) -> None:
    straight, disturbed = _engine(tmp_path, fake_server), _engine(tmp_path, fake_server)
    disturbed.sampler.rng.random(7)
    torch.rand(3, generator=disturbed.generator)
    meters = [train_steps(engine, 3) for engine in (straight, disturbed)]
    assert straight.step == disturbed.step == 3 and meters[0].steps == 3
    assert torch.equal(meters[0].sums["loss"], meters[1].sums["loss"])
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, disturbed.model.state_dict()[name]), name


def test_publish_uploads_the_vectors_it_returns_then_checkpoints(tmp_path: Path, fake_server: FakeServer) -> None:
    engine = _engine(tmp_path, fake_server)
    published = publish(fake_server.client(), engine, train_steps(engine, 2))
    upload = fake_server.uploads[0]
    assert published.version == {"id": 1, "step": 2}
    assert np.array_equal(upload["vectors"], published.vectors)
    assert upload["meta"]["metrics"] == pytest.approx(published.metrics)
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt is not None and ckpt["step"] == 2
