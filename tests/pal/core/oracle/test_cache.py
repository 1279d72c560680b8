"""Vector search, the per-project cache, and the BLAS thread limit."""

from __future__ import annotations

import numpy as np

from pal.core.graph import KnowledgeGraph
from pal.core.oracle import OracleCache
from pal.core.oracle.blas import _openblas_libs, limit_blas_threads
from pal.core.oracle.neighbours import VectorSpace


def _space(n: int = 500, d: int = 16, **kw: int) -> tuple[VectorSpace, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(10**7, size=n, replace=False)).astype(np.int64)
    vecs = rng.standard_normal((n, d)).astype(np.float32)
    return VectorSpace(ids, vecs, center=False, **kw), ids, vecs


def test_vector_space_search_is_exact_within_one_block() -> None:
    space, _, vecs = _space()
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    rows, _ = space.search(unit[:3], 10)
    expected = np.argsort(-(unit[:3] @ unit.T), axis=1)[:, :10]
    np.testing.assert_array_equal(rows, expected)


def test_vector_space_blocks_cover_every_row_once() -> None:
    space, _, _ = _space(n=1000, block_rows=300)
    seen = np.concatenate([space.block()[0] for _ in range(space.n_blocks)])
    assert space.n_blocks == 4 and sorted(seen.tolist()) == list(range(1000))


def test_vector_space_rows_of_unknown_ids_is_minus_one() -> None:
    space, ids, _ = _space()
    rows = space.rows_of(np.array([ids[7], -5]))
    assert rows.tolist() == [7, -1]


def test_cache_rebuilds_space_only_for_a_new_version() -> None:
    cache = OracleCache()
    _, ids, vecs = _space()
    first = cache.prepare(ids, vecs, version=1)
    assert cache.prepare(ids, vecs, version=1) is first
    assert cache.prepare(ids, vecs, version=2) is not first


def test_cache_resamples_exemplars_only_for_changed_clusters() -> None:
    cache = OracleCache()
    space, ids, vecs = _space()
    g = KnowledgeGraph()
    g.add_edge(1, int(ids[0]), int(ids[1]), 1)
    g.add_edge(2, int(ids[2]), int(ids[3]), 1)
    rng = np.random.default_rng(0)
    before = cache.anchors(g, space, rng)
    g.add_edge(3, int(ids[2]), int(ids[4]), 1)
    after = cache.anchors(g, space, rng)
    unchanged = int(np.flatnonzero(before.roots == g.find(int(ids[0])))[0])
    same = int(np.flatnonzero(after.roots == g.find(int(ids[0])))[0])
    np.testing.assert_array_equal(before.ex_rows[unchanged], after.ex_rows[same])
    assert after.sizes.tolist().count(3) == 1


def test_limit_blas_threads_restores_the_thread_count() -> None:
    libs = _openblas_libs()
    before = [get() for _, get in libs]
    with limit_blas_threads(1):
        assert all(get() == 1 for _, get in libs)
        with limit_blas_threads(1):
            pass
        assert all(get() == 1 for _, get in libs)
    assert [get() for _, get in libs] == before
