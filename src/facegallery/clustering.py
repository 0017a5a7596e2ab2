"""Grouping unlabelled faces into people, and scoring a grouping against the truth.

Three algorithms, chosen between by measurement (benchmarks/RESULTS.md): every one takes unit
embeddings and returns a label per face (-1: in no group). None has a knob tuned on test labels: the
distance cut comes from the model's calibration (:func:`pair_cut`, scaled as chosen on training photos),
HDBSCAN's density from the data.

- ``agglomerative``: average linkage over squared distances, cut at :func:`pair_cut` (scipy's
  hierarchical clustering: O(n^2) memory for the condensed distance matrix);
- ``chinese-whispers``: dlib's graph clustering: an edge joins two faces nearer than the cut, and each
  face, in random order, takes the label most of its neighbours carry, until nothing changes;
- ``hdbscan``: scikit-learn's density-based clustering (min_cluster_size 2), no cut at all.

A group of one face is no group: it is reported as unassigned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from facegallery.errors import UserError

#: Rows of the distance matrix computed at once when building the neighbour graph.
BLOCK = 2048


#: The grouping cut as a multiple of the model's calibrated centroid threshold. Chosen on PubFig83 *train*
#: (9,295 faces of 63 people, the default model, average linkage; RESULTS section 11) as the largest
#: multiple, in steps of 0.1, whose BCubed precision stays >= 0.98: merging two people costs a user more
#: than splitting one. Twice the threshold (two single photos accepted as one person, the recognition
#: rule for a centroid of one photo) sits past a cliff where look-alike people merge (precision 0.83).
CUT_SCALE = 1.7


def pair_cut(threshold: float) -> float:
    """The squared distance at which faces group, from a model's calibrated threshold for centroids."""
    return CUT_SCALE * threshold


def _distance_blocks(emb: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, squared distances of rows first..first+BLOCK to every row), by float32 products."""
    emb = np.asarray(emb, np.float32)
    sq = (emb * emb).sum(1)
    for s in range(0, len(emb), BLOCK):
        yield s, np.maximum(sq[s : s + BLOCK, None] + sq[None] - 2.0 * emb[s : s + BLOCK] @ emb.T, 0.0)


def neighbours(emb: np.ndarray, cut: float) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of rows nearer than ``cut`` (squared distance), computed in blocks."""
    rows, cols = [], []
    for s, d in _distance_blocks(emb):
        i, j = np.nonzero(d < cut)
        i = i + s
        keep = i < j
        rows.append(i[keep])
        cols.append(j[keep])
    return (np.concatenate(rows), np.concatenate(cols)) if rows else (np.zeros(0, int), np.zeros(0, int))


