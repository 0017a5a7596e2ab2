"""What every face detector is and gives: the :class:`Detection` data, the :class:`Detector` protocol,
the registry of detectors by name, and non-maximum suppression.

The registry is a leaf: each detector's module registers itself with one :func:`register` line, and
``facegallery.detectors`` imports the modules. Nothing here imports a detector.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from facegallery.errors import UserError


@dataclass(frozen=True)
class Detection:
    """One face found: its box [x0, y0, x1, y1] in the photo's pixels (edge coordinates), the detector's
    score (higher is surer; scales differ between detectors) and its landmarks (K, 2) if it places any,
    in the order of its ``landmark_scheme``."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    def scaled(self, fx: float, fy: float) -> Detection:
        """The same face in a photo ``fx`` x ``fy`` times larger."""
        b = self.box
        marks = None if self.landmarks is None else self.landmarks * np.array([fx, fy])
        return Detection((b[0] * fx, b[1] * fy, b[2] * fx, b[3] * fy), self.score, marks)

    def clipped(self, width: int, height: int) -> Detection:
        """The box clipped to a ``width`` x ``height`` photo (landmarks left where they were placed)."""
        b = self.box
        box = (min(max(b[0], 0.0), width), min(max(b[1], 0.0), height), min(max(b[2], 0.0), width))
        return Detection((*box, min(max(b[3], 0.0), height)), self.score, self.landmarks)


class Detector(Protocol):
    """Finds faces in an RGB uint8 photo (H, W, 3). ``settings`` holds everything that changes its
    output besides the photo (caches and galleries record it); ``landmark_scheme`` names the points its
    detections carry, or is None when it places none.

    ``detect(pixels, scale)``: ``pixels`` show the photo at ``scale`` of its size (a JPEG decoded
    reduced), so that ``min_face`` keeps meaning the photo's pixels; boxes come back in ``pixels``'.
    ``scan_scale(h, w)``: the factor it resizes an ``h`` x ``w`` photo by before scanning (a decode may
    be reduced down to it at no loss)."""

    name: str
    landmark_scheme: str | None

    @property
    def settings(self) -> dict: ...

    def scan_scale(self, height: int, width: int) -> float: ...

    def detect(self, pixels: np.ndarray, scale: float = 1.0) -> list[Detection]: ...


_REGISTRY: dict[str, str | Callable[..., Detector]] = {}


def register(name: str, factory: str | Callable[..., Detector]) -> None:
    """Make ``factory(**settings)`` available as the detector ``name``; a ``"module:Class"`` string is
    imported when the detector is first built (PyTorch loads only for a detector that needs it)."""
    _REGISTRY[name] = factory


def detector_names() -> list[str]:
    """Registered detector names."""
    return list(_REGISTRY)


def create_detector(name: str, **settings) -> Detector:
    """A new detector ``name`` with ``settings`` (e.g. ``min_face``); one-line error for an unknown name."""
    if name not in _REGISTRY:
        raise UserError(f"unknown face detector {name!r}; known: {', '.join(_REGISTRY)}")
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    try:
        return factory(**settings)
    except TypeError as e:
        raise UserError(f"detector {name}: {e}") from None


def describe(detector: Detector) -> dict:
    """``{"name": ..., **settings}``: how a gallery and the caches record a detector."""
    return {"name": detector.name, **detector.settings}


def detector_key(detector: Detector) -> str:
    """A short stable string naming a detector, its settings and (where it has them) its weights'
    digest: a cache key part."""
    weights = getattr(detector, "weights_digest", "")
    return json.dumps({**describe(detector), "weights": weights}, sort_keys=True, separators=(",", ":"))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression: indices of the kept boxes by falling score; a box is dropped
    when it overlaps an already kept one by more than ``iou``. The overlaps are one matrix; only the
    walk over the (few) candidates is a loop."""
    if len(boxes) == 0:
        return []
    order = np.argsort(-np.asarray(scores), kind="stable")
    over = box_iou(boxes[order], boxes[order]) > iou
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(int(order[i]))
            suppressed |= over[i]
    return keep


def rescaled(pixels: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """``pixels`` resized by ``scale`` (bilinear) and the factors (x, y) back to the photo's pixels."""
    h, w = pixels.shape[:2]
    if abs(scale - 1.0) <= 1e-3:
        return pixels, 1.0, 1.0
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    work = np.asarray(Image.fromarray(pixels).resize((sw, sh), Image.Resampling.BILINEAR))
    return work, w / sw, h / sh


def window_scale(window: int, min_face: int, height: int, width: int, max_scan_pixels: int) -> float:
    """The factor that makes a ``min_face`` face fill a ``window``-pixel detector, capped so that the
    scanned image holds at most ``max_scan_pixels``."""
    return min(window / max(min_face, 1), math.sqrt(max_scan_pixels / (height * width)))


class WindowDetector:
    """A detector with a fixed window (dlib's: 80 px): a photo is rescaled so that a ``min_face`` face
    fills it (at most ``max_scan_pixels`` scanned) and :meth:`boxes` runs on the rescaled pixels.
    Subclasses give ``name``, ``window`` and ``boxes``; they place no landmarks."""

    name = ""
    window = 80
    landmark_scheme: str | None = None

    def __init__(self, min_face: int = 50, threshold: float = 0.0, max_scan_pixels: int = 4_000_000):
        self.min_face, self.threshold, self.max_scan_pixels = int(min_face), float(threshold), int(max_scan_pixels)

    @property
    def settings(self) -> dict:
        return {"min_face": self.min_face, "threshold": self.threshold, "max_scan_pixels": self.max_scan_pixels}

    def scan_scale(self, height: int, width: int) -> float:
        """The factor a ``height`` x ``width`` photo is resized by before scanning."""
        return window_scale(self.window, self.min_face, height, width, self.max_scan_pixels)

    def boxes(self, pixels: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """(box, score) of each face in the scanned pixels."""
        raise NotImplementedError

    def detect(self, pixels: np.ndarray, scale: float = 1.0) -> list[Detection]:
        """Faces of an RGB uint8 photo shown at ``scale`` of its size, boxes in the given pixels."""
        h, w = pixels.shape[:2]
        if min(h, w) < 8:  # nothing a face could be in (dlib's CNN fails on such inputs)
            return []
        work, fx, fy = rescaled(pixels, self.scan_scale(round(h / scale), round(w / scale)) / scale)
        found = [Detection(b, s).scaled(fx, fy).clipped(w, h) for b, s in self.boxes(np.ascontiguousarray(work))]
        return sorted(found, key=lambda d: -d.score)
