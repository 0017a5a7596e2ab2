"""Nearest-centroid identification, the core of the original method, on plain arrays.

Distances are squared Euclidean between unit vectors (= 2 - 2 cos, in [0, 4]).

A centroid is the mean of however many photos a person was enrolled from, and a mean of few photos is
itself noisy: if a person's photos scatter around their true mean with variance s^2 per direction, a new
photo's expected squared distance to the mean of ``n`` of them is s^2 D (1 + 1/n), twice the one-photo
scatter for a person enrolled from one photo, barely more than it for one enrolled from 150. Comparing raw
distances therefore favours people enrolled from many photos over people enrolled from few.
:func:`centroid_distances` divides each distance by that factor (the Gaussian posterior predictive with a
flat prior, no parameter to fit), so people enrolled from 1, 5 or 150 photos compete on the same footing;
it is the distance identification, the unknown threshold and their calibration use
(benchmarks/RESULTS.md 3f measures it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def centroids(emb: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Mean embedding per class (rows of classes without photos stay zero). Not renormalised: the
    original uses the plain mean, and its length carries how consistent the photos are."""
    out = np.zeros((classes, emb.shape[1]), dtype=np.float64)
    np.add.at(out, labels, emb)
    counts = np.bincount(labels, minlength=classes)[:, None]
    return (out / np.maximum(counts, 1)).astype(np.float32)


@dataclass
class Centroids:
    """The people to identify against: one mean embedding per person and how many photos made it."""

    vectors: np.ndarray  # (R, D) float32, not renormalised
    counts: np.ndarray  # (R,) photos per centroid

    @classmethod
    def of(cls, emb: np.ndarray, labels: np.ndarray, classes: int) -> Centroids:
        """The :func:`centroids` of labelled embeddings with their photo counts."""
        return cls(centroids(emb, labels, classes), np.bincount(labels, minlength=classes).astype(np.int64))

    def __len__(self) -> int:
        return len(self.vectors)

    def __add__(self, other: Centroids) -> Centroids:
        """Both galleries as one (``other``'s rows numbered after this one's)."""
        return Centroids(
            np.concatenate([self.vectors, other.vectors]).astype(np.float32),
            np.concatenate([self.counts, other.counts]),
        )

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """(Q, R) :func:`centroid_distances` of ``queries`` to every centroid."""
        return centroid_distances(queries, self.vectors, self.counts)

    def nearest(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Indices and distances of the ``k`` nearest centroids per query, nearest first."""
        return top_k(self.distances(queries), k)


def count_factor(counts: np.ndarray) -> np.ndarray:
    """1 + 1/n per centroid of ``n`` photos: how much farther a new photo lies from a mean of n photos
    than from the person's true mean (module docstring)."""
    return 1.0 + 1.0 / np.maximum(np.asarray(counts, dtype=np.float64), 1.0)


def centroid_distances(queries: np.ndarray, cents: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(Q, R) squared distances to centroids of ``counts`` photos each, divided by :func:`count_factor`."""
    d = squared_distances(queries, cents)
    d /= count_factor(counts).astype(d.dtype)[None, :]
    return d


def searchable_centroids(cents: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Centroids as (R, D + 2) rows whose plain squared L2 distance to :func:`searchable_queries` of a
    unit query equals its :func:`centroid_distances` + 1, so an L2 index (FAISS) searches by them exactly.

    With f = 1 + 1/n: row = [c / f, sqrt((1 + |c|^2) / f - |c|^2 / f^2), 0]; the last column only keeps
    the width even for FAISS's two-dimensions-per-code quantizer."""
    cents = np.asarray(cents, dtype=np.float64)
    f = count_factor(counts)[:, None]
    sq = (cents * cents).sum(1, keepdims=True)
    extra = np.sqrt(np.maximum((1.0 + sq) / f - sq / (f * f), 0.0))
    return np.hstack([cents / f, extra, np.zeros_like(extra)]).astype(np.float32)


def searchable_queries(queries: np.ndarray) -> np.ndarray:
    """Unit query rows padded to match :func:`searchable_centroids`."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    return np.hstack([q, np.zeros((len(q), 2), np.float32)])


def squared_distances(queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """(Q, R) squared Euclidean distances, clamped at 0."""
    d = (queries * queries).sum(1)[:, None] + (refs * refs).sum(1)[None, :] - 2.0 * queries @ refs.T
    return np.maximum(d, 0.0, out=d)


def top_k(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of the k smallest per row, nearest first."""
    k = min(k, dist.shape[1])
    idx = (
        np.argpartition(dist, k - 1, axis=1)[:, :k]
        if k < dist.shape[1]
        else np.tile(np.arange(dist.shape[1]), (len(dist), 1))
    )
    d = np.take_along_axis(dist, idx, 1)
    order = np.argsort(d, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(d, order, 1)


def open_set_answers(nearest: np.ndarray, nearest_dist: np.ndarray, threshold: float, unknown: int = -1) -> np.ndarray:
    """The nearest class, or ``unknown`` where its distance exceeds ``threshold``."""
    return np.where(nearest_dist > threshold, unknown, nearest)


def threshold_sweep(
    nearest: np.ndarray,
    nearest_dist: np.ndarray,
    truth: np.ndarray,
    weights: np.ndarray | None = None,
    unknown: int = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """Open-set accuracy at every threshold where it can change (each probe's nearest distance, and
    below all of them), exactly: returns (thresholds ascending, weighted accuracies).

    A probe is right at threshold t when (known and nearest correct and d <= t) or (unknown and d > t).
    """
    w = np.ones(len(truth)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(nearest_dist, kind="stable")
    d, w_sorted = nearest_dist[order], w[order]
    is_unknown = truth[order] == unknown
    correct_known = (~is_unknown) & (nearest[order] == truth[order])
    # at t below every distance all answers are "unknown"; raising t past d_i flips probe i.
    gain = np.where(correct_known, w_sorted, 0.0) - np.where(is_unknown, w_sorted, 0.0)
    base = w_sorted[is_unknown].sum()
    thresholds = np.concatenate([[max(0.0, d[0] - 1e-6) if len(d) else 0.0], d])
    acc = np.clip(np.concatenate([[base], base + np.cumsum(gain)]) / w.sum(), 0.0, 1.0)  # float drift
    # ties: only the last of equal distances is a reachable state
    keep = np.ones(len(thresholds), dtype=bool)
    keep[1:-1] = d[1:] != d[:-1]
    return thresholds[keep], acc[keep]


def best_threshold(thresholds: np.ndarray, acc: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) at the best point; among equal bests, the middle of the plateau run
    of the first maximum, which generalises better than its edge."""
    i = int(np.argmax(acc))
    j = i
    while j + 1 < len(acc) and acc[j + 1] == acc[i]:
        j += 1
    hi = thresholds[j + 1] if j + 1 < len(thresholds) else thresholds[j]
    return float((thresholds[i] + hi) / 2 if j + 1 < len(thresholds) else thresholds[i]), float(acc[i])


def accuracy_at(
    nearest: np.ndarray,
    nearest_dist: np.ndarray,
    truth: np.ndarray,
    threshold: float,
    weights: np.ndarray | None = None,
    unknown: int = -1,
) -> float:
    """Weighted open-set accuracy at one threshold."""
    w = np.ones(len(truth)) if weights is None else weights
    ans = open_set_answers(nearest, nearest_dist, threshold, unknown)
    return float((w * (ans == truth)).sum() / w.sum())
