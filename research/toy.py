"""The concentric-circles toy of pal-math.md ("The paper's active oracle"), as a reusable harness.

Setup (the paper's toy code, facebookresearch/pal ``active_ssl/active.ipynb`` over the
``facebookresearch/rates`` helpers): 4 rings of radii 1..4, Gaussian noise 0.1, N = 150 training
points with random ring and angle, 1000 evenly spread test points; exponential kernel
``exp(-|x - x'| / sigma)``, sigma = 0.2; the embedding is the kernel spectral embedding of the
current graph T (top K = 5 eigenvectors v of ``T - lambda K^+``, lambda = 1e-3; rows of
``K K^+ v``), recomputed after every task as a trainer would; the oracle sees only it.

What differs from the paper's measurement, on purpose: the error is the test error of a
classifier fit on the *training labels the graph implies* (Gaussian kernel ridge on the input
points, see :meth:`RingsProblem.error`), where the paper fits its linear probe on the test labels,
which measures the embedding rather than the labels. As in the paper, one item per class is
known at the start: the seeds enter the graph as cannot-links between them, and an item is
labelled when the graph links it to a seed. Each candidate of a task counts as one binary
query. The simulated annotator answers every grid correctly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh, pinvh

from pal.core.graph import KnowledgeGraph
from pal.core.oracle.base import NoTaskAvailable, Oracle, OracleContext
from pal.core.oracle.blas import limit_blas_threads
from pal.core.oracle.cache import OracleCache

# pal-math.md, "The paper's active oracle": binary queries -> test error (100 trials).
PAPER_ACTIVE = {50: 0.476, 100: 0.345, 200: 0.140, 300: 0.044, 400: 0.023}
PAPER_PASSIVE = {50: 0.562, 100: 0.504, 200: 0.385, 300: 0.284, 400: 0.195}
SEED_EDGE_IDS = 10**9  # ids of the seed edges, far from the answers' ids


@dataclass(frozen=True)
class ToyConfig:
    n_train: int = 150
    n_test: int = 1000
    rings: int = 4
    noise: float = 0.1
    sigma: float = 0.2
    lam: float = 1e-3
    dim: int = 5
    # Classifier scored at each checkpoint: Gaussian kernel ridge on the input points.
    probe_bandwidth: float = 0.5
    probe_ridge: float = 1e-3
    n_candidates: int = 8
    checkpoints: tuple[int, ...] = (50, 100, 200, 300, 400)
    target_match_share: float = 0.5


def circles(n: int, rng: np.random.Generator, rings: int, noise: float, test: bool) -> tuple[np.ndarray, np.ndarray]:
    """Points on ``rings`` concentric circles and their ring index (0-based)."""
    if test:
        r = np.floor(np.arange(n) * rings / n)
        theta = np.arange(n) * rings / n
    else:
        r = rng.integers(rings, size=n).astype(np.float64)
        theta = rng.random(n)
    radius = r + 1
    theta = theta * 2 * np.pi
    x = np.stack([np.cos(theta), np.sin(theta)], axis=1) * radius[:, None]
    x += noise * rng.standard_normal((n, 2))
    return x, r.astype(np.int64)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def exp_kernel(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-np.sqrt(_sq_dists(a, b)) / sigma)


class RingsProblem:
    """One draw of the toy: data, kernel precomputations, the ground truth and scoring."""

    def __init__(self, cfg: ToyConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.x_test, self.y_test = circles(cfg.n_test, rng, cfg.rings, cfg.noise, test=True)
        self.x, self.y = circles(cfg.n_train, rng, cfg.rings, cfg.noise, test=False)
        n = cfg.n_train
        k = exp_kernel(self.x, self.x, cfg.sigma)
        k_inv = pinvh(k, atol=1e-5 / n) * cfg.lam
        self.k_inv = k_inv
        self.to_train = k @ k_inv  # (n, n): eigenvector coefficients -> embedding of the points
        gauss = 1.0 / (2 * cfg.probe_bandwidth**2)
        self.probe_train = np.exp(-gauss * _sq_dists(self.x, self.x))  # (n, n)
        self.probe_test = np.exp(-gauss * _sq_dists(self.x_test, self.x))  # (n_test, n)
        # Sparse, non-contiguous ids, as a database would hand out.
        self.item_ids = 11 + 3 * np.arange(n, dtype=np.int64)
        # The paper's start: one known item per class (the first of each), known to differ.
        self.seed_rows = np.asarray([int(np.argmax(self.y == c)) for c in range(cfg.rings) if (self.y == c).any()])

    def seeded_graph(self) -> KnowledgeGraph:
        """A graph holding what the seeds say: cannot-links between the seeds of different classes
        (free, as the paper's seeds are; not counted as queries)."""
        graph = KnowledgeGraph()
        seeds = self.item_ids[self.seed_rows].tolist()
        edge_id = SEED_EDGE_IDS
        for i, a in enumerate(seeds):
            for b in seeds[i + 1 :]:
                edge_id += 1
                graph.add_edge(edge_id, a, b, -1)
        return graph

    def row(self, item: int) -> int:
        return (item - 11) // 3

    def truth(self, a: int, b: int) -> bool:
        return bool(self.y[self.row(a)] == self.y[self.row(b)])

    def graph_matrix(self, graph: KnowledgeGraph) -> np.ndarray:
        """T: +1 within a known cluster, -1 across a cannot-link, 1 on the diagonal, else 0."""
        n = self.cfg.n_train
        t = np.eye(n)
        label = self.cluster_labels(graph)
        clusters = [np.flatnonzero(label == c) for c in range(label.max() + 1)]
        for members in clusters:
            t[np.ix_(members, members)] = 1.0
        root_rows: dict[int, np.ndarray] = {}
        for (a, b), _w in graph.cannot_links().items():
            ra = root_rows.setdefault(a, self._rows_of_root(graph, a))
            rb = root_rows.setdefault(b, self._rows_of_root(graph, b))
            t[np.ix_(ra, rb)] = -1.0
            t[np.ix_(rb, ra)] = -1.0
        return t

    def _rows_of_root(self, graph: KnowledgeGraph, root: int) -> np.ndarray:
        return np.asarray([self.row(m) for m in graph.members(root)], dtype=np.int64)

    def cluster_labels(self, graph: KnowledgeGraph) -> np.ndarray:
        """Cluster index per training point for known clusters (size >= 2), -1 elsewhere."""
        label = np.full(self.cfg.n_train, -1, dtype=np.int64)
        for c, members in enumerate(graph.components(min_size=2).values()):
            label[[self.row(m) for m in members]] = c
        return label

    def embed(self, graph: KnowledgeGraph) -> np.ndarray:
        """Kernel spectral embedding of the graph, (n, K): what a trainer would publish."""
        n, k = self.cfg.n_train, self.cfg.dim
        # evx: a handful of eigenpairs of a small matrix, several times faster than the default.
        _, v = eigh(self.graph_matrix(graph) - self.k_inv, subset_by_index=[n - k, n - 1], driver="evx")
        return self.to_train @ v

    def implied_labels(self, graph: KnowledgeGraph) -> np.ndarray:
        """Class per training point as the graph implies it (the class of the seed in its
        cluster; the seeds themselves included), -1 where no seed is linked."""
        label = np.full(self.cfg.n_train, -1, dtype=np.int64)
        for row in self.seed_rows.tolist():
            members = graph.members(int(self.item_ids[row]))
            label[[self.row(m) for m in members]] = self.y[row]
        return label

    def error(self, graph: KnowledgeGraph) -> float:
        """Test error of a classifier fit on the labels the graph implies: Gaussian kernel ridge
        on the input points of the labelled training items. (The paper's linear probe on the
        5-d embedding is fit on the test labels; fit on a few training labels it lags far behind,
        for every strategy alike. This classifier's floor with all 150 labels is ~0.018, under
        the paper's 0.023 plateau.)"""
        label = self.implied_labels(graph)
        known = np.flatnonzero(label >= 0)
        named = label[known]
        onehot = np.eye(self.cfg.rings)[named]
        gram = self.probe_train[np.ix_(known, known)] + self.cfg.probe_ridge * np.eye(len(known))
        coef = np.linalg.solve(gram, onehot)
        pred = np.argmax(self.probe_test[:, known] @ coef, axis=1)
        return float(np.mean(pred != self.y_test))


def run_oracle(
    problem: RingsProblem, oracle: Oracle, rng: np.random.Generator, budget: int | None = None
) -> dict[int, float]:
    """Drive ``oracle`` with a perfect annotator; error at each checkpoint (after the last task
    that fits within that many binary queries)."""
    cfg = problem.cfg
    budget = budget if budget is not None else max(cfg.checkpoints)
    graph = problem.seeded_graph()
    cache = OracleCache()
    edge_id = 0
    queries = 0
    errors: dict[int, float] = {}
    pending = sorted(cfg.checkpoints)
    phi = problem.embed(graph)
    version = 0
    task = None
    while pending:
        if task is None:
            ctx = OracleContext(
                n_candidates=cfg.n_candidates,
                item_ids=problem.item_ids,
                graph=graph,
                rng=rng,
                target_match_share=cfg.target_match_share,
                embedding=phi.astype(np.float32),
                embedding_version=version,
                cache=cache,
            )
            try:
                task = oracle.select(ctx)
            except NoTaskAvailable:
                break
        # Score every checkpoint this task would overrun with the state before it.
        while pending and queries + len(task.candidates) > pending[0]:
            errors[pending.pop(0)] = problem.error(graph)
        if not pending or queries >= budget:
            break
        for c in task.candidates:
            edge_id += 1
            graph.add_edge(edge_id, task.reference, c, 1 if problem.truth(task.reference, c) else -1)
        queries += len(task.candidates)
        task = None
        phi = problem.embed(graph)
        version += 1
    for c in pending:
        errors[c] = problem.error(graph)
    return errors


def run_passive_pairs(problem: RingsProblem, rng: np.random.Generator) -> dict[int, float]:
    """Passive baseline: uniformly random distinct pairs, one binary query each."""
    cfg = problem.cfg
    n = cfg.n_train
    iu = np.triu_indices(n, k=1)
    order = rng.permutation(len(iu[0]))
    graph = problem.seeded_graph()
    errors: dict[int, float] = {}
    done = 0
    for checkpoint in sorted(cfg.checkpoints):
        for e in range(done, checkpoint):
            a, b = int(problem.item_ids[iu[0][order[e]]]), int(problem.item_ids[iu[1][order[e]]])
            graph.add_edge(e + 1, a, b, 1 if problem.truth(a, b) else -1)
        done = checkpoint
        errors[checkpoint] = problem.error(graph)
    return errors


def curve(
    make_oracle: Callable[[], Oracle] | None, seeds: int, cfg: ToyConfig | None = None, first_seed: int = 0
) -> dict[int, float]:
    """Mean error per checkpoint over ``seeds`` draws; ``make_oracle=None`` runs the passive
    random-pairs baseline."""
    cfg = cfg or ToyConfig()
    totals = dict.fromkeys(cfg.checkpoints, 0.0)
    with limit_blas_threads(1):  # many tiny LAPACK calls: threads only synchronise
        for s in range(first_seed, first_seed + seeds):
            rng = np.random.default_rng(s)
            problem = RingsProblem(cfg, rng)
            errs = run_passive_pairs(problem, rng) if make_oracle is None else run_oracle(problem, make_oracle(), rng)
            for c in cfg.checkpoints:
                totals[c] += errs[c]
    return {c: totals[c] / seeds for c in cfg.checkpoints}
