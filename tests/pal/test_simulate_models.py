"""Annotator models of ``pal simulate`` (pal/simulate/models.py), without a server: each model's
measured mistakes against what it promises, and today's uniform flips pinned draw for draw."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pal.simulate.annotator import AnswerQuota, SimConfig, SimulatedAnnotator
from pal.simulate.confusion import MAX_WRONG, derived_matrix, kind_index, likeness
from pal.simulate.models import AnnotatorModel, ConfusionMistakes, Lazy, Spammer, UniformFlips, true_marks
from pal.simulate.team import HEADLINE_TEAM, build_team, parse_team, team_size
from pal.simulate.truth import GroundTruth

ROOT = Path(__file__).resolve().parents[2]

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


# --------------------------------------------------------------------------- each model against its promise


def _wrong_share(model: AnnotatorModel, grids: list[tuple[int, list[int]]], seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    wrong = marks = 0
    for reference, candidates in grids:
        given = model.marks(rng, reference, candidates)
        wrong += int((given != true_marks(reference, candidates)).sum())
        marks += len(candidates)
    return wrong / marks


def _random_grids(kinds: int, count: int = 2000, n: int = 8, seed: int = 1) -> list[tuple[int, list[int]]]:
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(kinds)), [int(k) for k in rng.integers(kinds, size=n)]) for _ in range(count)]


def test_uniform_flips_err_at_their_rate() -> None:
    # 16,000 marks at 0.15: the share's standard deviation is 0.003.
    assert abs(_wrong_share(UniformFlips(0.15), _random_grids(4)) - 0.15) < 0.012


def test_spammer_gets_half_its_marks_wrong_whatever_the_grid() -> None:
    assert abs(_wrong_share(Spammer(), _random_grids(4)) - 0.5) < 0.02
    all_outliers = [(0, [1, 2, 3, 1, 2, 3, 1, 2])] * 2000
    assert abs(_wrong_share(Spammer(), all_outliers) - 0.5) < 0.02
    assert abs(_wrong_share(Spammer(0.2), all_outliers) - 0.8) < 0.02  # marks 20 %: misses 80 % of outliers


def test_lazy_annotator_waves_through_its_share_of_grids() -> None:
    grids = [(0, [1, 2, 3, 1, 0, 3, 1, 2])] * 2000  # a careful answer always has outliers here
    rng = np.random.default_rng(0)
    empty = sum(not Lazy(0.8).marks(rng, ref, cands).any() for ref, cands in grids)
    assert abs(empty / len(grids) - 0.8) < 0.03  # 2,000 grids: standard deviation 0.009
    # Its wrong marks are the 7 outliers of each grid it waved through; it answers right otherwise.
    assert abs(_wrong_share(Lazy(0.8), grids) - 0.8 * 7 / 8) < 0.03
    assert _wrong_share(Lazy(0.0), grids) == 0.0


def _three_kinds(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Kinds 0 and 1 look alike (mean images 8 grey levels apart); kind 2 is far from both."""
    rng = np.random.default_rng(seed)
    means = np.stack([np.full((6, 6), 100.0), np.full((6, 6), 108.0), np.full((6, 6), 220.0)])
    labels = np.repeat(np.arange(3), 50)
    images = np.clip(means[labels] + rng.normal(0, 5, size=(150, 6, 6)), 0, 255).astype(np.uint8)
    return images, labels


def test_confusion_model_errs_far_more_on_look_alike_kinds() -> None:
    images, labels = _three_kinds()
    model = ConfusionMistakes(derived_matrix(images, labels, 0.1), kind_index(labels))
    look_alike = _wrong_share(model, [(0, [1] * 8)] * 1000)
    distinct = _wrong_share(model, [(0, [2] * 8)] * 1000)
    assert look_alike > 0.2 and distinct < 0.02 and look_alike > 10 * max(distinct, 1e-3)
    # Over random grids it errs at the matrix's mean (the requested 0.1), within sampling error.
    assert abs(_wrong_share(model, _random_grids(3)) - 0.1) < 0.015


@pytest.mark.parametrize("mean", [0.02, 0.1, 0.3])
def test_derived_matrix_has_the_requested_mean_over_pairs_of_kinds(mean: float) -> None:
    images, labels = _three_kinds()
    labels = labels.copy()
    labels[:20] = 2  # unequal kinds: the mean weighs each pair by the kinds' shares of the data
    matrix = derived_matrix(images, labels, mean)
    shares = np.bincount(labels) / len(labels)
    assert (np.outer(shares, shares) * matrix).sum() == pytest.approx(mean, abs=1e-9)
    assert matrix.max() <= MAX_WRONG and matrix.min() > 0
    assert matrix[0, 1] == matrix[1, 0] and matrix[0, 1] > matrix[0, 2]


def test_a_kind_is_confused_with_itself_as_much_as_with_its_closest_look_alike() -> None:
    weights = likeness(np.asarray([[0.0], [0.1], [1.0]]))
    assert weights[0, 0] == weights[0, 1] and weights[2, 2] == max(weights[2, 0], weights[2, 1])


