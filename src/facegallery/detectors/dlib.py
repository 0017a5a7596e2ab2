"""dlib-bin's own detectors, for comparison (the optional ``dlib`` extra): ``dlib-hog`` (HOG + linear
SVM, frontal faces) and ``dlib-cnn`` (the MMOD network in dlib itself). Neither places landmarks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from facegallery.detectors.base import WindowDetector
from facegallery.errors import UserError

INSTALL_HINT = "pip install 'facegallery[dlib]'"


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


class DlibHogDetector(WindowDetector):
    """dlib's HOG + linear SVM frontal face detector; scores are SVM margins."""

    name = "dlib-hog"

    def __init__(self, **settings):
        super().__init__(**settings)
        self._det = import_dlib().get_frontal_face_detector()

    def boxes(self, pixels: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        rects, scores, _ = self._det.run(pixels, 0, self.threshold)
        return [(_rect_box(r), float(s)) for r, s in zip(rects, scores)]


class DlibCnnDetector(WindowDetector):
    """dlib's MMOD CNN face detector inside dlib (the same network as ``mmod``)."""

    name = "dlib-cnn"

    def __init__(self, **settings):
        super().__init__(**settings)
        self._det = import_dlib().cnn_face_detection_model_v1(str(dlib_model_file("mmod_human_face_detector.dat")))

    def boxes(self, pixels: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        found = self._det(pixels, 0)
        return [(_rect_box(d.rect), float(d.confidence)) for d in found if d.confidence >= self.threshold]
