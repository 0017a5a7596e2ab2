import numpy as np

from facegallery.recognition import (accuracy_at, best_threshold, centroids, open_set_answers,
                                     squared_distances, threshold_sweep, top_k)


def test_centroids_are_plain_means():
    emb = np.array([[1, 0], [0, 1], [1, 1], [3, 3]], np.float32)
    c = centroids(emb, np.array([0, 0, 1, 1]), 3)
    assert np.allclose(c, [[0.5, 0.5], [2, 2], [0, 0]])


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
