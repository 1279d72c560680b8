"""How often each annotator's pair marks are right, estimated from the graph itself.

There is rarely a ground truth to score annotators against: gold controls are a small share of the
grids (often none). What there always is, once a few people have answered, is the graph that
*everybody else* built. This module scores each annotator against it.

Method: leave one annotator out
-------------------------------
Each of annotator ``a``'s live answer edges is scored against what *everyone else* said. The
clusters are the knowledge graph's (its resolved partition and cannot-links, built from all live
edges); the evidence that places the two items is counted without ``a``:

- an item is *placed* for ``a`` when someone other than ``a`` (or a known label) asserted a "same"
  edge between it and another member of its cluster: it sits in a cluster of two or more items on
  the others' word;
- a mark is *decided* when both its items are placed and either they share a cluster (the truth is
  "same") or their clusters are cannot-linked and the others' net vote between the two clusters
  says "different" (the truth is "different"); anything else says nothing and is not counted.

The mark *agrees* when its sign is that truth. ``a``'s own edges never count as evidence for ``a``'s
score, so nobody confirms themselves: a spammer's "same" edge that alone attaches an item to a
cluster leaves that mark undecided. This is the leave-one-annotator-out estimate with one
approximation: the partition itself is the whole team's. Rebuilding the graph without each
annotator in turn is what it approximates, and it is too slow for a dashboard (one exact rebuild of
a dense, noisy 40,000-edge graph takes 25 to 60 s); under the graph's majority rule one
annotator's edges move the partition little, and only where the others' evidence is thin, which
the *placed* test leaves undecided anyway.

Gold control pairs (``gold``: ``{annotator: (right, total)}``) count as decided marks whose truth
is exact. Both kinds of evidence are added into one Beta posterior over the accuracy with the prior
``Beta(4, 1)`` (the prior of :mod:`server.services.reliability`: four virtual right marks in
five, so a handful of marks does not condemn a newcomer). ``accuracy`` is the posterior mean,
``(low, high)`` its 90 % equal-tailed credible interval.

The estimate is agreement with the others' consensus, not accuracy against the truth: where the
consensus is wrong, careful annotators lose a little. That bias is shared by everyone on the team,
so comparisons between annotators, which is what the flag uses, are fair.

Flag rule
---------
An annotator is ``flagged`` when they have at least :data:`MIN_DECIDED` decided marks and the
*upper* end of their interval is below the median point estimate of the other annotators (those
with at least :data:`MIN_DECIDED` decided marks themselves) minus :data:`MARGIN`. Why this rule:

- A spammer who marks at random agrees about half the time; careful people agree 85-99 % of the
  time. With 30 decided marks the 90 % interval of a 50 % annotator reaches only about 0.68, far
  below a careful team's 0.9, so a spammer is caught after a few grids of decided marks.
- Using the upper end (not the point estimate) means a flag needs evidence, not bad luck: an
  honest newcomer with a couple of slips keeps a wide interval that still reaches the team.
- The median of the others, not the mean, so that one other bad annotator does not drag the bar
  down and hide a second one; others with too few marks sit at the prior and are left out.
- The margin of 0.1 leaves room for honest differences (hard kinds, a stricter reading of "same")
  without flagging them.
- It cannot work when most of the team marks at random: then the consensus itself is noise. The
  flag is a prompt for the admin, who decides whether to exclude; nothing is excluded by it.

Cost: two passes over the live edges and one lookup per mark, O(edges) in all (5 annotators x
10,000 edges: a fraction of a second); the server caches the result per graph version.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from scipy.stats import beta as beta_dist

from pal.core.edges import EdgeKind, EdgeRecord, Pair
from pal.core.graph import KnowledgeGraph

PRIOR_RIGHT, PRIOR_WRONG = 4.0, 1.0  # Beta(4, 1): the prior of server.services.reliability
INTERVAL = 0.90
MIN_DECIDED = 30
MARGIN = 0.1
Votes = dict[int | None, float]  # annotator (None: known labels) -> summed vote


@dataclass(frozen=True)
class AnnotatorQuality:
    """One annotator's estimated accuracy on pair marks. ``decided``: marks with a verdict (graph
    decided plus gold), ``agreed``: those of them that were right, ``edges``: live answer edges."""

    annotator_id: int
    accuracy: float
    low: float
    high: float
    decided: int
    edges: int
    flagged: bool
    agreed: int = 0


def beta_summary(right: float, wrong: float) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the posterior ``Beta(PRIOR_RIGHT + right, PRIOR_WRONG + wrong)``,
    with the equal-tailed :data:`INTERVAL` credible interval."""
    a, b = PRIOR_RIGHT + right, PRIOR_WRONG + wrong
    tail = (1.0 - INTERVAL) / 2.0
    low, high = beta_dist.ppf([tail, 1.0 - tail], a, b)
    return a / (a + b), float(low), float(high)


def _without(votes: Votes | None, annotator: int) -> float:
    """The summed vote of everyone but ``annotator``."""
    if not votes:
        return 0.0
    return sum(v for who, v in votes.items() if who != annotator)


