"""Synthetic projects and a simulated annotator for oracle tests."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np

from pal.core.graph import KnowledgeGraph
from pal.core.oracle import NoTaskAvailable, OracleCache, OracleContext, TaskSpec, get_oracle


@dataclass
class Project:
    item_ids: np.ndarray  # sparse ascending ids
    labels: np.ndarray  # ground truth per row
    embedding: np.ndarray  # (N, D) float32, noisy class structure

    def label_of(self, item: int) -> int:
        return int(self.labels[int(np.searchsorted(self.item_ids, item))])


def clustered_project(
    rng: np.random.Generator, n: int = 120, classes: int = 6, dim: int = 16, noise: float = 0.6
) -> Project:
    centres = rng.standard_normal((classes, dim))
    labels = rng.integers(classes, size=n)
    emb = centres[labels] + noise * rng.standard_normal((n, dim))
    ids = np.sort(rng.choice(10**6, size=n, replace=False)).astype(np.int64) + 17
    return Project(ids, labels, emb.astype(np.float32))


@dataclass
class Run:
    graph: KnowledgeGraph = field(default_factory=KnowledgeGraph)
    cache: OracleCache = field(default_factory=OracleCache)
    tasks: list[TaskSpec] = field(default_factory=list)
    next_edge: int = 1


def simulate(
    project: Project,
    oracle_name: str,
    rng: np.random.Generator,
    steps: int,
    *,
    n_candidates: int = 8,
    target_match_share: float = 0.5,
    gold_rate: float = 0.0,
    flip_rate: float = 0.0,
    redundancy: int = 1,
    retract_rate: float = 0.0,
    use_embedding: bool = True,
    pixel_features: np.ndarray | None = None,
    seed_labels: Mapping[int, Hashable] | None = None,
    on_task: Callable[[Run, TaskSpec], None] | None = None,
    exact_limit: int = 512,
) -> Run:
    """Ask ``steps`` grids, answer each ``redundancy`` times (signs flipped with ``flip_rate``),
    sometimes undo the last answer. ``on_task`` sees every task before its answers land."""
    run = Run(graph=KnowledgeGraph(exact_limit=exact_limit))
    oracle = get_oracle(oracle_name)
    for _ in range(steps):
        ctx = OracleContext(
            n_candidates=n_candidates,
            item_ids=project.item_ids,
            graph=run.graph,
            rng=rng,
            target_match_share=target_match_share,
            gold_rate=gold_rate,
            embedding=project.embedding if use_embedding else None,
            embedding_version=1,
            pixel_features=pixel_features,
            seed_labels=seed_labels,
            cache=run.cache,
        )
        try:
            task = oracle.select(ctx)
        except NoTaskAvailable:
            break
        if on_task is not None:
            on_task(run, task)
        run.tasks.append(task)
        ref_label = project.label_of(task.reference)
        for annotator in range(redundancy):
            answer_edges = []
            for c in task.candidates:
                same = project.label_of(c) == ref_label
                if rng.random() < flip_rate:
                    same = not same
                run.graph.add_edge(run.next_edge, task.reference, c, 1 if same else -1, annotator=annotator)
                answer_edges.append(run.next_edge)
                run.next_edge += 1
            if rng.random() < retract_rate:
                for e in answer_edges:
                    run.graph.retract(e)
    return run
