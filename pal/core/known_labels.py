"""Known labels as graph edges: the rule, free of storage.

The paper's active loop starts from one known item per class; a project that has a few labelled
items (or an expert willing to label three per class) should start the same way. Each new known
item gets an edge to up to ``PAIRS_PER_LABEL`` known items of every label: positive to its own
label, negative to the others. The edges weigh ``KNOWN_LABEL_WEIGHT`` annotator answers, so a known
relation survives a few wrong marks against it, and, because every label is cannot-linked to
every other, a wrong "same" between two known kinds can never merge them.

Measured (fixed PCA-64 embedding of Fashion-MNIST 10k, 3 answers per grid, 20% of marks wrong, the
oracle experiments): see the README's noise figures; without known labels, noisy discovery grids
often miss whole kinds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable

KNOWN_LABEL_WEIGHT = 5.0
PAIRS_PER_LABEL = 3


def known_label_pairs(
    stored: Iterable[tuple[int, Hashable]], added: Iterable[tuple[int, Hashable]]
) -> list[tuple[int, int, int]]:
    """``(src, dst, sign)`` of the edges that known labels ``added`` (item, label), in this order, get
    against those ``stored`` before them and against each other: each new item to up to
    ``PAIRS_PER_LABEL`` earlier known items of every label, +1 to its own, -1 to the others."""
    by_label: dict[Hashable, list[int]] = defaultdict(list)
    for item, label in stored:
        by_label[label].append(item)
    pairs: list[tuple[int, int, int]] = []
    for item, label in added:
        for other_label, items in by_label.items():
            pairs.extend((other, item, 1 if other_label == label else -1) for other in items[:PAIRS_PER_LABEL])
        by_label[label].append(item)
    return pairs
