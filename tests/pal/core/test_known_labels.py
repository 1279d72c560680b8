"""The edge rule of known labels, as a pure function (the database side: tests/server/routers)."""

from __future__ import annotations

from pal.core.known_labels import PAIRS_PER_LABEL, known_label_pairs


def test_a_new_known_item_is_linked_to_a_few_earlier_items_of_every_label() -> None:
    stored = [(1, "coat"), (2, "coat"), (3, "bag")]
    pairs = known_label_pairs(stored, [(4, "coat"), (5, "shirt")])
    assert pairs == [(1, 4, 1), (2, 4, 1), (3, 4, -1),  # 4 against what was stored
                     (1, 5, -1), (2, 5, -1), (4, 5, -1), (3, 5, -1)]  # 5 against those and 4


def test_links_per_label_are_capped_and_nothing_links_an_item_to_itself() -> None:
    stored = [(i, "a") for i in range(1, 10)]
    pairs = known_label_pairs(stored, [(10, "a"), (11, "b")])
    assert sum(1 for p in pairs if p[1] == 10) == PAIRS_PER_LABEL
    assert [p for p in pairs if p[1] == 11] == [(1, 11, -1), (2, 11, -1), (3, 11, -1)]
    assert known_label_pairs([], []) == [] and known_label_pairs([], [(1, "a")]) == []
    assert all(src != dst for src, dst, _ in pairs)
