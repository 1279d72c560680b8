"""From the edge feed to training batches.

- The feed rows go into a :class:`pal.core.replica.GraphReplica` made without annotator weights
  (:func:`new_replica`): the trainer learns from the votes as they were given.
- :func:`snapshot` turns the knowledge graph into what sampling needs, in item positions (rows
  of the trainer's item table): its clusters (components of the + graph, contradictions
  resolved by the graph's weighted votes), the cannot-links between clusters, and the asserted
  edges that the resolved graph agrees with.
- :class:`PairSampler` draws a batch of row pairs (A row i, B row i) that mixes augmentation
  pairs (two views of one item: plain SSL, useful before any human answer), human + pairs
  (asserted edges, and pairs drawn inside a cluster: its transitive closure) and, for losses
  that use them, human - pairs. The batch graph then relates EVERY row of A to every row of B
  by what the graph knows: + when the two items are the same item or share a cluster, - when
  their clusters are cannot-linked, 0 otherwise.

Edge weights act through the knowledge graph's votes and through sampling: an asserted edge is
drawn in proportion to its weight capped at 1, so an edge worth several answers (a known label's)
decides its pair's vote but is not drawn more often than an answer's (thirty known items would
otherwise fill most of the early batches). The batch graph itself is +1/-1/0, since a pair drawn
from the closure has no weight of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pal.core.graph import KnowledgeGraph
from pal.core.replica import GraphReplica

AUGMENTATION, HUMAN_POSITIVE, HUMAN_NEGATIVE = 0, 1, 2


def new_replica() -> GraphReplica:
    """The trainer's replica: every answer counts with its own weight (no annotator reliability)."""
    return GraphReplica(weigh_annotators=False)


def replica_state(replica: GraphReplica) -> dict[str, Tensor]:
    """The replica as plain tensors, loadable with ``torch.load(weights_only=True)``."""
    return {k: torch.from_numpy(v) for k, v in replica.state_dict().items()}


def replica_from_state(state: dict[str, Tensor]) -> GraphReplica:
    return GraphReplica.from_state_dict({k: v.numpy() for k, v in state.items()}, weigh_annotators=False)


