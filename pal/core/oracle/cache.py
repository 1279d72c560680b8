"""What the oracle keeps between selections, one :class:`OracleCache` per project.

The server creates it with the project's state and passes it as ``OracleContext.cache`` on every
selection. Everything in it is derived data, rebuilt on demand:

- the :class:`~pal.core.oracle.neighbours.VectorSpace` of the current embedding version (or of the
  pixel features before the first version), keyed by ``(source, version, N)``; a new version or
  new items rebuild it on the next selection (about 1 s at 1M x 128 on 2 cores: the server may
  call :meth:`OracleCache.prepare` in a worker thread as soon as it loads a version);
- the anchor table (exemplar vectors of the known clusters), refreshed per graph version for the
  clusters whose size changed only;
- the seed-label index and the list of trusted graph pairs for controls;
- the observed match rates of the oracle's "likely" and "boundary" picks, to aim at the
  project's target match share.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np

from pal.core.graph import KnowledgeGraph
from pal.core.oracle.neighbours import DEFAULT_BLOCK_ROWS, VectorSpace

# Exemplar budget over all clusters: scoring a 1024-item sample against them stays ~1 ms.
EXEMPLAR_BUDGET = 1024


@dataclass
class AnchorTable:
    """Known clusters (size >= 2) as seen from one vector space, each with the same number E of
    exemplars (sampled members, repeated for clusters smaller than E) so that scoring against
    them is one matmul and one reshape."""

    roots: np.ndarray  # (A,) int64 root item id of each cluster
    sizes: np.ndarray  # (A,) int64
    ex_rows: np.ndarray  # (A, E) rows of each cluster's exemplars
    ex_vecs: np.ndarray  # (E * A, D) their normalised vectors, exemplar-major: row e * A + a

    @property
    def n(self) -> int:
        return len(self.roots)

    @property
    def per(self) -> int:
        return self.ex_rows.shape[1] if self.ex_rows.ndim == 2 else 0

    def scores(self, vecs: np.ndarray) -> np.ndarray:
        """(s, A): best cosine of each vector to each cluster's exemplars."""
        a = self.n
        if a == 0:
            return np.zeros((len(vecs), 0), dtype=np.float32)
        sims = vecs @ self.ex_vecs.T  # (s, E * A)
        # Exemplar-major columns: a max over E contiguous (s, A) slices, far faster than a
        # reduction over a short last axis.
        best = sims[:, :a].copy()
        for e in range(1, self.per):
            np.maximum(best, sims[:, e * a : (e + 1) * a], out=best)
        return best


class MatchRateTracker:
    """How often the oracle's "likely" and "boundary" candidates turn out to match.

    Picks are remembered when issued; once the graph holds a vote on the pair they are scored.
    Beta priors keep the estimates sane before enough answers arrive."""

    def __init__(self, prior_likely: float = 0.6, prior_boundary: float = 0.2, strength: float = 8.0) -> None:
        self._pending: deque[tuple[int, int, bool]] = deque(maxlen=4096)
        self._hits = {True: prior_likely * strength, False: prior_boundary * strength}
        self._total = {True: strength, False: strength}
        self._calls = 0

    def record(self, reference: int, likely: list[int], boundary: list[int]) -> None:
        self._pending.extend((reference, c, True) for c in likely)
        self._pending.extend((reference, c, False) for c in boundary)

    def update(self, graph: KnowledgeGraph) -> None:
        self._calls += 1
        if self._calls % 4 and len(self._pending) < 1024:
            return  # scoring is cheap but not free: batch it
        keep: deque[tuple[int, int, bool]] = deque(maxlen=self._pending.maxlen)
        for ref, cand, likely in self._pending:
            if not graph.pair_asked(ref, cand):
                keep.append((ref, cand, likely))
                continue
            votes = graph.pair_votes(ref, cand)
            if votes == 0.0:
                continue  # tied or split: no outcome to count
            # Exponential forgetting: the embedding improves, old rates go stale.
            self._hits[likely] = 0.995 * self._hits[likely] + (1.0 if votes > 0 else 0.0)
            self._total[likely] = 0.995 * self._total[likely] + 1.0
        self._pending = keep

    def rates(self) -> tuple[float, float]:
        return self._hits[True] / self._total[True], self._hits[False] / self._total[False]


class DiscoveryTracker:
    """Outcomes of discovery grids (a novel item against the nearest known clusters and its own
    neighbours). One *succeeds* when its reference matches none of the clusters' members and at
    least one neighbour: a new cluster. After ``patience`` failures in a row the oracle stops
    trying (every kind has a cluster, as far as the embedding can tell); one pending grid at a
    time, so that each is judged before the next."""

    def __init__(self, patience: int = 3, every: int = 4) -> None:
        self.patience = patience
        # At most one discovery grid in ``every`` tasks: the others grow what is known.
        self.every = every
        self.failures = 0
        self.tries = 0
        self._since = every
        self._pending: list[tuple[int, list[int], list[int]]] = []

    @property
    def open(self) -> bool:
        return self.failures < self.patience and not self._pending and self._since >= self.every

    def tick(self) -> None:
        self._since += 1

    def record(self, reference: int, members: list[int], neighbours: list[int]) -> None:
        self._pending.append((reference, members, neighbours))
        self.tries += 1
        self._since = 0

    def update(self, graph: KnowledgeGraph) -> None:
        keep = []
        for ref, members, neighbours in self._pending:
            if not any(graph.pair_asked(ref, c) for c in members + neighbours):
                keep.append((ref, members, neighbours))  # not answered yet
                continue
            new_kind = all(graph.relation(ref, m) < 0 for m in members) and any(
                graph.relation(ref, c) > 0 for c in neighbours
            )
            self.failures = 0 if new_kind else self.failures + 1
        self._pending = keep


