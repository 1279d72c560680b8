"""How a simulated annotator errs: one small model per way people get "spot the outliers" grids wrong.

A grid shows a reference and candidates; the annotator marks the candidates that are NOT the same kind
as the reference. A model turns the hidden kinds of a grid into the marks a person would give, drawing
from the annotator's own random generator (so a seeded run stays a function of its seed). Why several:
one uniform flip rate treats every mistake as a coin that ignores the pictures, which is not how people
err. They confuse look-alike kinds (shirt / T-shirt / pullover) far more than distinct ones, a few
click at random, and some submit "all same" to get through the queue. PAL has to survive all of these,
so the simulator can play each of them (and teams that mix them, :mod:`pal.simulate.team`).

- :class:`UniformFlips`: each mark flipped with one probability, whatever the kinds (the default,
  and the model every stored research run was measured with).
- :class:`ConfusionMistakes`: the chance of a wrong mark depends on the pair (reference kind,
  candidate kind), from a confusion matrix (:mod:`pal.simulate.confusion`).
- :class:`Spammer`: marks each candidate as an outlier with a fixed probability, ignoring the pictures.
- :class:`Lazy`: answers "all same" (no outliers) on a share of grids, and like another model otherwise.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

SPAM_RATE = 0.5  # a spammer's chance of marking a candidate: a coin toss
LAZY_SHARE = 0.8  # the share of grids a lazy annotator waves through as "all same"


def true_marks(reference: Hashable, candidates: Sequence[Hashable]) -> np.ndarray:
    """The right answer: True where a candidate is not the reference's kind (an outlier)."""
    return np.asarray([kind != reference for kind in candidates], dtype=bool).reshape(len(candidates))


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


class AnnotatorModel(Protocol):
    """Turns a grid's hidden kinds into marks (True: "not the same kind as the reference")."""

    def marks(self, rng: np.random.Generator, reference: Hashable, candidates: Sequence[Hashable]) -> np.ndarray:
        """One mark per candidate, drawn from ``rng`` (the annotator's generator)."""
        ...

    def describe(self) -> str:
        """The model and its parameters as a team entry would write it, e.g. ``spammer=0.5``."""
        ...


@dataclass(frozen=True)
class UniformFlips:
    """Each candidate's right mark flipped with probability ``rate``, independently of the kinds.

    Exactly the draws the simulator made before it had models (one ``rng.random(n)`` per grid), so runs
    measured with ``--error-rate`` keep their numbers bit for bit."""

    rate: float = 0.0

    def __post_init__(self) -> None:
        _check_probability("uniform error rate", self.rate)

    def marks(self, rng: np.random.Generator, reference: Hashable, candidates: Sequence[Hashable]) -> np.ndarray:
        return true_marks(reference, candidates) != (rng.random(len(candidates)) < self.rate)

    def describe(self) -> str:
        return f"uniform={self.rate:g}"


@dataclass(frozen=True, eq=False)
class ConfusionMistakes:
    """A wrong mark with probability ``matrix[kind of reference, kind of candidate]``.

    ``kinds`` maps each label to its row and column. Off the diagonal a high value means the two kinds
    look alike and the candidate is wrongly called "same"; on the diagonal it is the chance that a
    candidate of the reference's own kind is wrongly called an outlier."""

    matrix: np.ndarray
    kinds: Mapping[Hashable, int]
    source: str = "matrix"  # how the matrix was made, for the report: a mean rate or a file name

    def __post_init__(self) -> None:
        m = self.matrix
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"a confusion matrix must be square, got shape {m.shape}")
        if m.shape[0] != len(self.kinds):
            raise ValueError(f"the confusion matrix is {m.shape[0]} x {m.shape[1]} but the data has "
                             f"{len(self.kinds)} kinds")
        if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
            raise ValueError("confusion matrix entries must be probabilities in [0, 1]")

    def marks(self, rng: np.random.Generator, reference: Hashable, candidates: Sequence[Hashable]) -> np.ndarray:
        try:
            row = self.matrix[self.kinds[reference]]
            wrong = row[[self.kinds[kind] for kind in candidates]]
        except KeyError as exc:
            raise ValueError(f"kind {exc.args[0]!r} is not in the confusion matrix's kinds") from None
        return true_marks(reference, candidates) != (rng.random(len(candidates)) < wrong)

    def describe(self) -> str:
        return f"confusion={self.source}"


@dataclass(frozen=True)
class Spammer:
    """Marks each candidate as an outlier with probability ``rate`` without looking at it. At 1/2 half
    of its marks are wrong on any grid; other rates follow the grid's share of outliers."""

    rate: float = SPAM_RATE

    def __post_init__(self) -> None:
        _check_probability("spammer marking rate", self.rate)

    def marks(self, rng: np.random.Generator, reference: Hashable, candidates: Sequence[Hashable]) -> np.ndarray:
        return rng.random(len(candidates)) < self.rate

    def describe(self) -> str:
        return f"spammer={self.rate:g}"


@dataclass(frozen=True)
class Lazy:
    """Submits "all same" (no outliers) on a share ``share`` of grids without looking, and answers like
    ``otherwise`` on the rest. Its wrong marks are the outliers of the grids it waved through."""

    share: float = LAZY_SHARE
    otherwise: AnnotatorModel = UniformFlips()

    def __post_init__(self) -> None:
        _check_probability("lazy share", self.share)

    def marks(self, rng: np.random.Generator, reference: Hashable, candidates: Sequence[Hashable]) -> np.ndarray:
        if rng.random() < self.share:
            return np.zeros(len(candidates), dtype=bool)
        return self.otherwise.marks(rng, reference, candidates)

    def describe(self) -> str:
        return f"lazy={self.share:g}"