def _find(parent: dict[int, int], x: int) -> int:
    root = x
    while parent.get(root, root) != root:
        root = parent[root]
    while x != root:  # path compression
        parent[x], x = root, parent[x]
    return root


@dataclass
class Evidence:
    """Who said what about the graph's clusters, gathered once for every annotator's score.

    ``root``: cluster root of each item with an edge; ``links``: cannot-linked root pairs;
    ``inside``: the "same" edges between two members of one cluster, with their annotator;
    ``between[(ra, rb)]``: per annotator, the signed votes between two clusters;
    ``marks[a]``: ``a``'s live answer edges."""

    root: dict[int, int]
    links: set[Pair]
    inside: list[tuple[int, int, int | None]]
    between: dict[Pair, Votes]
    marks: dict[int, list[EdgeRecord]]

    @classmethod
    def of(cls, graph: KnowledgeGraph) -> Evidence:
        with graph.lock:  # one resolved state for every lookup
            edges = graph.edges()
            items = graph.items_with_edges()
            root = dict(zip(items, graph.roots_of(items), strict=True))
            links = set(graph.cannot_links())
        ev = cls(root=root, links=links, inside=[], between={}, marks={})
        for e in edges:
            if e.kind is EdgeKind.RETRACT:
                continue
            if e.kind is EdgeKind.ANSWER and e.annotator_id is not None:
                ev.marks.setdefault(e.annotator_id, []).append(e)
            ra, rb = root[e.src], root[e.dst]
            if ra == rb:
                if e.sign > 0:
                    ev.inside.append((e.src, e.dst, e.annotator_id))
                continue
            votes = ev.between.setdefault((min(ra, rb), max(ra, rb)), {})
            votes[e.annotator_id] = votes.get(e.annotator_id, 0.0) + e.sign * e.weight
        return ev

    def placed_without(self, annotator: int) -> dict[int, int]:
        """Union-find parents over the others' "same" edges inside clusters: two items share a root
        when the others alone join them; an item is absent when the others never placed it."""
        parent: dict[int, int] = {}
        for u, v, who in self.inside:
            if who == annotator:
                continue
            parent.setdefault(u, u)
            parent.setdefault(v, v)
            ru, rv = _find(parent, u), _find(parent, v)
            if ru != rv:
                parent[ru] = rv
        return parent

    def truth(self, e: EdgeRecord, annotator: int, parent: dict[int, int]) -> int:
        """+1 (same) or -1 (different) as the others' evidence decides the pair, 0 undecided."""
        if e.src not in parent or e.dst not in parent:
            return 0  # an end the others never placed in a cluster of two or more
        ra, rb = self.root[e.src], self.root[e.dst]
        if ra == rb:
            # Same cluster, and joined by the others' edges alone (not only through this annotator's).
            return 1 if _find(parent, e.src) == _find(parent, e.dst) else 0
        key = (min(ra, rb), max(ra, rb))
        if key in self.links and _without(self.between.get(key), annotator) < 0:
            return -1
        return 0  # two clusters the others never told apart

    def score(self, annotator: int) -> tuple[int, int, int]:
        """``(live answer edges, decided, agreed)`` of one annotator."""
        marks = self.marks.get(annotator, [])
        if not marks:
            return 0, 0, 0
        parent = self.placed_without(annotator)
        decided = agreed = 0
        for e in marks:
            truth = self.truth(e, annotator, parent)
            if truth:
                decided += 1
                agreed += int(e.sign == truth)
        return len(marks), decided, agreed


def estimate_quality(
    graph: KnowledgeGraph, *, gold: Mapping[int, tuple[int, int]] | None = None, annotators: Iterable[int] = (),
) -> list[AnnotatorQuality]:
    """One :class:`AnnotatorQuality` per annotator with a live answer edge in ``graph``, a gold
    tally or a place in ``annotators`` (members with no answers yet get the prior), sorted by id.

    ``gold``: ``{annotator: (right, total)}`` over their control pairs, counted as exact marks."""
    gold = gold or {}
    evidence = Evidence.of(graph)
    rows: list[AnnotatorQuality] = []
    for annotator in sorted(set(evidence.marks) | set(gold) | set(annotators)):
        n_edges, decided, agreed = evidence.score(annotator)
        g_right, g_total = gold.get(annotator, (0, 0))
        decided, agreed = decided + g_total, agreed + g_right
        mean, low, high = beta_summary(agreed, decided - agreed)
        rows.append(AnnotatorQuality(annotator, mean, low, high, decided, n_edges, False, agreed))
    return flag(rows)


def flag(rows: Sequence[AnnotatorQuality]) -> list[AnnotatorQuality]:
    """``rows`` with ``flagged`` set by the rule of the module docstring."""
    seasoned = {r.annotator_id: r.accuracy for r in rows if r.decided >= MIN_DECIDED}
    out = []
    for r in rows:
        others = [acc for who, acc in seasoned.items() if who != r.annotator_id]
        flagged = bool(others) and r.decided >= MIN_DECIDED and r.high < statistics.median(others) - MARGIN
        out.append(replace(r, flagged=flagged))
    return out