@dataclass(frozen=True)
class GraphSnapshot:
    """The knowledge graph in item positions (rows of the trainer's item table)."""

    positives: np.ndarray  # (P, 2) asserted + edges the resolved graph agrees with
    positive_weights: np.ndarray  # (P,)
    negatives: np.ndarray  # (Q, 2) asserted - edges the resolved graph agrees with
    negative_weights: np.ndarray  # (Q,)
    components: list[np.ndarray]  # clusters with at least two members in the table
    labels: np.ndarray  # (N,) cluster index, or n_components + position for an item on its own
    cannot_links: np.ndarray  # sorted keys label_u * L + label_v of cannot-linked labels, both ways
    n_labels: int
    unknown_items: int  # edges skipped because an endpoint is not in the item table yet

    @property
    def has_positives(self) -> bool:
        return len(self.positives) > 0

    @property
    def has_negatives(self) -> bool:
        return len(self.negatives) > 0

    @functools.cached_property
    def flat_components(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(members of every component back to back, start of each, size of each): lets the
        sampler draw closure pairs for a whole batch without a Python loop."""
        sizes = np.array([len(c) for c in self.components], dtype=np.int64)
        members = np.concatenate(self.components) if self.components else np.zeros(0, dtype=np.int64)
        return members, np.cumsum(sizes) - sizes, sizes

    def on_device(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``labels`` and ``cannot_links`` as tensors on ``device``, copied once per snapshot."""
        cache: dict[torch.device, tuple[Tensor, Tensor]] = self.__dict__.setdefault("_device_copies", {})
        if device not in cache:
            cache[device] = (torch.from_numpy(self.labels).to(device), torch.from_numpy(self.cannot_links).to(device))
        return cache[device]


def _graph_view(graph: KnowledgeGraph) -> tuple[dict[int, list[int]], dict[tuple[int, int], float]]:
    """Clusters ``{root: member ids}`` and cannot-links ``{(root, root): weight}``: the only
    place that reads the knowledge graph, so a change of its API is absorbed here."""
    return graph.components(min_size=2), graph.cannot_links()


def snapshot(replica: GraphReplica, item_ids: np.ndarray) -> GraphSnapshot:
    """``item_ids`` (N,) ascending: the ids of the item table's rows."""
    n = len(item_ids)

    def positions(ids: Iterable[int]) -> np.ndarray:
        ids = np.fromiter(ids, dtype=np.int64)
        if n == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(item_ids, ids), n - 1)
        return np.where(item_ids[pos] == ids, pos, -1)

    clusters, cannot = _graph_view(replica.graph)
    components = []
    for members in clusters.values():
        pos = positions(members)
        if (pos >= 0).sum() > 1:
            components.append(np.sort(pos[pos >= 0]))
    labels = len(components) + np.arange(n, dtype=np.int64)
    for c, members_pos in enumerate(components):
        labels[members_pos] = c
    n_labels = len(components) + n

    # Cluster roots (or lone items) -> labels, through any member: roots need not be in the table.
    root_label: dict[int, int] = {}
    for root, members in clusters.items():
        pos = positions(members)
        if (pos >= 0).any():
            root_label[root] = int(labels[pos[pos >= 0][0]])
    for a, b in cannot:
        for root in (a, b):
            if root not in root_label and (p := int(positions([root])[0])) >= 0:
                root_label[root] = int(labels[p])
    links = [(root_label[a], root_label[b]) for a, b in cannot if a in root_label and b in root_label]
    lu = np.array([a for a, _ in links], dtype=np.int64)
    lv = np.array([b for _, b in links], dtype=np.int64)
    keys = np.unique(np.concatenate([lu * n_labels + lv, lv * n_labels + lu]))

    # Live edges in arrival order (the order sampling draws them in, so a resumed run repeats it).
    edges = list(replica.graph.votes.edges.values())
    ends = positions(i for e in edges for i in (e.src, e.dst)).reshape(-1, 2)
    known = (ends >= 0).all(axis=1)
    sign = np.array([e.sign for e in edges], dtype=np.int64)
    weight = np.array([e.weight for e in edges], dtype=np.float64)
    padded = np.append(labels, -1)  # position -1 (not in the table) -> label -1
    la, lb = padded[ends[:, 0]], padded[ends[:, 1]]
    agrees_pos = known & (sign > 0) & (la == lb)
    agrees_neg = known & (sign < 0) & np.isin(la * n_labels + lb, keys)
    return GraphSnapshot(
        positives=ends[agrees_pos],
        positive_weights=weight[agrees_pos],
        negatives=ends[agrees_neg],
        negative_weights=weight[agrees_neg],
        components=components,
        labels=labels,
        cannot_links=keys,
        n_labels=n_labels,
        unknown_items=int((~known).sum()),
    )


@dataclass(frozen=True)
class PairBatch:
    rows_a: np.ndarray  # (n,) item positions of branch A
    rows_b: np.ndarray  # (n,) item positions of branch B
    kinds: np.ndarray  # (n,) AUGMENTATION / HUMAN_POSITIVE / HUMAN_NEGATIVE, for logging
    graph: Tensor  # (n, n) signed, A x B, on the device the sampler was asked for
    graph_aa: Tensor | None  # (n, n) signed, A x A (contrastive losses only)
    graph_bb: Tensor | None


def relation(
    snap: GraphSnapshot, rows_u: np.ndarray | Tensor, rows_v: np.ndarray | Tensor, device: torch.device | None = None
) -> Tensor:
    """(len(u), len(v)) float32 on ``device`` (default CPU): +1 same item or component,
    -1 cannot-linked, 0 unknown. Built where the loss runs: on a GPU, shipping an n x n matrix
    from the host every step would cost more than the matrix itself."""
    device = device or torch.device("cpu")
    labels, keys = snap.on_device(device)
    lu = labels[torch.as_tensor(rows_u).to(device)][:, None]  # (u, 1)
    lv = labels[torch.as_tensor(rows_v).to(device)][None, :]  # (1, v)
    same = lu == lv
    out = same.float()
    if keys.numel():
        out -= (torch.isin(lu * snap.n_labels + lv, keys) & ~same).float()
    return out


