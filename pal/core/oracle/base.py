"""The oracle interface: given what is known about a project, choose the next grid.

Oracles are pure functions of an :class:`OracleContext` (no database, no I/O) so that they can be
tested on toy problems and timed in benchmarks; the server builds the context from its cached
project state (``server/services/project_state.py``) and calls ``select`` off the event loop.

What the server puts in the context
-----------------------------------
- ``item_ids``: the project's item ids, ascending int64; ``embedding`` / ``pixel_features`` rows follow it.
- ``graph``: the project's :class:`~pal.core.graph.KnowledgeGraph`, fed every edge of the feed in feed
  order: ``add_edge(id, src, dst, sign, weight, annotator_id)`` for answers (the annotator id lets
  ``set_annotator_weight`` weigh their votes by accuracy on controls), ``retract(retracts_id)``
  for undos. ``select`` holds ``graph.lock`` while it reads; ``add_edge`` takes the same lock.
- ``embedding``: the newest complete embedding version (N, D) float32, or None before the first;
  ``embedding_version``: that version's id; it keys the cache.
- ``pixel_features``: cold-start features from :func:`pal.core.oracle.coldstart.pixel_features`
  (computed once per item list), or None. Used while ``embedding`` is None; with neither, the
  oracles fall back to random grids that still skip implied pairs.
- ``cache``: one :class:`~pal.core.oracle.cache.OracleCache` per project, kept for the project's
  lifetime (without one, every selection builds a throwaway cache). It holds what
  is worth keeping between selections: the normalised vectors of the current embedding version
  (rebuilt when the version or the item count changes: ~0.3 s at 100k, ~4 s at 1M on 2 cores;
  ``OracleCache.prepare`` can do it in a worker thread as soon as a version arrives), the anchor
  exemplars per graph version, the seed-label index, the match-rate estimates that steer the
  target match share. Without it every selection rebuilds them (correct, slow beyond ~10k items).
- ``seed_labels``: optional ``{item id: label}`` known in advance (controls only).
- ``gold_min_votes``: the net agreeing vote weight that makes a graph
  pair usable as a control (default 2.0: two agreeing answers).

``select`` raises :class:`NoTaskAvailable` when every pair it could ask is already implied. It
runs its small matmuls on one BLAS thread (``pal.core.oracle.blas``), which matters on a busy host.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pal.core.graph import KnowledgeGraph

if TYPE_CHECKING:
    from pal.core.oracle.cache import OracleCache


class NoTaskAvailable(Exception):
    """Every pair the oracle could ask is already implied (or the project is too small)."""


@dataclass(frozen=True)
class TaskSpec:
    reference: int
    candidates: list[int]
    # Control pairs with a known answer: {candidate item id: True if it matches the reference}. Never served.
    gold: dict[int, bool] | None = None


@dataclass
class OracleContext:
    n_candidates: int
    item_ids: np.ndarray  # (N,) int64, ascending
    graph: KnowledgeGraph
    rng: np.random.Generator
    target_match_share: float = 0.5
    gold_rate: float = 0.0
    # (N, D) float32 rows aligned with item_ids (normalised by the oracle); None before any embedding exists.
    embedding: np.ndarray | None = None
    # (N, d) float32 cheap pixel-space features for cold start; None when not computed.
    pixel_features: np.ndarray | None = None
    # Id of the embedding version in ``embedding`` (keys the cache); None: keyed by the array itself.
    embedding_version: Hashable | None = None
    # Per-project cache kept by the server across selections; None: built afresh each call.
    cache: OracleCache | None = None
    # {item id: label} known in advance: controls drawn from them (never served as labels).
    seed_labels: Mapping[int, Hashable] | None = None
    # Net agreeing vote weight that makes a graph pair usable as a control (two agreeing answers).
    gold_min_votes: float = 2.0
    # Items shown in grids that are out with annotators and not answered yet. Their answers are on
    # the way: a concurrent grid that asks about them again mostly repeats a question, so they are
    # offered only when a grid cannot be filled otherwise.
    busy: frozenset[int] = frozenset()


class Oracle(Protocol):
    name: str

    def select(self, ctx: OracleContext) -> TaskSpec: ...
