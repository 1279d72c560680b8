"""The edge vocabulary shared by the server, the trainer, the wire format and the graph.

An edge is one row of a project's edge feed: ``answer`` and ``known`` rows assert a relation
between two items (``sign`` +1 same kind, -1 different), ``retract`` rows withdraw the edge
``retracts_id`` (an undone answer). The feed is append-only; nothing is ever updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# Float noise below this is no vote at all.
EPS = 1e-9

Pair = tuple[int, int]


class EdgeKind(str, Enum):
    """What a feed row does. A ``str`` enum: it compares equal to its value and serialises as it."""

    ANSWER = "answer"  # an annotator's answer asserted this relation
    KNOWN = "known"  # the admin's known labels imply it
    RETRACT = "retract"  # withdraws the edge ``retracts_id``

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class EdgeRecord:
    """One feed row. ``weight`` is the vote the row is worth before its annotator's reliability;
    ``annotator_id`` (None for known labels) lets the graph weigh it."""

    id: int
    src: int
    dst: int
    sign: int
    weight: float = 1.0
    kind: EdgeKind = EdgeKind.ANSWER
    retracts_id: int | None = None
    annotator_id: int | None = None

    @property
    def asserts(self) -> bool:
        return self.kind is not EdgeKind.RETRACT


@dataclass(frozen=True)
class Contradiction:
    """An edge that the resolved graph disagrees with. ``reason``: ``"outvoted"`` (other answers to
    the same pair outweigh it), ``"tied"`` (the pair's votes cancel out), ``"split"`` (the pair's
    votes disagree too much for the pair to count, see ``MIN_AGREEMENT``) or ``"overruled"`` (its
    pair's majority is contradicted by the closure of stronger evidence)."""

    edge_id: int
    src: int
    dst: int
    sign: int
    reason: str


def pair_key(a: int, b: int) -> Pair:
    """The unordered pair {a, b} as a tuple, smaller id first."""
    return (a, b) if a < b else (b, a)


def sign_of(x: float) -> int:
    return 1 if x > EPS else (-1 if x < -EPS else 0)
