"""The label-efficiency benchmark, end to end on the shipped demo data (tiny settings)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from research.label_efficiency import _accumulate, add_arguments, config_from_args, load_dataset, main, split_test_mask

pytestmark = pytest.mark.research

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "fashion-mnist-demo.npz"
REQUIRED = {"oracle", "tasks", "edges_pos", "edges_neg", "knn_accuracy", "cluster_accuracy", "label_accuracy",
            "wall_s", "curve"}


def test_label_efficiency_tiny_run_writes_every_required_key(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    code = main(["--data", str(DEMO), "--tasks", "24", "--oracle", "active", "--seed", "0",
                     "--out", str(out), "--train-steps", "30", "--warmup-steps", "10", "--rounds", "2",
                     "--max-train-items", "600", "--max-test-items", "200", "--annotators", "2"])
    result = json.loads(out.read_text())
    assert code == 0
    assert result.keys() >= REQUIRED
    assert result["oracle"] == "active" and result["tasks"] == 24
    assert result["edges_pos"] + result["edges_neg"] == 24 * 8
    assert [p["answers"] for p in result["curve"]] == [0, 12, 24]
    assert 0.0 <= result["label_accuracy"] <= 1.0 and result["labels_from"]
    # Tagged with the replay fingerprint (what PAL asks and exports), not with hashes of source files.
    assert set(result["behaviour"]) == {"replay", "active", "random", "uncertainty", "trainer"} and "code" not in result


def test_label_efficiency_supervised_images_labels_n_plus_one_per_screen(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    code = main(["--data", str(DEMO), "--tasks", "10", "--oracle", "supervised-images",
                     "--out", str(out), "--train-steps", "20", "--warmup-steps", "10", "--rounds", "1",
                     "--max-train-items", "600", "--max-test-items", "200"])
    result = json.loads(out.read_text())
    assert code == 0
    assert result["labels_given"] == 90
    # Spanning form of the label graph: one + edge per labelled image but the first of its class.
    assert result["edges_pos"] == 90 - result["clusters"]


def test_test_mask_without_split_takes_last_thousand_per_class() -> None:
    labels = np.repeat([0, 1], 3000)
    mask = split_test_mask(labels, None)
    assert mask.sum() == 2000
    assert mask[2000:3000].all() and mask[5000:].all() and not mask[:2000].any()


def test_load_dataset_subset_is_stratified_and_fixed() -> None:
    a = load_dataset(DEMO, max_train=500, max_test=100, subset_seed=0)
    b = load_dataset(DEMO, max_train=500, max_test=100, subset_seed=0)
    assert np.array_equal(a.source_rows, b.source_rows)
    assert (~a.is_test).sum() == 500 and a.is_test.sum() == 100
    assert set(np.bincount(a.labels[~a.is_test]).tolist()) == {50}


def _grids_and_answers(workdir: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    engine = sa.create_engine(f"sqlite:///{workdir / 'pal-bench.sqlite3'}")
    with engine.connect() as conn:
        grids = [tuple(r) for r in conn.execute(sa.text(
            "SELECT id, reference_id, candidate_ids, gold FROM tasks ORDER BY id"))]
        answers = [tuple(r) for r in conn.execute(sa.text(
            "SELECT task_id, annotator_id, outlier_ids, cant_tell FROM answers ORDER BY id"))]
    engine.dispose()
    return grids, answers


def test_label_efficiency_run_is_reproduced_by_running_it_again(tmp_path: Path) -> None:
    """Same configuration, same seed: the same grids, the same answers, the same numbers. Another
    seed: other grids (so the equality is not that of a run that ignores its seed)."""
    results, stored = [], []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out, workdir = tmp_path / f"{name}.json", tmp_path / name
        code = main(["--data", str(DEMO), "--schedule", "8,16", "--oracle", "active",
                         "--seed", seed, "--error-rate", "0.2", "--redundancy", "2", "--gold-rate", "0.3",
                         "--annotators", "3", "--out", str(out), "--workdir", str(workdir), "--train-steps", "24",
                         "--warmup-steps", "8", "--max-train-items", "300", "--max-test-items", "100"])
        assert code == 0
        results.append(json.loads(out.read_text()))
        stored.append(_grids_and_answers(workdir))
    a, b, c = results
    metrics = ("answers", "tasks", "edges_pos", "edges_neg", "knn_accuracy", "cluster_accuracy", "label_accuracy")
    assert [[p[k] for k in metrics] for p in a["curve"]] == [[p[k] for k in metrics] for p in b["curve"]]
    assert a["simulator"]["flipped"] == b["simulator"]["flipped"] > 0
    assert stored[0] == stored[1]
    grids_a, answers_a = stored[0]
    assert len(grids_a) == 8 and len(answers_a) == 16  # 16 answers, redundancy 2
    assert any(g[3] is not None for g in grids_a)  # gold controls were drawn too
    assert [g[1:3] for g in stored[2][0]] != [g[1:3] for g in grids_a]


def _args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--data", str(DEMO), "--tasks", "10", *extra])


def test_team_option_defaults_to_uniform_flips_and_sets_the_annotators() -> None:
    plain = config_from_args(_args("--oracle", "active", "--error-rate", "0.1"))
    assert plain.team is None and plain.annotators == 4 and plain.error_rate == 0.1
    teamed = config_from_args(_args("--oracle", "active", "--team", "confusion=0.1:4,spammer:1"))
    assert teamed.team == "confusion=0.1:4,spammer:1" and teamed.annotators == 5
    assert config_from_args(_args("--oracle", "random", "--team", "lazy:2", "--annotators", "2")).annotators == 2


@pytest.mark.parametrize(("extra", "message"), [
    (["--oracle", "active", "--team", "robot:2"], "unknown annotator model 'robot'"),
    (["--oracle", "active", "--team", "spammer:2", "--annotators", "3"], "--annotators 3 but the team has 2"),
    (["--oracle", "supervised-images", "--team", "spammer:2"], "team applies to the server oracles"),
])
def test_bad_team_is_refused_in_one_line(capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    assert main(["--data", str(DEMO), "--tasks", "10", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_per_annotator_rows_add_up_over_rounds() -> None:
    total: dict[str, Any] = {}
    for flipped in (3, 5):
        _accumulate(total, {"marks": 16, "flipped": flipped, "annotators": [
            {"annotator": 0, "model": "spammer=0.5", "answers": 2, "cant_tell": 0, "marks": 16, "flipped": flipped,
             "measured_error_rate": flipped / 16}]})
    assert total["annotators"] == [{"annotator": 0, "model": "spammer=0.5", "answers": 4, "cant_tell": 0, "marks": 32,
                                    "flipped": 8, "measured_error_rate": 0.25}]
    assert total["measured_error_rate"] == 0.25


def test_label_efficiency_run_with_a_team_reports_each_annotators_model(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    code = main(["--data", str(DEMO), "--tasks", "16", "--oracle", "random", "--seed", "0", "--out", str(out),
                 "--team", "uniform=0:1,spammer:1", "--train-steps", "12", "--warmup-steps", "6", "--rounds", "2",
                 "--max-train-items", "300", "--max-test-items", "100"])
    result = json.loads(out.read_text())
    assert code == 0 and result["config"]["team"] == "uniform=0:1,spammer:1"
    rows = result["simulator"]["annotators"]
    assert [(r["model"], r["answers"]) for r in rows] == [("uniform=0", 8), ("spammer=0.5", 8)]
    assert rows[0]["flipped"] == 0 and rows[1]["flipped"] == result["simulator"]["flipped"] > 0
