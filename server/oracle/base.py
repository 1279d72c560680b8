"""The oracle interface: given what is known about a project, choose the next grid.

Oracles are pure functions of an :class:`OracleContext` (no database, no I/O) so that they can be
tested on toy problems and timed in benchmarks; the server builds the context from its cached
project state (``server/services/project_state.py``) and calls ``select`` off the event loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pal.graph import KnowledgeGraph


@dataclass(frozen=True)
class TaskSpec:
    reference: int
    candidates: list[int]
    # Control pairs with a known answer: {candidate item id: True if it matches the reference}.
    gold: dict[int, bool] | None = None


@dataclass
class OracleContext:
    n_candidates: int
    item_ids: np.ndarray  # (N,) int64, ascending
    graph: KnowledgeGraph
    rng: np.random.Generator
    target_match_share: float = 0.5
    gold_rate: float = 0.0
    # (N, D) float32 rows aligned with item_ids, L2-normalised; None before any embedding exists.
    embedding: np.ndarray | None = None
    # (N, d) float32 cheap pixel-space features for cold start; None when not computed.
    pixel_features: np.ndarray | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Oracle(Protocol):
    name: str

    def select(self, ctx: OracleContext) -> TaskSpec: ...
