"""The labelling core: pure code (numpy and scipy, no database, no HTTP) that turns answers into
knowledge and chooses the next question.

- :mod:`pal.core.edges`: the edge vocabulary (:class:`EdgeRecord`, :class:`EdgeKind`).
- :mod:`pal.core.replica`: feed rows -> graph state, the one way any process builds it.
- :mod:`pal.core.graph`: the knowledge graph (votes, clusters, cannot-links, contradictions),
  built from :mod:`~pal.core.votes`, :mod:`~pal.core.clusters` and :mod:`~pal.core.mincut`.
- :mod:`pal.core.labels`: exported labels with their confidence.
- :mod:`pal.core.oracle`: the strategies that choose the next grid.
- :mod:`pal.core.replay`: the behaviour fingerprint that tags benchmark results.
"""

from pal.core.edges import Contradiction, EdgeKind, EdgeRecord
from pal.core.graph import KnowledgeGraph
from pal.core.replica import GraphReplica, align_rows

__all__ = ["Contradiction", "EdgeKind", "EdgeRecord", "GraphReplica", "KnowledgeGraph", "align_rows"]
