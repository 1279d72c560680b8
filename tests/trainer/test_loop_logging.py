"""The trainer's log: its own progress lines, not one httpx line per request."""

from __future__ import annotations

import logging

import pytest

from trainer import loop


def test_run_from_args_silences_httpx_request_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger("httpx"), "level", logging.NOTSET)
    seen: list[int] = []

    def fake_run(config: object) -> object:
        seen.append(logging.getLogger("httpx").level)  # its own level: pytest already configured the root
        raise SystemExit(0)

    monkeypatch.setattr(loop, "run", fake_run)
    with pytest.raises(SystemExit):
        loop.run_from_args(loop.build_parser().parse_args(["--project", "1", "--token", "t"]))
    assert seen == [logging.WARNING]
