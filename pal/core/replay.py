"""Replay fingerprint: a tag for benchmark results that follows behaviour, not source bytes.

A fixed, seeded stream of answers goes through the labelling core and each oracle strategy: the
oracle chooses a grid from the graph and a fixed embedding, a simulated annotator (right about
most candidates, wrong about some, one of three people whose reliability weights change over the
run) answers it, its edges enter the graph, some answers are undone and known-label edges arrive.
The hash of every chosen grid, the exported labels and confidences, the contradictions and the
graph's figures is the fingerprint. A refactor leaves it unchanged; a change of what PAL asks or
exports changes it.

``python -m pal.core.replay`` prints it (one hash for all strategies, then one per strategy).
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import numpy as np

from pal.core.edges import EdgeKind, EdgeRecord
from pal.core.oracle import NoTaskAvailable, OracleCache, OracleContext, get_oracle
from pal.core.replica import GraphReplica

STRATEGIES = ("active", "random", "uncertainty")
N_ITEMS, N_KINDS, DIM = 600, 8, 16
STEPS = 160
ERROR = 0.1  # chance that a candidate's mark is wrong
ANNOTATORS = 3
UNDO_IDS = 10**9


def _dataset(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(10 * N_ITEMS, size=N_ITEMS, replace=False)).astype(np.int64) + 1
    kinds = rng.integers(0, N_KINDS, size=N_ITEMS)
    centres = rng.normal(size=(N_KINDS, DIM))
    first = (centres[kinds] + 1.2 * rng.normal(size=(N_ITEMS, DIM))).astype(np.float32)
    second = (centres[kinds] + 0.6 * rng.normal(size=(N_ITEMS, DIM))).astype(np.float32)
    pixels = (centres[kinds, :8] + 2.0 * rng.normal(size=(N_ITEMS, 8))).astype(np.float32)
    return ids, kinds, first, second, pixels


def replay(strategy: str, seed: int = 0) -> str:
    """The fingerprint of one strategy's replay (hex sha256)."""
    ids, kinds, first, second, pixels = _dataset(seed)
    kind_of = dict(zip(ids.tolist(), kinds.tolist(), strict=True))
    replica = GraphReplica(weigh_annotators=True)
    graph = replica.graph
    cache = OracleCache()
    oracle = get_oracle(strategy)
    oracle_rng = np.random.default_rng([seed, 1])
    answer_rng = np.random.default_rng([seed, 2])
    digest = hashlib.sha256()
    next_edge = 1
    answered: list[list[int]] = []
    for step in range(STEPS):
        embedding, version = (None, None) if step < 20 else ((first, 1) if step < 90 else (second, 2))
        ctx = OracleContext(
            n_candidates=8, item_ids=ids, graph=graph, rng=oracle_rng, target_match_share=0.5,
            gold_rate=0.1, embedding=embedding, pixel_features=pixels if embedding is None else None,
            embedding_version=version, cache=cache,
        )
        try:
            spec = oracle.select(ctx)
        except NoTaskAvailable:
            digest.update(f"{step}:done\n".encode())
            continue
        gold = sorted((spec.gold or {}).items())
        digest.update(json.dumps([step, spec.reference, spec.candidates, gold]).encode())
        # Every third grid is answered by all three annotators (redundancy), the others by one.
        for annotator in range(ANNOTATORS) if step % 3 == 0 else (step % ANNOTATORS,):
            edges = []
            for c in spec.candidates:
                same = kind_of[c] == kind_of[spec.reference]
                if answer_rng.random() < ERROR * (1 + annotator):
                    same = not same
                replica.apply([EdgeRecord(next_edge, spec.reference, c, 1 if same else -1, annotator_id=annotator)])
                edges.append(next_edge)
                next_edge += 1
            answered.append(edges)
        if step % 23 == 22:  # an undo of the previous answer
            # Retraction rows are numbered apart so that answer edge ids do not depend on them.
            undo = [EdgeRecord(UNDO_IDS + edge_id, 0, 0, 0, kind=EdgeKind.RETRACT, retracts_id=edge_id)
                    for edge_id in answered[-2]]
            replica.apply(undo)
        if step % 31 == 30:  # a known label: a heavy edge between two items of one kind
            a, b = (int(x) for x in answer_rng.choice(ids[kinds == step % N_KINDS], size=2, replace=False))
            replica.apply([EdgeRecord(next_edge, a, b, 1, 5.0, EdgeKind.KNOWN)])
            next_edge += 1
        if step % 40 == 39:
            replica.set_annotator_weight(ANNOTATORS - 1, round(1.0 - 0.1 * (step // 40), 3))
        if step % 40 == 39 or step == STEPS - 1:
            labels, conf = graph.cluster_assignment(ids, embedding)
            digest.update(labels.astype(np.int64).tobytes())
            digest.update(conf.astype(np.float32).tobytes())
            flagged = [(c.edge_id, c.reason) for c in graph.contradictions()]
            digest.update(json.dumps(flagged).encode())
            stats: dict[str, Any] = graph.stats()
            digest.update(json.dumps(stats, sort_keys=True).encode())
    return digest.hexdigest()


def fingerprint(seed: int = 0) -> dict[str, str]:
    """``{"replay": combined, strategy: own, ...}``, each a 12-hex-digit prefix of a sha256."""
    own = {s: replay(s, seed) for s in STRATEGIES}
    combined = hashlib.sha256("".join(own[s] for s in STRATEGIES).encode()).hexdigest()
    return {"replay": combined[:12], **{s: h[:12] for s, h in own.items()}}


def main() -> int:
    print(json.dumps(fingerprint(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
