"""The load report's goal line (the run itself is `python -m bench.load`)."""

from __future__ import annotations

from typing import Any

from bench.load import _goals


def _result(rate: float, ratio: float) -> dict[str, Any]:
    return {"answer_limit_per_s": rate, "ratio_to_insert_limit": ratio, "config": {"p99_bound_ms": 100.0},
            "machine": {"cores": 2}, "sustained": {"cpu_ms_per_ack": {"server": 6.0, "postgres": 3.0}}}


def test_goal_line_says_what_was_not_met_and_the_cores_it_would_take() -> None:
    text = _goals(_result(150.0, 0.25))
    assert "(NOT met: 150.0)" in text and "(NOT met: 0.25)" in text
    assert "would take 2.7 cores" in text  # 300/s x 9 ms


def test_goal_line_when_met() -> None:
    text = _goals(_result(320.0, 0.6))
    assert "(met: 320.0)" in text and "(met: 0.6)" in text and "cores" not in text
