"""Face detectors as data: each finds faces in a photo and returns :class:`Detection` records (box,
score, landmarks when it places them) that alignment consumes.

One module per detector, each registering itself with one line: ``yunet`` (the default: YuNet-n in
PyTorch, weights shipped), ``mmod`` (dlib's MMOD CNN, native, weights shipped: the thorough option),
``dlib-hog`` and ``dlib-cnn`` (dlib-bin's own, with the ``dlib`` extra). A detector is chosen at the
edge (``--detector``, ``detector=``, the service's config) and passed down; ``FACEGALLERY_DETECTOR``
and ``FACEGALLERY_MIN_FACE`` only change the default.
"""

from __future__ import annotations

import os
from functools import cache

from facegallery.detectors.base import (
    Detection,
    Detector,
    create_detector,
    describe,
    detector_key,
    detector_names,
    nms,
    register,
)
from facegallery.errors import UserError

# the registry: one line per detector, its module imported when it is first built
register("yunet", "facegallery.detectors.yunet:YuNetDetector")
register("mmod", "facegallery.detectors.mmod:MmodDetector")
register("dlib-hog", "facegallery.detectors.dlib:DlibHogDetector")
register("dlib-cnn", "facegallery.detectors.dlib:DlibCnnDetector")

DEFAULT_DETECTOR = "yunet"

__all__ = [
    "DEFAULT_DETECTOR",
    "Detection",
    "Detector",
    "create_detector",
    "describe",
    "detector_key",
    "detector_names",
    "describe_text",
    "load_detector",
    "nms",
    "register",
]


@cache
def _shared(name: str, settings: tuple) -> Detector:
    return create_detector(name, **dict(settings))


def load_detector(detector: str | Detector | None = None, min_face: int | None = None, **settings) -> Detector:
    """A detector by name (built once per name and settings, then shared), or ``detector`` itself when
    it is one already. Left out, the name is ``FACEGALLERY_DETECTOR`` or :data:`DEFAULT_DETECTOR`, and
    ``min_face`` (smallest face side looked for, pixels) ``FACEGALLERY_MIN_FACE`` or the detector's own
    default."""
    if detector is not None and not isinstance(detector, str):
        return detector
    name = detector or os.environ.get("FACEGALLERY_DETECTOR") or DEFAULT_DETECTOR
    if name not in detector_names():
        where = "" if detector else "FACEGALLERY_DETECTOR: "
        raise UserError(f"{where}unknown face detector {name!r}; known: {', '.join(detector_names())}")
    if min_face is None and os.environ.get("FACEGALLERY_MIN_FACE"):
        raw = os.environ["FACEGALLERY_MIN_FACE"]
        if not raw.isdigit():
            raise UserError(f"FACEGALLERY_MIN_FACE={raw!r}: give a face size in pixels, 8..4096")
        min_face = int(raw)
    if min_face is not None:
        if not 8 <= int(min_face) <= 4096:
            raise UserError(f"min_face {min_face}: give a face size in pixels, 8..4096")
        settings["min_face"] = int(min_face)
    return _shared(name, tuple(sorted(settings.items())))


def describe_text(description: dict) -> str:
    """A detector's description (:func:`describe`) in words: ``yunet (min_face 20, threshold 0.6, ...)``."""
    rest = ", ".join(f"{k} {v}" for k, v in description.items() if k != "name")
    return f"{description.get('name')} ({rest})" if rest else str(description.get("name"))
