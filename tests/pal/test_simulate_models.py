"""Annotator models of ``pal simulate`` (pal/simulate/models.py), without a server: each model's
measured mistakes against what it promises, and today's uniform flips pinned draw for draw."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import numpy as np

from pal.simulate.annotator import AnswerQuota, SimConfig, SimulatedAnnotator
from pal.simulate.truth import GroundTruth

# 40 items of 4 kinds; 200 fixed grids of one reference and 8 candidates.
PIN_TRUTH = GroundTruth(labels={i: i % 4 for i in range(1, 41)})
_GRID_RNG = np.random.default_rng(123)
PIN_GRIDS = [[int(x) for x in _GRID_RNG.choice(np.arange(1, 41), size=9, replace=False)] for _ in range(200)]


def _annotator(index: int, config: SimConfig, **kwargs: Any) -> SimulatedAnnotator:
    """An annotator whose decisions can be asked without a server (no client, no quota)."""
    return SimulatedAnnotator(index, None, 1, PIN_TRUTH, config, AnswerQuota(0), threading.Event(),  # type: ignore[arg-type]
                              **kwargs)


def test_uniform_flips_make_the_same_draws_as_before() -> None:
    """The research tables were measured with these draws: (outliers, can't tell, marks, flipped) of
    each grid and the annotator's next random number, for two seeds, recorded before annotator models
    existed. A change here changes every stored noisy run."""
    decided: list[Any] = []
    for seed, index in ((0, 0), (7, 3)):
        annotator = _annotator(index, SimConfig(error_rate=0.2, cant_tell_rate=0.1, seed=seed))
        for grid in PIN_GRIDS:
            decided.append(annotator._decide({"reference": grid[0], "candidates": grid[1:]}))
        decided.append(float(annotator.rng.random()))
    assert [list(d) for d in decided[:3]] == [[[14, 33, 8, 9, 21, 23], False, 8, 2], [[1, 19, 29, 39], False, 8, 3],
                                              [[36, 29, 10, 28, 24, 8], False, 8, 2]]
    assert decided[200] == 0.576870547025274 and decided[-1] == 0.7257245137234705
    digest = hashlib.sha256(json.dumps(decided).encode()).hexdigest()
    assert digest == "fdc2f139d69a0f18a5fb0f4cd087d9cf51c72a63ec1123d8eb234aba71bebcfb"