# --------------------------------------------------------------------------- teams


def _labels_file(tmp_path: Path) -> Path:
    images, labels = _three_kinds()
    path = tmp_path / "data.npz"
    np.savez(path, images=images, labels=labels)
    return path


def test_a_team_gives_each_annotator_its_model_in_order(tmp_path: Path) -> None:
    entries = parse_team("confusion:4, spammer:1")
    team = build_team(entries, error_rate=0.05, labels_file=_labels_file(tmp_path))
    assert team_size(entries) == 5 and len(team) == 5
    assert [type(m) for m in team] == [ConfusionMistakes] * 4 + [Spammer]
    assert [m.describe() for m in team] == ["confusion=0.1"] * 4 + ["spammer=0.5"]
    team = build_team(parse_team("uniform,lazy=0.6:2,spammer=0.3,uniform=0.2"), error_rate=0.05, labels_file=None)
    assert [m.describe() for m in team] == ["uniform=0.05", "lazy=0.6", "lazy=0.6", "spammer=0.3", "uniform=0.2"]
    assert team[1] == Lazy(0.6, UniformFlips(0.05))  # a lazy annotator who looks errs like the uniform ones


def test_the_headline_team_is_four_confusion_annotators_at_ten_percent_and_one_spammer(tmp_path: Path) -> None:
    team = build_team(parse_team(HEADLINE_TEAM), error_rate=0.0, labels_file=_labels_file(tmp_path))
    assert [m.describe() for m in team] == ["confusion=0.1"] * 4 + ["spammer=0.5"]


def test_a_confusion_matrix_file_is_used_as_given(tmp_path: Path) -> None:
    matrix = np.asarray([[0.0, 0.3, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.save(tmp_path / "m.npy", matrix)
    np.savetxt(tmp_path / "m.csv", matrix, delimiter=",")
    for name in ("m.npy", "m.csv"):
        (model,) = build_team(parse_team(f"confusion={tmp_path / name}"), error_rate=0.0,
                              labels_file=_labels_file(tmp_path))
        assert isinstance(model, ConfusionMistakes) and np.array_equal(model.matrix, matrix)
        assert model.describe() == f"confusion={name}"


@pytest.mark.parametrize(("spec", "message"), [
    ("bogus:1", "unknown annotator model 'bogus'"),
    ("spammer:0", "the count must be a whole number >= 1"),
    ("spammer:x", "the count must be a whole number >= 1"),
    ("lazy=1.5", "the rate must be in [0, 1]"),
    ("uniform=-0.1", "the rate must be in [0, 1]"),
    ("confusion=0.7", "the rate must be in [0, 0.5]"),
    ("spammer=abc", "'abc' is not a number"),
    ("", "team '' has an empty entry"),
    ("spammer:1,", "has an empty entry"),
])
def test_bad_team_entries_are_refused_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_team(spec)
    assert "\n" not in str(caught.value)


def test_a_matrix_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", np.full((2, 2), 0.1))
    with pytest.raises(ValueError, match="2 x 2 but the data has 3 kinds"):
        build_team(parse_team(f"confusion={tmp_path / 'm.npy'}"), error_rate=0.0, labels_file=_labels_file(tmp_path))


def test_the_report_names_each_annotators_model_and_measured_rate() -> None:
    annotator = _annotator(2, SimConfig(), model=Spammer(0.25))
    annotator.report.answers, annotator.report.marks, annotator.report.flipped = 10, 80, 20
    row = annotator.tally()
    assert (row["annotator"], row["model"], row["measured_error_rate"]) == (2, "spammer=0.25", 0.25)
    assert _annotator(0, SimConfig(error_rate=0.1)).tally()["model"] == "uniform=0.1"


# --------------------------------------------------------------------------- the command line


def _pal_simulate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PAL_ADMIN_TOKEN": "", "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "pal.cli", "simulate", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_help_shows_the_team_option() -> None:
    out = _pal_simulate("--help")
    assert out.returncode == 0 and "--team SPEC" in out.stdout and "spammer[=RATE]" in out.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--team", "confusion:4,robot:1"], "unknown annotator model 'robot'"),
    (["--team", "confusion=BAD.npy"], "2 x 2 but the data has 3 kinds"),
    (["--error-rate", "-0.1"], "error_rate must be in [0, 1]"),
    (["--team", "spammer=-0.5"], "the rate must be in [0, 1]"),
    (["--team", "spammer:2", "--annotators", "3"], "--annotators 3 but the team has 2"),
])
def test_bad_values_give_one_line_and_a_non_zero_exit(tmp_path: Path, args: list[str], message: str) -> None:
    np.save(tmp_path / "BAD.npy", np.full((2, 2), 0.1))
    args = [a.replace("BAD.npy", str(tmp_path / "BAD.npy")) for a in args]
    out = _pal_simulate("--project", "1", "--labels", str(_labels_file(tmp_path)), *args)
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1 and message in out.stderr and "Traceback" not in out.stderr
