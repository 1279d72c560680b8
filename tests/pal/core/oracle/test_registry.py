"""Oracles are registered by name behind one interface."""

from __future__ import annotations

import numpy as np
import pytest

from pal.core.graph import KnowledgeGraph
from pal.core.oracle import ORACLES, OracleContext, TaskSpec, get_oracle


@pytest.mark.parametrize("name", ["random", "active", "uncertainty"])
def test_get_oracle_returns_strategy_with_that_name(name: str) -> None:
    oracle = get_oracle(name)
    assert oracle.name == name
    ids = np.arange(30, dtype=np.int64) * 2
    ctx = OracleContext(8, ids, KnowledgeGraph(), np.random.default_rng(0), embedding=np.eye(30, 8, dtype=np.float32))
    assert isinstance(oracle.select(ctx), TaskSpec)


def test_get_oracle_unknown_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown oracle"):
        get_oracle("clever")


def test_registry_lists_the_three_strategies() -> None:
    assert set(ORACLES) == {"random", "active", "uncertainty"}
