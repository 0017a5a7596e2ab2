"""dlib's MMOD CNN face detector run natively (:mod:`facegallery.mmod`): the thorough option, slower
than YuNet, with scores that are window margins (> 0: a face). It places no landmarks: alignment runs
dlib's shape predictor in its boxes, the box convention that predictor was trained on."""

from __future__ import annotations

import hashlib

import numpy as np

from facegallery.detectors.base import WindowDetector


class MmodDetector(WindowDetector):
    """Faces by dlib's CC0 MMOD network (the default until YuNet; weights shipped)."""

    name = "mmod"

    def __init__(self, min_face: int = 50, threshold: float = 0.0, max_scan_pixels: int = 4_000_000):
        from facegallery.mmod import WEIGHTS, load

        super().__init__(min_face, threshold, max_scan_pixels)
        self._det = load()
        self._det.threshold = self.threshold
        self.weights_digest = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()[:16]

    def boxes(self, pixels: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        found, scores = self._det.detect(pixels)
        return [(tuple(float(v) for v in b), float(s)) for b, s in zip(found, scores)]
