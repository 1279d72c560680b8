"""The reproduction check of the label-efficiency table."""

from __future__ import annotations

from typing import Any

import pytest

from research.label_efficiency_compare import identical_runs, markdown, rows

pytestmark = pytest.mark.research


def _doc(label: float, std: float, knn: float = 0.75) -> dict[str, Any]:
    stat = {"mean": label, "std": std}
    point = {"label_accuracy": stat, "knn_accuracy": {"mean": knn, "std": 0.01}}
    cells = {
        "active-e0": {"cell": {"strategy": "active"}, "title": "active, error 0", "points": {"300": point}},
        "ssl-e0": {"cell": {"strategy": "ssl"}, "title": "ssl, error 0", "points": {"300": point}},
    }
    return {"aggregate": cells, "machine": {"cpu": "test"}, "wall_s": 60.0, "runs": [{"code": {"graph": "x"}}]}


def test_a_number_inside_the_stated_spread_is_reproduced() -> None:
    table = rows(_doc(0.60, 0.02), _doc(0.615, 0.03))
    label = [r for r in table if r["metric"] == "label_accuracy"]
    assert [(r["cell"], r["within_stated"]) for r in label] == [("active, error 0", True)]  # ssl has no labels


def test_a_number_outside_the_stated_spread_is_listed() -> None:
    published, rerun = _doc(0.60, 0.01), _doc(0.65, 0.06, knn=0.80)
    table = rows(published, rerun)
    by_metric = {r["metric"]: r for r in table if r["cell"] == "active, error 0"}
    assert not by_metric["label_accuracy"]["within_stated"] and by_metric["label_accuracy"]["within_larger"]
    assert not by_metric["knn_accuracy"]["within_stated"] and not by_metric["knn_accuracy"]["within_larger"]
    text = markdown(published, rerun, table, ["a.json", "b.json"])
    assert "**0 of 3**" in text and "| active, error 0 | 300 | label_accuracy | 0.600 ± 0.010 | 0.650 ± 0.060" in text
    assert 'table `code {"graph": "x"}`' in text  # runs stored before the behaviour tag keep their code tag


def test_the_report_names_the_behaviour_each_run_measured() -> None:
    published, rerun = _doc(0.60, 0.02), _doc(0.60, 0.02)
    rerun["runs"] = [{"behaviour": {"replay": "abc"}}]
    text = markdown(published, rerun, rows(published, rerun), ["a.json", "b.json"])
    assert 'other run `behaviour {"replay": "abc"}`' in text


def _runs(*labels: float) -> dict[str, Any]:
    cell = {"strategy": "active", "error_rate": 0.0}
    return {"runs": [{"cell": cell, "seed": seed, "curve": [{"answers": 100, "label_accuracy": 0.5},
                                                             {"answers": 300, "label_accuracy": label}]}
                     for seed, label in enumerate(labels)]}


def test_identical_runs_counts_runs_whose_whole_curve_repeated() -> None:
    assert identical_runs(_runs(0.7, 0.8), _runs(0.7, 0.8)) == (2, 2)
    assert identical_runs(_runs(0.7, 0.8), _runs(0.7, 0.81)) == (1, 2)
    assert identical_runs(_runs(0.7, 0.8), _runs(0.7)) == (1, 1)  # a run the other lacks is not compared
