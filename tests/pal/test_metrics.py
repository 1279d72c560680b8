"""Tests for pal.metrics: kNN accuracy, k-means, Hungarian-matched cluster accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pal.metrics import (
    cluster_accuracy,
    cluster_class_mapping,
    hungarian_accuracy,
    kmeans,
    knn_accuracy,
    knn_predict,
    label_accuracy,
)


def _blobs(
    n_per_class: int, n_classes: int, dim: int = 16, spread: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian blobs around orthogonal directions (cosine-separable)."""
    rng = np.random.default_rng(seed)
    centers = np.eye(dim)[:n_classes] * 5.0
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = centers[labels] + spread * rng.normal(size=(labels.size, dim))
    perm = rng.permutation(labels.size)
    return x[perm].astype(np.float32), labels[perm]


# --------------------------------------------------------------------------- hungarian_accuracy


def test_hungarian_accuracy_perfect_clustering_is_one() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert hungarian_accuracy(labels, labels) == 1.0


def test_hungarian_accuracy_permuted_cluster_ids_is_one() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    clusters = np.array([7, 7, 3, 3, 11, 11, 11])
    assert hungarian_accuracy(clusters, labels) == 1.0


def test_hungarian_accuracy_one_error_counts_once() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    clusters = np.array([5, 5, 9, 9, 9, 9])
    assert hungarian_accuracy(clusters, labels) == pytest.approx(5 / 6)


def test_hungarian_accuracy_singleton_clusters_score_only_c_items() -> None:
    labels = np.repeat(np.arange(4), 25)  # 100 items, 4 classes
    clusters = np.arange(100)  # every item alone
    assert hungarian_accuracy(clusters, labels) == pytest.approx(4 / 100)


def test_hungarian_accuracy_extra_clusters_count_as_wrong() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # Class 0 split into two pure clusters: only one of them can be mapped to class 0.
    clusters = np.array([0, 0, 2, 2, 1, 1, 1, 1])
    assert hungarian_accuracy(clusters, labels) == pytest.approx(6 / 8)


def test_hungarian_accuracy_negative_cluster_ids_count_as_wrong() -> None:
    labels = np.array([0, 0, 1, 1])
    clusters = np.array([0, -1, 1, 1])
    assert hungarian_accuracy(clusters, labels) == pytest.approx(3 / 4)


def test_hungarian_accuracy_all_unassigned_is_zero() -> None:
    assert hungarian_accuracy(np.full(5, -1), np.arange(5)) == 0.0


def test_hungarian_accuracy_fewer_clusters_than_classes_maps_each_once() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    clusters = np.zeros(6, dtype=int)  # one cluster for everything
    assert hungarian_accuracy(clusters, labels) == pytest.approx(2 / 6)


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(min_value=0, max_value=30), st.integers(min_value=0, max_value=4)),
        min_size=1,
        max_size=60,
    )
)
def test_hungarian_accuracy_any_clustering_at_most_share_of_c_largest(data: list[tuple[int, int]]) -> None:
    clusters = np.array([c for c, _ in data])
    labels = np.array([y for _, y in data])
    n_classes = np.unique(labels).size
    sizes = np.sort(np.bincount(clusters))[::-1]
    bound = sizes[:n_classes].sum() / len(data)
    acc = hungarian_accuracy(clusters, labels)
    assert 0.0 <= acc <= bound + 1e-12
    # Renaming clusters never changes the score.
    renamed = (clusters * 7 + 3) % 1009
    assert hungarian_accuracy(renamed, labels) == pytest.approx(acc)


def test_hungarian_accuracy_string_labels_are_accepted() -> None:
    labels = np.array(["cat", "cat", "dog", "dog"])
    assert hungarian_accuracy(np.array([1, 1, 0, 0]), labels) == 1.0


def test_hungarian_accuracy_length_mismatch_raises_with_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3,\).*4"):
        hungarian_accuracy(np.zeros(3, dtype=int), np.zeros(4, dtype=int))


def test_hungarian_accuracy_2d_input_raises_with_shape() -> None:
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        hungarian_accuracy(np.zeros((2, 2), dtype=int), np.zeros(4, dtype=int))


def test_hungarian_accuracy_float_clusters_raise() -> None:
    with pytest.raises(ValueError, match="integers"):
        hungarian_accuracy(np.zeros(3), np.zeros(3, dtype=int))


def test_hungarian_accuracy_empty_input_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        hungarian_accuracy(np.zeros(0, dtype=int), np.zeros(0, dtype=int))


def test_cluster_class_mapping_maps_at_most_c_clusters() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    clusters = np.array([4, 4, 8, 6, 6, 6, 6])
    assert cluster_class_mapping(clusters, labels) == {4: 0, 6: 1}


# --------------------------------------------------------------------------- label_accuracy