@dataclass(frozen=True)
class MixSettings:
    human_fraction: float = 0.5  # share of pairs drawn from human edges, once there are any
    closure_fraction: float = 0.5  # share of human + pairs drawn inside components, not asserted
    negative_fraction: float = 0.25  # share of human pairs that are - edges (contrastive losses)


class PairSampler:
    def __init__(self, n_items: int, batch_size: int, mix: MixSettings, seed: int = 0) -> None:
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (per-branch statistics); got {batch_size}")
        self.n_items, self.batch_size, self.mix = n_items, batch_size, mix
        self.rng = np.random.default_rng(seed)

    def counts(self, snap: GraphSnapshot, use_negatives: bool) -> tuple[int, int, int]:
        """(augmentation, human +, human -) pairs in a batch."""
        n = self.batch_size
        human = round(n * self.mix.human_fraction) if snap.has_positives or snap.has_negatives else 0
        negative = round(human * self.mix.negative_fraction) if use_negatives and snap.has_negatives else 0
        if not snap.has_positives:
            negative = min(human, negative)
            human = negative
        return n - human, human - negative, negative

    def _weighted(self, weights: np.ndarray, k: int) -> np.ndarray:
        capped = np.minimum(weights, 1.0)
        return self.rng.choice(len(weights), size=k, p=capped / capped.sum())

    def _positive_pairs(self, snap: GraphSnapshot, k: int) -> np.ndarray:
        from_closure = self.rng.random(k) < self.mix.closure_fraction if snap.components else np.zeros(k, bool)
        pairs = np.empty((k, 2), dtype=np.int64)
        asserted = np.flatnonzero(~from_closure)
        pairs[asserted] = snap.positives[self._weighted(snap.positive_weights, len(asserted))]
        closure = np.flatnonzero(from_closure)
        if len(closure):
            # A uniform component, then two distinct uniform members of it.
            members, starts, sizes = snap.flat_components
            comp = self.rng.integers(len(sizes), size=len(closure))
            size = sizes[comp]
            i = (self.rng.random(len(closure)) * size).astype(np.int64)
            j = (self.rng.random(len(closure)) * (size - 1)).astype(np.int64)
            j += j >= i
            pairs[closure, 0] = members[starts[comp] + i]
            pairs[closure, 1] = members[starts[comp] + j]
        return pairs

    def sample(
        self, snap: GraphSnapshot, use_negatives: bool, within_branch: bool = False, device: torch.device | None = None
    ) -> PairBatch:
        n_aug, n_pos, n_neg = self.counts(snap, use_negatives)
        aug = self.rng.choice(self.n_items, size=n_aug, replace=n_aug > self.n_items)
        parts = [np.stack([aug, aug], axis=1)]
        if n_pos:
            parts.append(self._positive_pairs(snap, n_pos))
        if n_neg:
            parts.append(snap.negatives[self._weighted(snap.negative_weights, n_neg)])
        pairs = np.concatenate(parts)  # (n, 2)
        swap = self.rng.random(len(pairs)) < 0.5  # either end may land in either branch
        pairs[swap] = pairs[swap, ::-1]
        kinds = np.repeat([AUGMENTATION, HUMAN_POSITIVE, HUMAN_NEGATIVE], [n_aug, n_pos, n_neg])
        rows_a, rows_b = pairs[:, 0].copy(), pairs[:, 1].copy()
        return PairBatch(
            rows_a=rows_a,
            rows_b=rows_b,
            kinds=kinds,
            graph=relation(snap, rows_a, rows_b, device),
            graph_aa=relation(snap, rows_a, rows_a, device) if within_branch else None,
            graph_bb=relation(snap, rows_b, rows_b, device) if within_branch else None,
        )
