from __future__ import annotations

import argparse

import pytest

from trainer.config import TrainConfig, add_arguments, config_from_args


def parse(*argv: str) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_config_flags_fill_settings() -> None:
    cfg = parse("--project", "3", "--max-steps", "10", "--until-idle", "--no-amp", "--image-size", "32", "--lr", "0.1")
    assert (cfg.project, cfg.max_steps, cfg.until_idle, cfg.amp, cfg.image_size, cfg.lr) == (
        3,
        10,
        True,
        False,
        32,
        0.1,
    )


def test_config_defaults_when_flags_absent() -> None:
    assert parse("--project", "1") == TrainConfig(project=1)


def test_config_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAL_TOKEN", "s3cret")
    assert parse("--project", "1").token == "s3cret"


def test_config_to_dict_leaves_out_the_token() -> None:
    assert "token" not in TrainConfig(token="s3cret").to_dict()


def test_config_fraction_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="human_fraction"):
        TrainConfig(human_fraction=1.5)


def test_config_batch_of_one_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=1)
