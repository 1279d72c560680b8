"""The suite's run configurations: equal compute at every T, and cells named after their design."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from research import label_efficiency_suite as suite
from research.label_efficiency import RunConfig
from research.label_efficiency_suite import FULL, QUICK, Cell, aggregate, job_list, noise_cost, run_config

pytestmark = pytest.mark.research


def _steps_after(config_schedule: tuple[int, ...], train_steps: int, warmup: int) -> list[int]:
    per_round = (train_steps - warmup) // len(config_schedule)
    return [warmup + per_round * (k + 1) for k in range(len(config_schedule))]


def test_a_cell_cut_short_has_the_same_steps_at_every_answer_count() -> None:
    full = run_config(FULL, Cell("active"), 0, Path("d.npz"), None)
    short = run_config(FULL, Cell("active", 0.2, redundancy=3, gold_rate=0.1, known=3, last=1000), 0, Path("d.npz"),
                       None)
    assert full.schedule == (100, 300, 1000, 3000) and short.schedule == (100, 300, 1000)
    full_steps = _steps_after(full.schedule, full.train_steps, full.warmup_steps)
    short_steps = _steps_after(short.schedule, short.train_steps, short.warmup_steps)
    assert short_steps == full_steps[:3] == [300, 450, 600]
    assert (short.redundancy, short.gold_rate, short.known_per_class, short.annotators) == (3, 0.1, 3, 4)


def test_cells_are_named_after_their_design() -> None:
    cell = Cell("active", 0.2, redundancy=3, gold_rate=0.1, known=3, last=1000)
    assert cell.key == "active-e0.2-r3-g0.1-k3"
    assert cell.title == "active, error 0.2, redundancy 3, gold 0.1, 3 known labels per class"
    assert Cell("random", 0.1).key == "random-e0.1" and Cell("random", 0.1).title == "random, error 0.1"
    # The noise comparison: the same design with and without wrong marks.
    noisy = [c for c in FULL.cells if c.redundancy > 1]
    assert {(c.error_rate, c.known) for c in noisy} == {(0.0, 3), (0.2, 3)}
    assert all(c.known == 0 for c in QUICK.cells)


def _result(cell: Cell, seed: int, accuracies: list[float]) -> dict[str, object]:
    point = {"knn_accuracy": 0.5, "cluster_accuracy": 0.5, "edges_pos": 1, "edges_neg": 1, "tasks": 1,
             "labels_given": 0, "clusters": 10}
    curve = [{**point, "label_accuracy": 0.1}] + [{**point, "label_accuracy": a} for a in accuracies]
    return {"cell": asdict(cell), "seed": seed, "curve": curve, "wall_s": 1.0}


def test_noise_cost_compares_each_noisy_cell_with_its_error_free_design() -> None:
    clean = Cell("active", 0.0, redundancy=3, gold_rate=0.1, known=3, last=1000)
    noisy = Cell("active", 0.2, redundancy=3, gold_rate=0.1, known=3, last=1000)
    lone = Cell("active", 0.2, last=1000)  # no error-free cell with its design: not compared
    preset = replace(FULL, cells=(clean, noisy, lone))
    results = [_result(clean, s, [0.6, 0.7, 0.8 + 0.01 * s]) for s in range(3)]
    results += [_result(noisy, s, [0.5, 0.68, 0.76 + 0.02 * s]) for s in range(3)]
    results += [_result(lone, s, [0.4, 0.4, 0.4]) for s in range(3)]
    rows = noise_cost(preset, aggregate(preset, results))
    assert [(r["answers"], r["noisy_key"], r["error_free_key"]) for r in rows] == [
        (t, noisy.key, clean.key) for t in (100, 300, 1000)]
    last = rows[-1]
    assert last["design"] == "active, redundancy 3, gold 0.1, 3 known labels per class"
    assert abs(last["loss"] - (0.81 - 0.78)) < 1e-9 and abs(last["spread"] - 0.02) < 1e-9


def test_noise_design_cells_run_six_seeds_and_the_others_the_presets() -> None:
    jobs = job_list(FULL)
    seeds: dict[str, list[int]] = {}
    for cell, seed in jobs:
        seeds.setdefault(cell.key, []).append(seed)
    assert seeds["active-e0.2-r3-g0.1-k3"] == seeds["active-e0-r3-g0.1-k3"] == [0, 1, 2, 3, 4, 5]
    assert seeds["active-e0"] == seeds["active-e0.2"] == seeds["active-team"] == [0, 1, 2]
    assert len(jobs) == 36 + 6 + 3 + 3  # + the team and the crowd cells
    # The strategy comparisons come first, the noise figure last.
    keys = [cell.key for cell, _ in jobs]
    assert keys.index("active-e0.2-r3-g0.1-k3") > keys.index("supervised-images-e0.1") > keys.index("active-e0")
    assert Cell("active", 0.1, team="confusion=0.1:4,spammer:1").title == "active, team confusion=0.1:4,spammer:1"
    assert Cell("active").seed_list(QUICK) == (0, 1) and Cell("active", seeds=4).seed_list(QUICK) == (0, 1, 2, 3)


def test_stored_runs_are_reused_only_when_measured_with_the_same_behaviour(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tag = {"replay": "r", "active": "a", "random": "b", "uncertainty": "u"}
    ran: list[RunConfig] = []

    def fake_run(config: RunConfig) -> dict[str, Any]:
        ran.append(config)
        return {"wall_s": 1.0, "label_accuracy": 0.5, "tasks": config.tasks, "behaviour": tag}

    monkeypatch.setattr(suite, "behaviour", lambda: tag)
    monkeypatch.setattr(suite, "run", fake_run)
    preset = replace(QUICK, cells=(Cell("active"),), seeds=(0,))
    runs = tmp_path / "runs"

    def run_all(**kwargs: Any) -> list[dict[str, Any]]:
        return suite.run_all(preset, Path("d.npz"), runs, fresh=False, database_url=None, **kwargs)

    assert run_all()[0]["behaviour"] == tag and len(ran) == 1
    run_all()
    assert len(ran) == 1  # same settings, same behaviour: reused
    stored = next(runs.glob("*.json"))
    old = json.loads(stored.read_text())
    old.pop("behaviour")
    old["code"] = {"graph": "x"}  # measured before the behaviour tag
    stored.write_text(json.dumps(old))
    run_all(keep_stored=True)
    assert len(ran) == 1
    run_all()
    assert len(ran) == 2


def test_markdown_names_the_behaviour_measured_and_the_code_of_older_runs() -> None:
    doc = {"runs": [{"behaviour": {"replay": "r1"}}, {"behaviour": {"replay": "r1"}}, {"code": {"graph": "x"}}]}
    assert suite.measured_with(doc) == ['behaviour {"replay": "r1"}', 'code {"graph": "x"}']


# What runs stored before the team option carry as their settings (QUICK, active, seed 0).
STORED_BEFORE_TEAMS = {
    "data": "d.npz", "tasks": 300, "oracle": "active", "seed": 0, "error_rate": 0.0, "cant_tell_rate": 0.0,
    "redundancy": 1, "gold_rate": 0.0, "known_per_class": 0, "n": 8, "annotators": 4, "in_turns": True,
    "train_steps": 300, "warmup_steps": 100, "rounds": 2, "schedule": [100, 300], "max_train_items": 2500,
    "max_test_items": 500, "subset_seed": 0, "backbone": "mlp", "batch_size": 256, "lr": 0.001, "threads": 1,
}


def test_runs_stored_before_the_team_option_stay_comparable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = run_config(QUICK, Cell("active"), 0, Path("d.npz"), None)
    assert config.team is None and suite._comparable(config) == STORED_BEFORE_TEAMS
    teamed = suite._comparable(replace(config, team="confusion=0.1:4,spammer:1"))
    assert teamed == {**STORED_BEFORE_TEAMS, "annotators": 5, "team": "confusion=0.1:4,spammer:1"}
    # A run stored with the old settings is reused, not run again.
    tag = {"replay": "r"}
    monkeypatch.setattr(suite, "behaviour", lambda: tag)
    monkeypatch.setattr(suite, "run", lambda config: pytest.fail("a stored run was run again"))
    runs = tmp_path / "runs"
    runs.mkdir()
    cell = Cell("active")
    (runs / f"{cell.key}-s0.json").write_text(json.dumps({"suite_config": STORED_BEFORE_TEAMS, "behaviour": tag,
                                                          "label_accuracy": 0.5, "tasks": 300}))
    results = suite.run_all(replace(QUICK, cells=(cell,), seeds=(0,)), Path("d.npz"), runs, fresh=False,
                            database_url=None)
    assert results[0]["label_accuracy"] == 0.5
