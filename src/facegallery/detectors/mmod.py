"""dlib's MMOD CNN face detector run natively (:mod:`facegallery.mmod`): the thorough option, slower
than YuNet, with scores that are window margins (> 0: a face). It places no landmarks: alignment runs
dlib's shape predictor in its boxes, the box convention that predictor was trained on."""

from __future__ import annotations

import hashlib

import numpy as np

from facegallery.detectors.base import Detection, rescaled, window_scale

#: The detector's window: faces of about this side are found without rescaling.
WINDOW = 80


class MmodDetector:
    """Faces by dlib's CC0 MMOD network (the default until YuNet; weights shipped)."""

    name = "mmod"
    landmark_scheme = None

    def __init__(self, min_face: int = 50, threshold: float = 0.0, max_scan_pixels: int = 4_000_000):
        from facegallery.mmod import WEIGHTS, load

        self.min_face, self.threshold, self.max_scan_pixels = int(min_face), float(threshold), int(max_scan_pixels)
        self._det = load()
        self._det.threshold = self.threshold
        self.weights_digest = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()[:16]

    @property
    def settings(self) -> dict:
        return {"min_face": self.min_face, "threshold": self.threshold, "max_scan_pixels": self.max_scan_pixels}

    def scan_scale(self, height: int, width: int) -> float:
        """The factor a ``height`` x ``width`` photo is resized by before scanning."""
        return window_scale(WINDOW, self.min_face, height, width, self.max_scan_pixels)

    def detect(self, pixels: np.ndarray, scale: float = 1.0) -> list[Detection]:
        """Faces of an RGB uint8 photo shown at ``scale`` of its size, boxes in the given pixels."""
        h, w = pixels.shape[:2]
        if min(h, w) < 8:  # nothing a face could be in (dlib's CNN fails on such inputs)
            return []
        work, fx, fy = rescaled(pixels, self.scan_scale(round(h / scale), round(w / scale)) / scale)
        boxes, scores = self._det.detect(np.ascontiguousarray(work))
        found = [
            Detection(tuple(float(v) for v in b), float(s)).scaled(fx, fy).clipped(w, h) for b, s in zip(boxes, scores)
        ]
        return sorted(found, key=lambda d: -d.score)
