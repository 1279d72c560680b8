"""Control (gold) pairs: right answers, mixed into tasks that look like any other."""

from __future__ import annotations

import numpy as np
import pytest

from pal.core.oracle import TaskSpec
from tests.pal.core.oracle.helpers import Project, Run, clustered_project, simulate


def _seeded(project: Project, rng: np.random.Generator, share: float = 0.3) -> dict[int, int]:
    picked = rng.choice(len(project.item_ids), size=int(share * len(project.item_ids)), replace=False)
    return {int(project.item_ids[i]): int(project.labels[i]) for i in picked}


@pytest.mark.parametrize("oracle", ["active", "uncertainty", "random"])
def test_gold_tasks_have_the_shape_of_ordinary_tasks(oracle: str) -> None:
    rng = np.random.default_rng(1)
    project = clustered_project(rng, n=300)
    run = simulate(project, oracle, rng, steps=60, gold_rate=0.5, seed_labels=_seeded(project, rng))
    gold_tasks = [t for t in run.tasks if t.gold]
    plain = [t for t in run.tasks if not t.gold]
    assert gold_tasks and plain
    assert {len(t.candidates) for t in gold_tasks} == {len(t.candidates) for t in plain} == {8}
    assert all(isinstance(t.reference, int) and all(isinstance(c, int) for c in t.candidates) for t in run.tasks)
    assert all(set(t.gold or {}) <= set(t.candidates) for t in gold_tasks)
    # Controls sit anywhere in the grid, not in a telltale slot.
    positions = {t.candidates.index(c) for t in gold_tasks for c in t.gold or {}}
    assert len(positions) >= 5


def test_gold_answers_agree_with_seed_labels() -> None:
    rng = np.random.default_rng(2)
    project = clustered_project(rng, n=300)
    run = simulate(project, "active", rng, steps=40, gold_rate=0.5, seed_labels=_seeded(project, rng))
    checked = 0
    for t in run.tasks:
        for c, same in (t.gold or {}).items():
            checked += 1
            assert same == (project.label_of(c) == project.label_of(t.reference))
    assert checked > 0


def test_gold_from_graph_uses_agreeing_votes_and_matches_truth() -> None:
    rng = np.random.default_rng(4)
    project = clustered_project(rng, n=300)
    issued: list[tuple[TaskSpec, dict[int, int]]] = []

    def check(run: Run, task: TaskSpec) -> None:
        if task.gold:
            issued.append((task, {c: run.graph.relation(task.reference, c) for c in task.gold}))

    simulate(project, "active", rng, steps=80, gold_rate=0.3, redundancy=2, on_task=check)
    assert issued
    for task, relations in issued:
        for c, same in (task.gold or {}).items():
            assert same == (project.label_of(c) == project.label_of(task.reference))
            assert relations[c] == (1 if same else -1)


def test_gold_rate_zero_never_adds_controls() -> None:
    rng = np.random.default_rng(5)
    project = clustered_project(rng, n=200)
    run = simulate(project, "active", rng, steps=30, gold_rate=0.0, seed_labels=_seeded(project, rng))
    assert all(t.gold is None for t in run.tasks)


def test_gold_rate_is_honoured_when_controls_exist() -> None:
    rng = np.random.default_rng(6)
    project = clustered_project(rng, n=400)
    run = simulate(project, "active", rng, steps=200, gold_rate=0.25, seed_labels=_seeded(project, rng))
    share = sum(1 for t in run.tasks if t.gold) / len(run.tasks)
    assert 0.15 <= share <= 0.35
