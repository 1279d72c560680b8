"""Concentric circles (pal-math.md, "The paper's active oracle"): the active oracle's error vs
binary queries, averaged over 100 draws, against the paper's active and passive curves."""

from __future__ import annotations

from functools import cache

import pytest

from pal.core.oracle import get_oracle
from research.toy import PAPER_ACTIVE, PAPER_PASSIVE, ToyConfig, curve

SEEDS = 100
pytestmark = [pytest.mark.slow, pytest.mark.research]


@cache
def _curves() -> tuple[dict[int, float], dict[int, float]]:
    cfg = ToyConfig()
    return curve(lambda: get_oracle("active"), SEEDS, cfg), curve(None, SEEDS, cfg)


@pytest.mark.parametrize("queries", sorted(PAPER_ACTIVE))
def test_toy_active_error_at_or_below_paper_active_curve(queries: int) -> None:
    active, _ = _curves()
    assert active[queries] <= PAPER_ACTIVE[queries], (active, PAPER_ACTIVE)


@pytest.mark.parametrize("queries", [200, 400])
def test_toy_active_error_clearly_below_passive(queries: int) -> None:
    active, passive = _curves()
    # "Clearly": at most half the error of random pairs, the paper's and this harness's own.
    assert active[queries] <= 0.5 * PAPER_PASSIVE[queries], (active, PAPER_PASSIVE)
    assert active[queries] <= 0.5 * passive[queries], (active, passive)
