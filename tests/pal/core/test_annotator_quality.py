"""Annotator accuracy from the others' answers (leave one annotator out) and gold tallies."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pal.core.annotator_quality import MIN_DECIDED, AnnotatorQuality, beta_summary, estimate_quality
from pal.core.edges import EdgeKind, EdgeRecord
from pal.core.graph import KnowledgeGraph

CAREFUL, SPAMMER = 0.05, 0.5  # share of wrong marks: 0.5 is marking at random


def simulate(errors: dict[int, float], *, items: int = 300, classes: int = 6, grids: int = 60, seed: int = 0,
             ) -> list[EdgeRecord]:
    """Grids of 8 candidates (about half of the reference's kind) answered in turns by each annotator,
    who flips each mark with their error rate."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, items)
    by_class = [np.flatnonzero(labels == c) for c in range(classes)]
    edges: list[EdgeRecord] = []
    for _ in range(grids):
        for annotator, error in errors.items():
            ref = int(rng.integers(items))
            candidates = [*rng.choice(by_class[labels[ref]], 4), *rng.integers(0, items, 4)]
            for c in (int(c) for c in candidates if c != ref):
                truth = 1 if labels[c] == labels[ref] else -1
                sign = -truth if rng.random() < error else truth
                edges.append(EdgeRecord(len(edges) + 1, ref, c, sign, annotator_id=annotator))
    return edges


def graph_of(edges: list[EdgeRecord]) -> KnowledgeGraph:
    graph = KnowledgeGraph()
    graph.add_edges(edges)
    return graph


def by_id(rows: list[AnnotatorQuality]) -> dict[int, AnnotatorQuality]:
    return {r.annotator_id: r for r in rows}


@pytest.fixture(scope="module")
def team_with_spammer() -> dict[int, AnnotatorQuality]:
    return by_id(estimate_quality(graph_of(simulate({1: CAREFUL, 2: CAREFUL, 3: CAREFUL, 4: CAREFUL, 5: SPAMMER}))))


def test_spammer_among_careful_annotators_is_flagged(team_with_spammer: dict[int, AnnotatorQuality]) -> None:
    spammer = team_with_spammer[5]
    assert spammer.flagged
    assert spammer.decided >= MIN_DECIDED and spammer.low < 0.5 < spammer.high < 0.65


def test_careful_annotators_among_a_spammer_are_not_flagged(team_with_spammer: dict[int, AnnotatorQuality]) -> None:
    for annotator in (1, 2, 3, 4):
        row = team_with_spammer[annotator]
        assert not row.flagged and row.accuracy > 0.85 and row.low < row.accuracy < row.high
        assert row.edges > row.decided >= MIN_DECIDED


def test_careful_team_has_no_flag() -> None:
    rows = estimate_quality(graph_of(simulate({1: CAREFUL, 2: CAREFUL, 3: 0.1, 4: CAREFUL}, seed=1)))
    assert [r.flagged for r in rows] == [False] * 4 and min(r.accuracy for r in rows) > 0.8


def test_flag_needs_enough_decided_marks() -> None:
    # The spammer answered 2 grids: at most 16 marks, too few to condemn anyone.
    edges = simulate({1: CAREFUL, 2: CAREFUL, 3: CAREFUL}, seed=2)
    spam = simulate({9: SPAMMER}, grids=2, seed=3)
    rows = by_id(estimate_quality(graph_of(edges + [EdgeRecord(len(edges) + e.id, e.src, e.dst, e.sign,
                                                                annotator_id=9) for e in spam])))
    assert rows[9].decided < MIN_DECIDED and not rows[9].flagged


def test_gold_tallies_move_the_estimate() -> None:
    graph = graph_of(simulate({1: CAREFUL, 2: CAREFUL, 3: CAREFUL}, seed=4))
    plain = by_id(estimate_quality(graph))[1]
    failed = by_id(estimate_quality(graph, gold={1: (10, 60)}))[1]
    passed = by_id(estimate_quality(graph, gold={1: (60, 60)}))[1]
    assert failed.accuracy < plain.accuracy < passed.accuracy
    assert failed.decided == passed.decided == plain.decided + 60 and passed.agreed == plain.agreed + 60


def test_gold_alone_can_flag_an_annotator_without_graph_marks() -> None:
    graph = graph_of(simulate({1: CAREFUL, 2: CAREFUL, 3: CAREFUL}, seed=5))
    rows = by_id(estimate_quality(graph, gold={7: (20, 40)}))
    assert rows[7].edges == 0 and rows[7].decided == 40 and rows[7].flagged


def test_member_without_answers_gets_the_prior() -> None:
    row = by_id(estimate_quality(KnowledgeGraph(), annotators=[3]))[3]
    assert (row.decided, row.edges, row.flagged) == (0, 0, False) and row.accuracy == pytest.approx(0.8)


def test_own_edges_never_decide_own_marks() -> None:
    # Annotator 2 joins items 1 and 2; annotator 1 ties item 3 to both. Item 3 is placed by annotator 1
    # alone, so none of their marks is decided; annotator 2's mark is decided by 1's path 1-3-2.
    graph = graph_of([EdgeRecord(1, 1, 2, 1, annotator_id=2), EdgeRecord(2, 2, 3, 1, annotator_id=1),
                      EdgeRecord(3, 1, 3, 1, annotator_id=1)])
    rows = by_id(estimate_quality(graph))
    assert (rows[1].edges, rows[1].decided) == (2, 0)
    assert (rows[2].edges, rows[2].decided, rows[2].agreed) == (1, 1, 1)


def test_a_mark_against_a_cannot_link_decided_by_others_is_wrong() -> None:
    # Annotators 2 and 3 both say {1, 2} and {3, 4} are kinds that differ; 5 and 6 are one kind.
    others = [(1, 2, 1), (3, 4, 1), (2, 3, -1), (5, 6, 1)]
    edges = [EdgeRecord(n + 1, a, b, s, annotator_id=who)
             for n, ((a, b, s), who) in enumerate((e, who) for who in (2, 3) for e in others)]
    edges += [EdgeRecord(100, 1, 4, 1, annotator_id=1), EdgeRecord(101, 1, 5, -1, annotator_id=1)]
    rows = by_id(estimate_quality(graph_of(edges)))
    # (1, 4, +) against the others' cannot-link: decided and wrong; (1, 5, -): the others never
    # compared {1, 2} with {5, 6}, so only annotator 1 says they differ: undecided.
    assert (rows[1].edges, rows[1].decided, rows[1].agreed) == (2, 1, 0)


def test_known_label_edges_count_as_everyone_elses_evidence() -> None:
    known = [EdgeRecord(1, 1, 2, 1, 3.0, EdgeKind.KNOWN), EdgeRecord(2, 3, 4, 1, 3.0, EdgeKind.KNOWN),
             EdgeRecord(3, 1, 3, -1, 3.0, EdgeKind.KNOWN)]
    graph = graph_of([*known, EdgeRecord(4, 2, 4, -1, annotator_id=1), EdgeRecord(5, 1, 2, 1, annotator_id=1)])
    assert by_id(estimate_quality(graph))[1].decided == 2 == by_id(estimate_quality(graph))[1].agreed


def test_retracted_edges_are_not_scored() -> None:
    edges = simulate({1: CAREFUL, 2: CAREFUL, 3: CAREFUL, 4: SPAMMER}, seed=6)
    graph = graph_of(edges)
    for e in edges:
        if e.annotator_id == 4:
            graph.retract(e.id)
    rows = by_id(estimate_quality(graph, annotators=[4]))
    assert (rows[4].edges, rows[4].decided, rows[4].flagged) == (0, 0, False)


def test_beta_summary_matches_the_closed_form() -> None:
    # Beta(a, 1) has CDF x**a, so its quantile q is q**(1/a): the prior Beta(4, 1) and one more right mark.
    for right, a in ((0, 4.0), (1, 5.0)):
        mean, low, high = beta_summary(right, 0)
        assert mean == pytest.approx(a / (a + 1))
        assert (low, high) == pytest.approx((0.05 ** (1 / a), 0.95 ** (1 / a)))


def test_five_annotators_of_ten_thousand_edges_take_under_two_seconds() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 20, 20_000)
    edges = []
    for n in range(50_000):
        a, b = (int(x) for x in rng.integers(0, 20_000, 2))
        if a != b:
            edges.append(EdgeRecord(n + 1, a, b, 1 if labels[a] == labels[b] else -1, annotator_id=n % 5))
    graph = graph_of(edges)
    graph.cluster_sizes()  # resolve the graph first: the server's is always up to date
    start = time.perf_counter()
    rows = estimate_quality(graph)
    assert time.perf_counter() - start < 2.0 and sum(r.edges for r in rows) == len(edges)