def test_label_accuracy_string_cluster_labels_perfect_is_one() -> None:
    clusters = ["c-17", "c-17", "c-3", "c-3", "c-9"]
    labels = ["Coat", "Coat", "Bag", "Bag", "Shirt"]
    assert label_accuracy(clusters, labels) == 1.0


def test_label_accuracy_none_and_negative_mean_no_cluster() -> None:
    clusters = [None, 5, 5, -1, 9, 9]
    labels = [0, 0, 0, 1, 1, 1]
    assert label_accuracy(clusters, labels) == pytest.approx(4 / 6)


def test_label_accuracy_singletons_cannot_exceed_share_of_c_largest() -> None:
    labels = [i % 3 for i in range(30)]
    clusters = [f"item-{i}" for i in range(30)]
    assert label_accuracy(clusters, labels) == pytest.approx(3 / 30)


def test_label_accuracy_matches_hungarian_accuracy_on_integers() -> None:
    rng = np.random.default_rng(1)
    clusters = rng.integers(0, 12, 200)
    labels = rng.integers(0, 5, 200)
    assert label_accuracy(clusters, labels) == pytest.approx(hungarian_accuracy(clusters, labels))


def test_label_accuracy_none_ground_truth_raises() -> None:
    with pytest.raises(ValueError, match="None"):
        label_accuracy([0, 1], [0, None])


def test_label_accuracy_length_mismatch_raises_with_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        label_accuracy([0, 1], [0, 1, 1])


# --------------------------------------------------------------------------- kNN


def test_knn_accuracy_separable_data_is_one() -> None:
    x, y = _blobs(60, 5)
    assert knn_accuracy(x[:200], y[:200], x[200:], y[200:], k=20) == 1.0


def test_knn_accuracy_weighted_separable_data_is_one() -> None:
    x, y = _blobs(60, 5)
    assert knn_accuracy(x[:200], y[:200], x[200:], y[200:], k=20, temperature=0.07) == 1.0


def test_knn_accuracy_random_data_is_near_chance() -> None:
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(3000, 32)), rng.normal(size=(2000, 32))
    y_train, y_test = rng.integers(0, 10, 3000), rng.integers(0, 10, 2000)
    acc = knn_accuracy(train, y_train, test, y_test, k=20)
    assert abs(acc - 0.1) < 0.03  # binomial sd at n=2000 is about 0.007


def test_knn_accuracy_is_scale_invariant() -> None:
    rng = np.random.default_rng(3)
    train, test = rng.normal(size=(300, 8)), rng.normal(size=(100, 8))
    y_train, y_test = rng.integers(0, 3, 300), rng.integers(0, 3, 100)
    scales = rng.uniform(0.1, 10.0, size=(300, 1))
    assert knn_accuracy(train, y_train, test, y_test, k=7) == knn_accuracy(
        train * scales, y_train, test * 3.0, y_test, k=7
    )


def test_knn_predict_blocks_match_single_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import pal.metrics as metrics

    rng = np.random.default_rng(4)
    train, query = rng.normal(size=(500, 8)), rng.normal(size=(300, 8))
    y = rng.integers(0, 4, 500)
    whole = knn_predict(train, y, query, k=9)
    monkeypatch.setattr(metrics, "_BLOCK_ELEMS", 500 * 7)  # 7 query rows per block
    assert np.array_equal(knn_predict(train, y, query, k=9), whole)


def test_knn_predict_plain_vote_matches_reference_loop() -> None:
    rng = np.random.default_rng(5)
    train, query = rng.normal(size=(200, 6)), rng.normal(size=(50, 6))
    y = rng.integers(0, 4, 200)
    pred = knn_predict(train, y, query, k=5)
    tn = train / np.linalg.norm(train, axis=1, keepdims=True)
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    for i in range(len(query)):
        sim = tn @ qn[i]
        nn = np.argsort(-sim)[:5]
        votes = np.bincount(y[nn], minlength=4)
        tied = np.flatnonzero(votes == votes.max())
        sums = [sim[nn][y[nn] == c].sum() for c in tied]
        assert pred[i] == tied[int(np.argmax(sums))]


def test_knn_predict_tie_goes_to_more_similar_class() -> None:
    train = np.array([[1.0, 0.0], [0.0, 1.0]])
    query = np.array([[0.9, 0.1]])
    assert knn_predict(train, np.array([3, 8]), query, k=2)[0] == 3


def test_knn_predict_leave_one_out_excludes_self() -> None:
    # Each point's nearest other point has the other label: LOO with k=1 is always wrong.
    x = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    y = np.array([0, 1, 2, 3])
    assert np.array_equal(knn_predict(x, y, x, k=1), y)
    assert not np.any(knn_predict(x, y, x, k=1, leave_one_out=True) == y)


