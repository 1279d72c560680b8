"""Teams of simulated annotators that err in different ways: ``--team "confusion:4,spammer:1"``.

A team is a comma-separated list of ``MODEL[=PARAM][:COUNT]`` entries, annotators numbered in that
order (COUNT defaults to 1). Models (:mod:`pal.simulate.models`) and their parameter:

- ``uniform[=RATE]``: each mark flipped with probability RATE (default: ``--error-rate``).
- ``confusion[=MEAN | =FILE]``: wrong marks by pair of kinds. MEAN (default 0.1): the matrix is derived
  from the labels file's class mean images with that mean wrong-mark rate (:mod:`pal.simulate.confusion`);
  FILE (``.npy`` or ``.csv``, C x C): the matrix as given.
- ``spammer[=RATE]``: marks each candidate as an outlier with probability RATE (default 0.5).
- ``lazy[=SHARE]``: answers "all same" on a share SHARE of grids (default 0.8), otherwise like
  ``uniform`` with ``--error-rate``.

The headline noise team (:data:`HEADLINE_TEAM`) is four annotators whose confusion-driven mistakes
average 10 % wrong marks plus one spammer. Why: 10 % is the rate of the research suite's noisy cells
(uniform flips at 0.1), so the two figures compare at the same amount of noise, but here the mistakes
fall where people's fall: on the pairs of kinds that look alike, the pairs the labels are hardest on
anyway, which uniform flips never concentrate on. The spammer is the case PAL must survive: one
account in five answering at random (half its marks wrong), which redundancy, gold items and the
graph's consistency have to outvote or expose. On grids of random items 18 % of the team's marks are
wrong. Without a team every annotator is ``uniform`` with ``--error-rate``, exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pal.simulate.confusion import MAX_WRONG, derived_matrix, kind_index, load_kinds, load_matrix
from pal.simulate.models import LAZY_SHARE, SPAM_RATE, AnnotatorModel, ConfusionMistakes, Lazy, Spammer, UniformFlips

MODELS = ("uniform", "confusion", "spammer", "lazy")
HEADLINE_TEAM = "confusion=0.1:4,spammer:1"
CONFUSION_MEAN = 0.1
MATRIX_SUFFIXES = (".npy", ".csv")


@dataclass(frozen=True)
class TeamEntry:
    """``count`` annotators of ``model`` with parameter ``param`` (None: the model's default)."""

    model: str
    param: str | None
    count: int


def _rate(entry: str, text: str, high: float = 1.0, other: str = "") -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"team entry {entry!r}: {text!r} is not a number{other}") from None
    if not 0.0 <= value <= high:
        raise ValueError(f"team entry {entry!r}: the rate must be in [0, {high:g}], got {value:g}")
    return value


def _check_param(part: str, model: str, param: str | None) -> None:
    if param is None:
        return
    if model == "confusion" and param.lower().endswith(MATRIX_SUFFIXES):
        return
    if model == "confusion":
        _rate(part, param, MAX_WRONG, " nor a .npy or .csv matrix file")
    else:
        _rate(part, param)


def parse_team(spec: str) -> tuple[TeamEntry, ...]:
    """The entries of ``spec``; ValueError (one line) for an unknown model, a bad count or rate."""
    entries = []
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            raise ValueError(f"team {spec!r} has an empty entry")
        head, sep, count_text = part.rpartition(":")
        if not sep or count_text.lower().endswith(MATRIX_SUFFIXES):  # no count ("lazy", "confusion=x.csv")
            head, count_text = part, "1"
        name, eq, param = head.partition("=")
        model = name.strip().lower()
        if model not in MODELS:
            raise ValueError(f"unknown annotator model {name.strip()!r} in team {spec!r} (known: {', '.join(MODELS)})")
        if not count_text.strip().isdigit() or int(count_text) < 1:
            raise ValueError(f"team entry {part!r}: the count must be a whole number >= 1, got {count_text!r}")
        entry = TeamEntry(model, param.strip() if eq else None, int(count_text))
        _check_param(part, entry.model, entry.param)
        entries.append(entry)
    return tuple(entries)


def _value(param: str | None, default: float) -> float:
    return default if param is None else float(param)


def team_size(entries: tuple[TeamEntry, ...]) -> int:
    return sum(e.count for e in entries)


class _Kinds:
    """The labels file, read once and only if a confusion model needs it."""

    def __init__(self, labels_file: Path | None) -> None:
        self.path = labels_file
        self._data: tuple[np.ndarray, np.ndarray] | None = None

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        if self.path is None:
            raise ValueError("a confusion-driven annotator needs the labels file (images and labels)")
        if self._data is None:
            self._data = load_kinds(self.path)
        return self._data


def _confusion(param: str | None, kinds: _Kinds) -> ConfusionMistakes:
    images, labels = kinds.data()
    index = kind_index(labels)
    if param is not None and param.lower().endswith(MATRIX_SUFFIXES):
        path = Path(param)
        return ConfusionMistakes(load_matrix(path), index, source=path.name)
    mean = _value(param, CONFUSION_MEAN)
    return ConfusionMistakes(derived_matrix(images, labels, mean), index, source=f"{mean:g}")


def build_team(entries: tuple[TeamEntry, ...], *, error_rate: float, labels_file: Path | None) -> list[AnnotatorModel]:
    """One model per annotator, in team order. ``labels_file``: the ``.npz`` (images, labels) the
    confusion matrices are derived from, or whose kinds a matrix file must match."""
    kinds = _Kinds(labels_file)
    team: list[AnnotatorModel] = []
    for e in entries:
        model: AnnotatorModel
        if e.model == "uniform":
            model = UniformFlips(_value(e.param, error_rate))
        elif e.model == "confusion":
            model = _confusion(e.param, kinds)
        elif e.model == "spammer":
            model = Spammer(_value(e.param, SPAM_RATE))
        else:
            model = Lazy(_value(e.param, LAZY_SHARE), UniformFlips(error_rate))
        team += [model] * e.count  # models hold no state: the annotator's generator does
    return team