class OracleCache:
    def __init__(self, *, block_rows: int = DEFAULT_BLOCK_ROWS, max_exemplars: int = 8, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.block_rows = block_rows
        self.max_exemplars = max_exemplars
        self.seed = seed
        self._space_key: tuple[object, ...] | None = None
        self._space: VectorSpace | None = None
        self._anchor_key: tuple[int, int] | None = None
        self._anchors: AnchorTable | None = None
        self._exemplars: dict[int, tuple[int, np.ndarray]] = {}  # root -> (size, exemplar rows)
        self._seed_key: tuple[int, int] | None = None
        self._seed_index: dict[Hashable, np.ndarray] = {}
        self._trusted_version = -(10**9)
        self._trusted: list[tuple[int, int, int]] = []
        self.match_rates = MatchRateTracker()
        self.discovery = DiscoveryTracker()
        # Checks of cluster pairs that may be one kind (see ``fragments``): {roots: times asked}.
        self.fragment_checks: dict[frozenset[int], int] = {}

    # ---------------------------------------------------------------- vector space

    def prepare(
        self, item_ids: np.ndarray, vectors: np.ndarray, version: object, source: str = "embedding"
    ) -> VectorSpace:
        """The space for these vectors, built now if the version (or the item count) changed."""
        key = (source, version, len(item_ids))
        with self.lock:
            if self._space is None or self._space_key != key:
                self._space = VectorSpace(item_ids, vectors, block_rows=self.block_rows, seed=self.seed)
                self._space_key = key
                self._anchor_key = None
                self._anchors = None
                self._exemplars = {}
            return self._space

    # ---------------------------------------------------------------- anchors

    def anchors(self, graph: KnowledgeGraph, space: VectorSpace, rng: np.random.Generator) -> AnchorTable:
        """Exemplars of every known cluster; only clusters whose size changed are resampled."""
        key = (id(space), graph.version)
        with self.lock:
            if self._anchors is not None and self._anchor_key == key:
                return self._anchors
            sizes = graph.cluster_sizes()
            per = int(np.clip(EXEMPLAR_BUDGET // max(len(sizes), 1), 1, self.max_exemplars))
            fresh: dict[int, tuple[int, np.ndarray]] = {}
            for root, size in sizes.items():
                old = self._exemplars.get(root)
                if old is not None and old[0] == size and len(old[1]) == per:
                    fresh[root] = old
                    continue
                rows = space.rows_of(graph.sample_members(root, per, rng))
                rows = rows[rows >= 0]
                # Stored already cycled to ``per`` rows (clusters smaller than ``per`` repeat).
                fresh[root] = (size, np.resize(rows, per) if len(rows) else rows)
            self._exemplars = fresh
            roots = [r for r, (_, rows) in fresh.items() if len(rows)]
            ex_rows = np.stack([fresh[r][1] for r in roots]) if roots else np.zeros((0, per), dtype=np.int64)
            table = AnchorTable(
                roots=np.asarray(roots, dtype=np.int64),
                sizes=np.asarray([fresh[r][0] for r in roots], dtype=np.int64),
                ex_rows=ex_rows,
                ex_vecs=space.vec(ex_rows.T.ravel()) if len(roots) else np.zeros((0, space.dim), np.float32),
            )
            self._anchors, self._anchor_key = table, key
            return table

    # ---------------------------------------------------------------- controls

    def seed_index(self, seed_labels: Mapping[int, Hashable]) -> dict[Hashable, np.ndarray]:
        """``{label: item ids}`` of the seed labels (rebuilt when the mapping changes)."""
        key = (id(seed_labels), len(seed_labels))
        with self.lock:
            if self._seed_key != key:
                index: dict[Hashable, list[int]] = {}
                for item, label in seed_labels.items():
                    index.setdefault(label, []).append(int(item))
                self._seed_index = {lab: np.asarray(v, dtype=np.int64) for lab, v in index.items()}
                self._seed_key = key
            return self._seed_index

    def trusted_pairs(
        self, graph: KnowledgeGraph, min_votes: float, max_staleness: int = 64
    ) -> list[tuple[int, int, int]]:
        """Trusted graph pairs, rescanned once the graph moved ``max_staleness`` versions on (a
        stale entry is re-checked with :meth:`KnowledgeGraph.is_pair_trusted` before use)."""
        with self.lock:
            if graph.version - self._trusted_version >= max_staleness:
                self._trusted = graph.trusted_pairs(min_votes)
                self._trusted_version = graph.version
            return self._trusted
