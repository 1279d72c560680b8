"""Grids out with annotators: concurrent claims get complementary grids, not the same question."""

from __future__ import annotations

import numpy as np
import pytest

from pal.core.oracle import OracleCache, OracleContext, TaskSpec, get_oracle
from tests.pal.core.oracle.helpers import Project, Run, clustered_project, simulate


def _grids_at_once(project: Project, run: Run, oracle: str, count: int, seed: int,
                   track: bool = True) -> list[TaskSpec]:
    """``count`` grids chosen one after the other with none answered, as for people claiming at once."""
    rng = np.random.default_rng(seed)
    busy: set[int] = set()
    tasks = []
    for _ in range(count):
        ctx = OracleContext(n_candidates=8, item_ids=project.item_ids, graph=run.graph, rng=rng,
                            embedding=project.embedding, embedding_version=1, cache=run.cache,
                            busy=frozenset(busy))
        task = get_oracle(oracle).select(ctx)
        tasks.append(task)
        if track:
            busy.update([task.reference, *task.candidates])
    return tasks


def _unplaced(run: Run, items: list[int]) -> list[int]:
    return [x for x in items if run.graph.find(x) == x and not run.graph.neighbours(x)]


@pytest.mark.parametrize("oracle", ["active", "uncertainty"])
def test_concurrent_grids_do_not_repeat_items_in_flight(oracle: str) -> None:
    project = clustered_project(np.random.default_rng(3), n=400)
    run = simulate(project, oracle, np.random.default_rng(4), steps=12)
    run.cache = OracleCache()
    tasks = _grids_at_once(project, run, oracle, count=6, seed=5)
    seen: set[int] = set()
    for task in tasks:
        asked = set(_unplaced(run, [task.reference, *task.candidates]))
        assert not asked & seen, (task, asked & seen)
        seen |= asked
    # Without the in-flight set the same picture gives overlapping grids: the check above can fail.
    blind = _grids_at_once(project, run, oracle, count=6, seed=5, track=False)
    items = [x for t in blind for x in _unplaced(run, [t.reference, *t.candidates])]
    assert len(items) > len(set(items))


def test_a_grid_still_fills_when_every_item_is_in_flight() -> None:
    project = clustered_project(np.random.default_rng(6), n=60)
    run = simulate(project, "active", np.random.default_rng(7), steps=4)
    ctx = OracleContext(n_candidates=8, item_ids=project.item_ids, graph=run.graph, rng=np.random.default_rng(8),
                        embedding=project.embedding, embedding_version=1, cache=run.cache,
                        busy=frozenset(project.item_ids.tolist()))
    task = get_oracle("active").select(ctx)
    assert len(task.candidates) == 8
