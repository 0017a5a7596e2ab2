"""Choosing the unknown threshold without test data: simulate the open-set task on held-out data.

Gallery = centroids of the known identities' training photos; probes = their held-out photos
(genuine) and photos of identities held out entirely (impostors). The two groups are weighted to
count equally, as in the balanced test protocol; the threshold maximising that accuracy is chosen.

Without impostor identities (a model trained on every identity it has) the threshold is the one that
accepts a set fraction of the genuine probes (``accept_rate``): the fraction the balanced rule accepted
where impostors were held out, measured on this project's models (0.78-0.80, benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegallery.recognition import Centroids, best_threshold, threshold_sweep

#: Fraction of held-out genuine probes the threshold accepts when no impostors are held out.
ACCEPT_RATE = 0.8


@dataclass
class Calibration:
    threshold: float
    accuracy: float | None  # balanced open-set accuracy of the held-out probes at ``threshold`` (None: no impostors)
    closed_top1: float  # closed-set top-1 of the genuine held-out probes
    genuine: int
    impostors: int


def calibrate(
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    classes: int,
    genuine_emb: np.ndarray,
    genuine_labels: np.ndarray,
    impostor_emb: np.ndarray,
    accept_rate: float = ACCEPT_RATE,
) -> Calibration:
    """Balanced open-set calibration, or the ``accept_rate`` rule without impostors (module docstring)."""
    cents = Centroids.of(gallery_emb, gallery_labels, classes)
    if len(impostor_emb) == 0:
        d = cents.distances(genuine_emb)
        top1 = float((d.argmin(1) == genuine_labels).mean()) if len(genuine_emb) else 0.0
        thr = float(np.quantile(d.min(1), accept_rate)) if len(genuine_emb) else float("inf")
        return Calibration(thr, None, top1, len(genuine_emb), 0)
    probes = np.concatenate([genuine_emb, impostor_emb])
    truth = np.concatenate([genuine_labels, np.full(len(impostor_emb), -1)])
    d = cents.distances(probes)
    nearest = d.argmin(1)
    nd = d[np.arange(len(d)), nearest]
    weights = np.concatenate(
        [
            np.full(len(genuine_emb), 0.5 / max(len(genuine_emb), 1)),
            np.full(len(impostor_emb), 0.5 / max(len(impostor_emb), 1)),
        ]
    )
    t, acc = threshold_sweep(nearest, nd, truth, weights)
    thr, best = best_threshold(t, acc)
    top1 = float((nearest[: len(genuine_emb)] == genuine_labels).mean()) if len(genuine_emb) else 0.0
    return Calibration(thr, best, top1, len(genuine_emb), len(impostor_emb))
