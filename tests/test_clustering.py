"""Grouping faces: every algorithm recovers a known grouping, and the figures match brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facegallery import clustering
from facegallery.errors import UserError


def people(n_people: int = 12, seed: int = 0, dim: int = 128, spread: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings of ``n_people`` well-separated people with 1-9 photos each (some of one photo)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = rng.integers(1, 10, n_people)
    sizes[:2] = 1
    truth = np.repeat(np.arange(n_people), sizes)
    emb = centres[truth] + rng.normal(scale=spread / np.sqrt(dim), size=(len(truth), dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    perm = rng.permutation(len(truth))
    return emb[perm].astype(np.float32), truth[perm]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return all((a[i] == a[j]) == (b[i] == b[j]) for i, j in itertools.combinations(range(len(a)), 2))


@pytest.mark.parametrize("algorithm", list(clustering.ALGORITHMS))
def test_every_algorithm_recovers_well_separated_people(algorithm):
    emb, truth = people()
    labels = clustering.group(emb, cut=0.5, algorithm=algorithm)
    many = np.isin(truth, np.flatnonzero(np.bincount(truth) >= 2))
    assert (labels[~many] == -1).all()  # a person of one photo is no group
    assert same_partition(labels[many], truth[many])
    sizes = np.bincount(labels[labels >= 0])
    assert list(sizes) == sorted(sizes, reverse=True)  # largest group first


def test_nothing_groups_when_the_cut_is_below_every_distance():
    emb, _ = people()
    for algorithm in ("agglomerative", "chinese-whispers"):
        assert (clustering.group(emb, cut=1e-6, algorithm=algorithm) == -1).all()
    assert len(clustering.group(np.zeros((0, 128), np.float32), 0.5)) == 0
    assert clustering.group(np.ones((1, 128), np.float32) / np.sqrt(128), 0.5).tolist() == [-1]


def test_unknown_algorithm_is_a_user_error():
    with pytest.raises(UserError, match="unknown clustering algorithm 'kmeans'"):
        clustering.group(np.zeros((3, 4), np.float32), 0.5, "kmeans")


def test_neighbours_finds_exactly_the_close_pairs(monkeypatch):
    monkeypatch.setattr(clustering, "BLOCK", 7)  # several blocks
    emb, _ = people(seed=3)
    i, j = clustering.neighbours(emb, 0.5)
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    want = {(a, b) for a, b in itertools.combinations(range(len(emb)), 2) if d[a, b] < 0.5}
    assert set(zip(i.tolist(), j.tolist())) == want


def brute_bcubed(truth, pred):
    pred = clustering._singletons(np.asarray(pred))
    n = len(truth)
    p = np.mean(
        [sum(pred[j] == pred[i] and truth[j] == truth[i] for j in range(n)) / (pred == pred[i]).sum() for i in range(n)]
    )
    r = np.mean(
        [
            sum(pred[j] == pred[i] and truth[j] == truth[i] for j in range(n)) / (truth == truth[i]).sum()
            for i in range(n)
        ]
    )
    return p, r, 2 * p * r / (p + r)


def brute_pairwise(truth, pred):
    pred = clustering._singletons(np.asarray(pred))
    pairs = list(itertools.combinations(range(len(truth)), 2))
    tp = sum(pred[a] == pred[b] and truth[a] == truth[b] for a, b in pairs)
    pp = sum(pred[a] == pred[b] for a, b in pairs)
    tt = sum(truth[a] == truth[b] for a, b in pairs)
    p, r = (tp / pp if pp else 1.0), (tp / tt if tt else 1.0)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_figures_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 6, 40)
    pred = rng.integers(-1, 5, 40)  # -1: unassigned, each its own group when scored
    assert clustering.bcubed(truth, pred) == pytest.approx(brute_bcubed(truth, pred))
    assert clustering.pairwise_f1(truth, pred) == pytest.approx(brute_pairwise(truth, pred))
    figures = clustering.grouping_figures(truth, pred)
    assert figures["unassigned"] == (pred < 0).sum() and figures["people"] == len(set(truth.tolist()))


def test_a_perfect_grouping_scores_one_and_lumping_everything_scores_low():
    truth = np.repeat(np.arange(5), 4)
    assert clustering.bcubed(truth, truth) == pytest.approx((1, 1, 1))
    assert clustering.pairwise_f1(truth, truth) == pytest.approx((1, 1, 1))
    p, r, _ = clustering.bcubed(truth, np.zeros(20, int))
    assert r == 1.0 and p == pytest.approx(0.2)
    assert clustering.bcubed(truth, np.full(20, -1))[:2] == pytest.approx((1.0, 0.25))  # all apart


def test_pair_cut_scales_the_centroid_threshold():
    assert clustering.pair_cut(0.1) == pytest.approx(0.1 * clustering.CUT_SCALE)


@pytest.mark.parametrize("cut", [0.05, 0.3, 1.0, 2.5])
def test_agglomerative_by_components_equals_one_linkage_over_every_pair(cut):
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    emb, _ = people(n_people=15, seed=4, spread=0.9)  # loose people: components of several sizes
    whole = fcluster(linkage(pdist(emb.astype(np.float64), "sqeuclidean"), "average"), t=cut, criterion="distance")
    assert same_partition(clustering.agglomerative(emb, cut), whole)


def test_condensed_distances_match_scipy(monkeypatch):
    from scipy.spatial.distance import pdist

    monkeypatch.setattr(clustering, "BLOCK", 5)
    emb, _ = people(seed=5)
    assert np.allclose(clustering.condensed_distances(emb), pdist(emb.astype(np.float64), "sqeuclidean"), atol=1e-5)
