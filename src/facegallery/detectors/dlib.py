"""dlib-bin's own detectors, for comparison (the optional ``dlib`` extra): ``dlib-hog`` (HOG + linear
SVM, frontal faces) and ``dlib-cnn`` (the MMOD network in dlib itself). Neither places landmarks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from facegallery.detectors.base import Detection, rescaled, window_scale
from facegallery.errors import UserError

INSTALL_HINT = "pip install 'facegallery[dlib]'"
WINDOW = 80


def import_dlib() -> Any:
    """The ``dlib`` module, or a one-line :class:`UserError` telling how to install it."""
    try:
        import dlib
    except ImportError:
        raise UserError(f"face detection and the dlib model need the dlib extra: {INSTALL_HINT}") from None
    return dlib


def dlib_model_file(name: str) -> Path:
    """Path of a weights file shipped by ``face_recognition_models`` (located without importing it:
    its ``__init__`` needs the removed ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    folders = (spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / "models" / name if folders else None
    if path is None or not path.is_file():
        raise UserError(f"{name}: dlib model file not found; install the models with {INSTALL_HINT}")
    return path


def _rect_box(rect: Any) -> tuple[float, float, float, float]:
    return (float(rect.left()), float(rect.top()), float(rect.right() + 1), float(rect.bottom() + 1))


class _DlibDetector:
    landmark_scheme = None

    def __init__(self, min_face: int = 50, threshold: float = 0.0, max_scan_pixels: int = 4_000_000):
        self.min_face, self.threshold, self.max_scan_pixels = int(min_face), float(threshold), int(max_scan_pixels)

    @property
    def settings(self) -> dict:
        return {"min_face": self.min_face, "threshold": self.threshold, "max_scan_pixels": self.max_scan_pixels}

    def _run(self, pixels: np.ndarray) -> list[tuple[Any, float]]:
        raise NotImplementedError

    def scan_scale(self, height: int, width: int) -> float:
        """The factor a ``height`` x ``width`` photo is resized by before scanning."""
        return window_scale(WINDOW, self.min_face, height, width, self.max_scan_pixels)

    def detect(self, pixels: np.ndarray, scale: float = 1.0) -> list[Detection]:
        """Faces of an RGB uint8 photo shown at ``scale`` of its size, boxes in the given pixels."""
        h, w = pixels.shape[:2]
        if min(h, w) < 8:  # nothing a face could be in (dlib's CNN fails on such inputs)
            return []
        work, fx, fy = rescaled(pixels, self.scan_scale(round(h / scale), round(w / scale)) / scale)
        found = [
            Detection(_rect_box(r), s).scaled(fx, fy).clipped(w, h) for r, s in self._run(np.ascontiguousarray(work))
        ]
        return sorted(found, key=lambda d: -d.score)


class DlibHogDetector(_DlibDetector):
    """dlib's HOG + linear SVM frontal face detector; scores are SVM margins."""

    name = "dlib-hog"

    def __init__(self, **settings):
        super().__init__(**settings)
        self._det = import_dlib().get_frontal_face_detector()

    def _run(self, pixels: np.ndarray) -> list[tuple[Any, float]]:
        rects, scores, _ = self._det.run(pixels, 0, self.threshold)
        return [(r, float(s)) for r, s in zip(rects, scores)]


class DlibCnnDetector(_DlibDetector):
    """dlib's MMOD CNN face detector inside dlib (the same network as ``mmod``)."""

    name = "dlib-cnn"

    def __init__(self, **settings):
        super().__init__(**settings)
        self._det = import_dlib().cnn_face_detection_model_v1(str(dlib_model_file("mmod_human_face_detector.dat")))

    def _run(self, pixels: np.ndarray) -> list[tuple[Any, float]]:
        return [(d.rect, float(d.confidence)) for d in self._det(pixels, 0) if d.confidence >= self.threshold]
