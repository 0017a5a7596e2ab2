import numpy as np

from facegallery.recognition import (
    Centroids,
    accuracy_at,
    best_threshold,
    centroid_distances,
    centroids,
    count_factor,
    open_set_answers,
    searchable_centroids,
    searchable_queries,
    squared_distances,
    threshold_sweep,
    top_k,
)


def test_centroids_are_plain_means():
    emb = np.array([[1, 0], [0, 1], [1, 1], [3, 3]], np.float32)
    c = centroids(emb, np.array([0, 0, 1, 1]), 3)
    assert np.allclose(c, [[0.5, 0.5], [2, 2], [0, 0]])


def test_centroid_distances_divide_by_one_plus_one_over_n():
    q = np.array([[1.0, 0.0]], np.float32)
    cents = np.array([[0.0, 1.0], [0.0, 0.5], [0.6, 0.0]], np.float32)
    counts = np.array([1, 4, 100])
    raw = squared_distances(q, cents)
    assert np.allclose(count_factor(counts), [2.0, 1.25, 1.01])
    assert np.allclose(centroid_distances(q, cents, counts), raw / [2.0, 1.25, 1.01])
    c = Centroids.of(np.array([[0, 1], [0, 1], [1, 0]], np.float32), np.array([0, 0, 1]), 2)
    assert c.counts.tolist() == [2, 1] and np.allclose(c.distances(q), squared_distances(q, c.vectors) / [1.5, 2])


def test_searchable_rows_turn_centroid_distances_into_plain_l2():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(6, 16))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    cents = rng.normal(size=(9, 16)) * rng.uniform(0.05, 0.1, (9, 1))  # short, as averages of many photos are
    counts = np.array([1, 1, 2, 3, 5, 10, 50, 150, 1000])
    want = centroid_distances(q.astype(np.float32), cents.astype(np.float32), counts)
    got = squared_distances(searchable_queries(q), searchable_centroids(cents, counts)) - 1.0
    assert searchable_centroids(cents, counts).shape == (9, 18)
    assert np.allclose(got, want, atol=1e-5)


def test_top_k_nearest_first():
    q = np.array([[0.0, 0.0]], np.float32)
    refs = np.array([[3, 0], [1, 0], [2, 0]], np.float32)
    idx, d = top_k(squared_distances(q, refs), 2)
    assert idx.tolist() == [[1, 2]] and np.allclose(d, [[1, 4]])


def test_sweep_matches_brute_force_accuracy_at_every_threshold():
    rng = np.random.default_rng(0)
    n = 200
    truth = np.where(rng.random(n) < 0.4, -1, rng.integers(0, 5, n))
    nearest = np.where(rng.random(n) < 0.8, np.maximum(truth, 0), rng.integers(0, 5, n))
    dist = np.round(rng.random(n) * 2, 2)  # rounded: ties included
    w = rng.random(n)
    t, acc = threshold_sweep(nearest, dist, truth, w)
    for ti, ai in zip(t, acc):
        assert abs(accuracy_at(nearest, dist, truth, ti, w) - ai) < 1e-9
    grid = np.linspace(-0.1, 2.1, 500)
    assert max(accuracy_at(nearest, dist, truth, g, w) for g in grid) <= acc.max() + 1e-9
    assert abs(acc[0] - w[truth == -1].sum() / w.sum()) < 1e-9  # below everything: all "unknown"


def test_best_threshold_sits_inside_the_best_plateau():
    nearest = np.array([0, 1, 0, 0])
    truth = np.array([0, 1, -1, -1])
    dist = np.array([0.1, 0.2, 0.8, 0.9])
    t, acc = threshold_sweep(nearest, dist, truth)
    thr, best = best_threshold(t, acc)
    assert best == 1.0 and 0.2 <= thr < 0.8
    assert open_set_answers(nearest, dist, thr).tolist() == [0, 1, -1, -1]