def condensed_distances(emb: np.ndarray) -> np.ndarray:
    """Squared distances of every pair (i < j) in scipy's condensed order, as float64 (several times
    faster than ``pdist``; no n x n matrix is held)."""
    n = len(emb)
    out = np.empty(n * (n - 1) // 2, np.float64)
    start = 0
    for s, d in _distance_blocks(emb):
        for r in range(len(d)):
            i = s + r
            out[start : start + n - i - 1] = d[r, i + 1 :]
            start += n - i - 1
    return out


def chinese_whispers(emb: np.ndarray, cut: float, seed: int = 0, max_rounds: int = 100) -> np.ndarray:
    """dlib's Chinese whispers over the graph of pairs nearer than ``cut`` (edges weigh 1)."""
    n = len(emb)
    i, j = neighbours(emb, cut)
    order = np.argsort(np.concatenate([i, j]), kind="stable")
    targets = np.concatenate([j, i])[order]
    starts = np.searchsorted(np.concatenate([i, j])[order], np.arange(n + 1))
    labels = np.arange(n)
    rng = np.random.default_rng(seed)
    for _ in range(max_rounds):
        changed = 0
        for node in rng.permutation(n):
            nb = targets[starts[node] : starts[node + 1]]
            if len(nb) == 0:
                continue
            values, counts = np.unique(labels[nb], return_counts=True)
            best = values[np.argmax(counts)]
            if best != labels[node]:
                labels[node] = best
                changed += 1
        if not changed:
            break
    return labels


def agglomerative(emb: np.ndarray, cut: float) -> np.ndarray:
    """Average-linkage hierarchical clustering, cut where the mean squared distance reaches ``cut``.

    Exact, and far cheaper than one linkage over every pair: a group's mean distance to another is at
    least their nearest pair's, so groups only ever form inside the connected components of the graph
    of pairs nearer than ``cut``; each component is clustered on its own (scipy's linkage on its
    condensed distances), and memory grows with the largest component rather than with all faces."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(emb)
    if n < 2:
        return np.zeros(n, int)
    i, j = neighbours(emb, cut)
    _, component = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    labels = np.full(n, -1)
    next_label = 0
    order = np.argsort(component, kind="stable")
    bounds = np.flatnonzero(np.diff(component[order])) + 1
    for members in np.split(order, bounds):
        if len(members) == 1:
            labels[members] = next_label
        else:
            condensed = condensed_distances(emb[members])
            labels[members] = next_label + fcluster(linkage(condensed, "average"), t=cut, criterion="distance") - 1
            del condensed
        next_label = labels[members].max() + 1
    return labels


def hdbscan(emb: np.ndarray, cut: float | None = None) -> np.ndarray:
    """scikit-learn's HDBSCAN (groups of at least 2; -1: noise). ``cut`` is not used: the density
    decides."""
    from sklearn.cluster import HDBSCAN

    if len(emb) < 2:
        return np.full(len(emb), -1)
    return HDBSCAN(min_cluster_size=2, copy=True).fit_predict(np.asarray(emb, np.float64))


ALGORITHMS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "agglomerative": agglomerative,
    "chinese-whispers": chinese_whispers,
    "hdbscan": hdbscan,
}
DEFAULT_ALGORITHM = "agglomerative"


def group(emb: np.ndarray, cut: float, algorithm: str = DEFAULT_ALGORITHM) -> np.ndarray:
    """Labels 0..k-1 for faces in groups of two or more, largest group first; -1 for the rest."""
    if algorithm not in ALGORITHMS:
        raise UserError(f"unknown clustering algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    raw = ALGORITHMS[algorithm](emb, cut) if len(emb) else np.zeros(0, int)
    values, counts = np.unique(raw[raw >= 0], return_counts=True)
    big = [v for c, v in sorted(zip(-counts, values)) if c <= -2]
    relabel = {v: k for k, v in enumerate(big)}
    return np.array([relabel.get(v, -1) for v in raw], int)


# ----- scoring a grouping ----------------------------------------------------------------------


def _singletons(labels: np.ndarray) -> np.ndarray:
    """-1 (no group) made into a group of its own for each face, for scoring."""
    labels = np.asarray(labels).copy()
    loose = labels < 0
    labels[loose] = labels.max(initial=0) + 1 + np.arange(loose.sum())
    return labels


def bcubed(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """BCubed precision, recall and F1 (Bagga & Baldwin 1998; Amigo et al. 2009): per face, the share of
    its predicted group that is its person, and of its person that is in its group, averaged."""
    truth, pred = np.asarray(truth), _singletons(pred)
    _, t = np.unique(truth, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    pair = t.astype(np.int64) * (p.max() + 1) + p
    _, pair_id, pair_n = np.unique(pair, return_inverse=True, return_counts=True)
    same = pair_n[pair_id]  # faces sharing both this face's person and its group
    precision = float((same / np.bincount(p)[p]).mean())
    recall = float((same / np.bincount(t)[t]).mean())
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def pairwise_f1(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 over pairs of faces: a pair is positive when put in one group."""
    truth, pred = np.asarray(truth), _singletons(pred)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    _, t = np.unique(truth, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    both = pairs(np.unique(t.astype(np.int64) * (p.max() + 1) + p, return_counts=True)[1])
    in_pred, in_truth = pairs(np.bincount(p)), pairs(np.bincount(t))
    precision = both / in_pred if in_pred else 1.0
    recall = both / in_truth if in_truth else 1.0
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def grouping_figures(truth: np.ndarray, pred: np.ndarray) -> dict:
    """Every figure of a grouping: BCubed and pairwise precision / recall / F1, groups found vs people."""
    bp, br, bf = bcubed(truth, pred)
    pp, pr, pf = pairwise_f1(truth, pred)
    pred = np.asarray(pred)
    return {
        "faces": int(len(truth)),
        "people": int(len(np.unique(truth))),
        "clusters": int(len(np.unique(pred[pred >= 0]))),
        "unassigned": int((pred < 0).sum()),
        "bcubed_precision": round(bp, 4),
        "bcubed_recall": round(br, 4),
        "bcubed_f1": round(bf, 4),
        "pairwise_precision": round(pp, 4),
        "pairwise_recall": round(pr, 4),
        "pairwise_f1": round(pf, 4),
    }
