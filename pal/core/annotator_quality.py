"""How often each annotator's pair marks are right, estimated from the graph itself.

There is rarely a ground truth to score annotators against: gold controls are a small share of the
grids (often none). What there always is, once a few people have answered, is the graph that
*everybody else* built. This module scores each annotator against it.

Method: leave one annotator out
-------------------------------
Each of annotator ``a``'s live answer edges is scored against what *everyone else* said. The
clusters are the knowledge graph's (its resolved partition, built from all live edges); the
evidence that relates the two items is counted without ``a``:

- an item is *placed* for ``a`` when someone other than ``a`` (or a known label) asserted a "same"
  edge between it and another member of its cluster: it sits in a cluster of two or more items on
  the others' word;
- inside one cluster, the others' "same" edges alone join items into *parts*. Two items of one
  part: the truth is "same". Two parts the others said differ (a "different" edge between them):
  the truth is "different" (the cluster holds them together only through ``a``'s edges);
- in two clusters: the sign of the others' net vote between the two clusters is the truth;
- a mark is *decided* when both its items are placed and one of these gives a truth; anything else
  says nothing and is not counted.

The mark *agrees* when its sign is that truth. ``a``'s own edges never count as evidence for ``a``'s
score, so nobody confirms themselves: a spammer's "same" edge that alone attaches an item to a
cluster leaves that mark undecided, and one that merged two kinds the others keep apart counts as
wrong. This approximates rebuilding the graph without each annotator in turn, which is too slow for
a dashboard (one exact rebuild of a dense, noisy 40,000-edge graph takes 25 to 60 s): the partition
itself is the whole team's. In simulations (5 annotators, 2,000 items, 12,000 edges, one marking at
random) the spammer scores about 0.60 against 0.73-0.77 for careful annotators whose consensus that
spammer degraded (about 0.91 without them); the exact rebuild would put the spammer nearer 0.5.

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

from pal.core.clusters import find_root
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


@dataclass
class Evidence:
    """Who said what about the graph's clusters, gathered once for every annotator's score.

    ``root``: cluster root of each item with an edge;
    ``inside`` / ``inside_apart``: the "same" / "different" edges between two members of one
    cluster, with their annotator;
    ``between[(ra, rb)]``: per annotator, the signed votes between two clusters;
    ``marks[a]``: ``a``'s live answer edges."""

    root: dict[int, int]
    inside: list[tuple[int, int, int | None]]
    inside_apart: list[tuple[int, int, int | None]]
    between: dict[Pair, Votes]
    marks: dict[int, list[EdgeRecord]]

    @classmethod
    def of(cls, graph: KnowledgeGraph) -> Evidence:
        with graph.lock:  # one resolved state for every lookup
            edges = graph.edges()
            items = graph.items_with_edges()
            root = dict(zip(items, graph.roots_of(items), strict=True))
        ev = cls(root=root, inside=[], inside_apart=[], between={}, marks={})
        for e in edges:
            if e.kind is EdgeKind.RETRACT:
                continue
            if e.kind is EdgeKind.ANSWER and e.annotator_id is not None:
                ev.marks.setdefault(e.annotator_id, []).append(e)
            ra, rb = root[e.src], root[e.dst]
            if ra == rb:
                (ev.inside if e.sign > 0 else ev.inside_apart).append((e.src, e.dst, e.annotator_id))
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
            ru, rv = find_root(parent, u), find_root(parent, v)
            if ru != rv:
                parent[ru] = rv
        return parent

    def apart_without(self, annotator: int, parent: dict[int, int]) -> set[Pair]:
        """Pairs of the others' components (roots in ``parent``) inside one cluster that the others
        said differ: where the cluster holds them together only through this annotator's edges."""
        apart: set[Pair] = set()
        for u, v, who in self.inside_apart:
            if who != annotator and u in parent and v in parent:
                ru, rv = find_root(parent, u), find_root(parent, v)
                if ru != rv:
                    apart.add((min(ru, rv), max(ru, rv)))
        return apart

    def truth(self, e: EdgeRecord, annotator: int, parent: dict[int, int], apart: set[Pair]) -> int:
        """+1 (same) or -1 (different) as the others' evidence decides the pair, 0 undecided."""
        if e.src not in parent or e.dst not in parent:
            return 0  # an end the others never placed in a cluster of two or more
        ra, rb = self.root[e.src], self.root[e.dst]
        if ra == rb:
            # One cluster: the others join the two items, or they tell apart the parts that only
            # this annotator's edges hold together.
            ca, cb = find_root(parent, e.src), find_root(parent, e.dst)
            if ca == cb:
                return 1
            return -1 if (min(ca, cb), max(ca, cb)) in apart else 0
        # Two clusters: the others' net vote between them decides (when this annotator's own
        # "different" marks cut a cluster, the others' "same" votes across the cut say so).
        net = _without(self.between.get((min(ra, rb), max(ra, rb))), annotator)
        return 1 if net > 0 else (-1 if net < 0 else 0)

    def score(self, annotator: int) -> tuple[int, int, int]:
        """``(live answer edges, decided, agreed)`` of one annotator."""
        marks = self.marks.get(annotator, [])
        if not marks:
            return 0, 0, 0
        parent = self.placed_without(annotator)
        apart = self.apart_without(annotator, parent)
        decided = agreed = 0
        for e in marks:
            truth = self.truth(e, annotator, parent, apart)
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
