"""Every task an embedding-driven oracle issues asks only pairs whose relation is unknown."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pal.core.oracle import NoTaskAvailable, OracleContext, TaskSpec, get_oracle
from tests.pal.core.oracle.helpers import Project, Run, clustered_project, simulate


def _check_task(project_ids: np.ndarray, n: int, run: Run, task: TaskSpec) -> None:
    cands = task.candidates
    assert 1 <= len(cands) <= n
    assert task.reference not in cands and len(set(cands)) == len(cands)
    assert set(cands) | {task.reference} <= set(project_ids.tolist())
    gold = task.gold or {}
    for c in cands:
        if c not in gold:
            assert run.graph.relation(task.reference, c) == 0, (task, c)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    oracle=st.sampled_from(["active", "uncertainty"]),
    n=st.integers(1, 9),
    share=st.floats(0.0, 1.0),
    flip=st.sampled_from([0.0, 0.1]),
    redundancy=st.sampled_from([1, 2]),
    retract=st.sampled_from([0.0, 0.2]),
    gold=st.sampled_from([0.0, 0.3]),
)
def test_oracles_never_ask_implied_pair_on_simulated_runs(
    seed: int, oracle: str, n: int, share: float, flip: float, redundancy: int, retract: float, gold: float
) -> None:
    rng = np.random.default_rng(seed)
    project = clustered_project(rng, n=80)
    simulate(
        project,
        oracle,
        rng,
        steps=20,
        n_candidates=n,
        target_match_share=share,
        gold_rate=gold,
        flip_rate=flip,
        redundancy=redundancy,
        retract_rate=retract,
        on_task=lambda run, task: _check_task(project.item_ids, n, run, task),
    )


@pytest.mark.parametrize("oracle", ["active", "uncertainty"])
def test_oracles_never_ask_implied_pair_when_large_groups_update_locally(oracle: str) -> None:
    # Noisy answers from three annotators per task and a tiny exact_limit: conflicted groups are
    # cut and merged locally as the answers arrive; the oracle must still respect the relations.
    rng = np.random.default_rng(11)
    project = clustered_project(rng, n=300, classes=5)
    run = simulate(
        project,
        oracle,
        rng,
        steps=60,
        flip_rate=0.1,
        redundancy=3,
        retract_rate=0.1,
        exact_limit=4,
        on_task=lambda run, task: _check_task(project.item_ids, 8, run, task),
    )
    assert len(run.tasks) == 60 and run.graph.stats()["contradictions"] > 0


@pytest.mark.parametrize("oracle", ["active", "uncertainty"])
def test_oracles_exhaust_the_project_without_asking_implied_pairs(oracle: str) -> None:
    # A perfect annotator on a small project: the oracle keeps finding unknown pairs until the
    # closure implies every pair, then says so instead of repeating itself.
    rng = np.random.default_rng(3)
    project = clustered_project(rng, n=40, classes=4)
    run = simulate(
        project, oracle, rng, steps=400, on_task=lambda run, task: _check_task(project.item_ids, 8, run, task)
    )
    g = run.graph
    ids = project.item_ids.tolist()
    assert len(run.tasks) < 400
    assert all(g.relation(a, b) != 0 for a in ids for b in ids)


def test_active_avoids_unplaced_candidates_implied_relative_to_each_other() -> None:
    # Members of known clusters shown side by side (a placement grid) are cannot-linked by
    # design; items in no cluster yet should never be.
    rng = np.random.default_rng(5)
    project = clustered_project(rng, n=200, classes=5)
    pairs = 0

    def check(run: Run, task: TaskSpec) -> None:
        nonlocal pairs
        loose = [c for c in task.candidates if run.graph.component_size(c) == 1]
        for i, a in enumerate(loose):
            for b in loose[i + 1 :]:
                pairs += 1
                assert run.graph.relation(a, b) == 0

    simulate(project, "active", rng, steps=15, on_task=check)
    assert pairs > 0


def test_active_without_vectors_still_asks_only_unknown_pairs() -> None:
    rng = np.random.default_rng(0)
    project = clustered_project(rng, n=60)
    run = simulate(
        project,
        "active",
        rng,
        steps=10,
        use_embedding=False,
        on_task=lambda run, task: _check_task(project.item_ids, 8, run, task),
    )
    assert len(run.tasks) == 10


def test_active_raises_when_everything_is_implied() -> None:
    rng = np.random.default_rng(0)
    project = clustered_project(rng, n=3, classes=1)
    run = simulate(project, "active", rng, steps=5)
    ctx = OracleContext(8, project.item_ids, run.graph, rng, embedding=project.embedding, cache=run.cache)
    with pytest.raises(NoTaskAvailable):
        get_oracle("active").select(ctx)


@pytest.mark.parametrize("oracle", ["active", "uncertainty"])
def test_oracles_never_show_near_duplicates_side_by_side(oracle: str) -> None:
    # Every item has an exact twin (a duplicated image): a grid never holds both twins.
    rng = np.random.default_rng(8)
    base = clustered_project(rng, n=100, classes=4)
    emb = np.repeat(base.embedding, 2, axis=0)
    ids = np.arange(200, dtype=np.int64) * 7 + 3
    project = Project(ids, np.repeat(base.labels, 2), emb)

    def check(run: Run, task: TaskSpec) -> None:
        twins = [int(np.searchsorted(ids, c)) // 2 for c in task.candidates]
        assert len(set(twins)) == len(twins), task

    run = simulate(project, oracle, rng, steps=25, on_task=check)
    assert len(run.tasks) == 25