def test_same_marks_that_alone_merge_two_kinds_count_as_wrong() -> None:
    # Annotators 2 and 3 say {1, 2} and {3, 4} are kinds, and 2 and 3 differ (once); annotator 1's
    # three "same" marks outweigh that and merge the kinds in the graph.
    edges = [EdgeRecord(n + 1, a, b, 1, annotator_id=who) for n, (a, b, who) in
             enumerate([(1, 2, 2), (1, 2, 3), (3, 4, 2), (3, 4, 3)])]
    edges += [EdgeRecord(5, 2, 3, -1, annotator_id=3)]
    edges += [EdgeRecord(6 + n, a, b, 1, annotator_id=1) for n, (a, b) in enumerate([(1, 4), (1, 3), (2, 4)])]
    graph = graph_of(edges)
    assert graph.relation(1, 4) == 1  # merged on annotator 1's word
    row = by_id(estimate_quality(graph))[1]
    assert (row.edges, row.decided, row.agreed) == (3, 3, 0)


def test_different_marks_that_alone_cut_a_kind_count_as_wrong() -> None:
    # Annotator 2 chains {1, 2, 3, 4} as one kind; annotator 1 says the halves differ, four times over.
    edges = [EdgeRecord(n + 1, a, b, 1, annotator_id=2) for n, (a, b) in enumerate([(1, 2), (2, 3), (3, 4)])]
    edges += [EdgeRecord(4 + n, a, b, -1, annotator_id=1) for n, (a, b) in enumerate([(1, 3), (1, 4), (2, 4), (2, 3)])]
    graph = graph_of(edges)
    assert graph.relation(1, 4) == -1 and graph.relation(1, 2) == 1  # cut on annotator 1's word
    row = by_id(estimate_quality(graph))[1]
    assert (row.edges, row.decided, row.agreed) == (4, 4, 0)