def test_knn_predict_keeps_label_values_and_dtype() -> None:
    x, y = _blobs(10, 3)
    names = np.array(["bag", "coat", "shirt"])[y]
    pred = knn_predict(x, names, x, k=3)
    assert pred.dtype == names.dtype
    assert np.array_equal(pred, names)


def test_knn_predict_k_larger_than_train_is_clamped() -> None:
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    y = np.array([0, 0, 1])
    assert knn_predict(x, y, np.array([[0.0, 1.0]]), k=50)[0] == 0


def test_knn_accuracy_dimension_mismatch_raises_with_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(10, 4\).*\(5, 3\)"):
        knn_accuracy(np.ones((10, 4)), np.zeros(10), np.ones((5, 3)), np.zeros(5))


def test_knn_accuracy_label_length_mismatch_raises_with_shapes() -> None:
    with pytest.raises(ValueError, match=r"train_labels.*\(9,\).*10"):
        knn_accuracy(np.ones((10, 4)), np.zeros(9), np.ones((5, 4)), np.zeros(5))
    with pytest.raises(ValueError, match=r"test_labels.*\(4,\).*5"):
        knn_accuracy(np.ones((10, 4)), np.zeros(10), np.ones((5, 4)), np.zeros(4))


def test_knn_accuracy_1d_embedding_raises_with_shape() -> None:
    with pytest.raises(ValueError, match=r"train_emb.*\(10,\)"):
        knn_accuracy(np.ones(10), np.zeros(10), np.ones((5, 4)), np.zeros(5))


def test_knn_accuracy_nan_embedding_raises() -> None:
    train = np.ones((10, 4))
    train[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        knn_accuracy(train, np.zeros(10), np.ones((5, 4)), np.zeros(5))


def test_knn_accuracy_bad_k_raises() -> None:
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(np.ones((10, 4)), np.zeros(10), np.ones((5, 4)), np.zeros(5), k=0)


# --------------------------------------------------------------------------- kmeans / cluster_accuracy


def test_kmeans_separated_blobs_recovers_clusters() -> None:
    x, y = _blobs(50, 4, spread=0.2)
    result = kmeans(x, 4, seed=0, n_init=1)
    assert result.centroids.shape == (4, x.shape[1])
    assert result.labels.shape == (x.shape[0],)
    assert hungarian_accuracy(result.labels, y) == 1.0


def test_kmeans_same_seed_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    a, b = kmeans(x, 6, seed=3), kmeans(x, 6, seed=3)
    assert np.array_equal(a.labels, b.labels)
    assert a.inertia == b.inertia


def test_kmeans_inertia_matches_labels_and_centroids() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3))
    res = kmeans(x, 5, seed=1)
    d = ((x[:, None, :] - res.centroids[None]) ** 2).sum(-1)
    assert np.array_equal(res.labels, d.argmin(1))
    assert res.inertia == pytest.approx(d.min(1).sum())


def test_kmeans_more_inits_never_worse() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(500, 4))
    one = kmeans(x, 8, seed=0, n_init=1)
    many = kmeans(x, 8, seed=0, n_init=6)  # the first run is the same as `one`
    assert many.inertia <= one.inertia + 1e-9


def test_kmeans_duplicate_points_keep_k_clusters_valid() -> None:
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    res = kmeans(x, 4, seed=0)
    assert res.labels.min() >= 0 and res.labels.max() < 4
    assert res.inertia == pytest.approx(0.0)


def test_kmeans_k_equal_to_n_gives_zero_inertia() -> None:
    x = np.random.default_rng(0).normal(size=(12, 3))
    res = kmeans(x, 12, seed=0)
    assert res.inertia == pytest.approx(0.0, abs=1e-9)
    assert np.unique(res.labels).size == 12


def test_kmeans_bad_k_raises_with_shape() -> None:
    with pytest.raises(ValueError, match=r"\(5, 2\).*k=6"):
        kmeans(np.zeros((5, 2)), 6)


def test_cluster_accuracy_separable_embedding_is_one() -> None:
    x, y = _blobs(40, 6)
    assert cluster_accuracy(x, y) == 1.0


def test_cluster_accuracy_many_clusters_cannot_exceed_share_of_c_largest() -> None:
    x, y = _blobs(30, 3, spread=0.5)
    acc = cluster_accuracy(x, y, n_clusters=45, seed=0)
    res = kmeans(x / np.linalg.norm(x, axis=1, keepdims=True), 45, seed=0)
    bound = np.sort(np.bincount(res.labels))[::-1][:3].sum() / len(y)
    assert acc <= bound + 1e-12
    assert acc < 0.5


def test_cluster_accuracy_random_embedding_is_low() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2000, 16)), rng.integers(0, 10, 2000)
    assert cluster_accuracy(x, y) < 0.2


def test_cluster_accuracy_label_length_mismatch_raises_with_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(7,\).*8"):
        cluster_accuracy(np.ones((8, 2)), np.zeros(7))
