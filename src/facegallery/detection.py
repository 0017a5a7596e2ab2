"""Finding faces in ordinary photos and aligning them to the crop geometry the embedders were trained on.

Detectors are pluggable: :data:`DETECTORS` maps a name to a factory, :func:`get_detector` builds and
caches one. Every detector returns boxes in the photo's pixels; the 5-point landmarks come from dlib's
shape predictor, and :func:`~facegallery.alignment.align` maps them with a least-squares similarity
transform straight into the template the embedder reads (:mod:`facegallery.alignment`).

The default, ``mmod``, is dlib's CC0 MMOD CNN face detector run natively in PyTorch
(:mod:`facegallery.mmod`; boxes and scores equal dlib-bin's), its weights shipped in the package: plain
``pip install facegallery`` reads group photos. dlib-bin's own detectors stay available by name
(``dlib-hog``: HOG + linear SVM, ``dlib-cnn``: the same MMOD net in dlib) with the optional ``dlib``
extra (``pip install 'facegallery[dlib]'``), for comparison and benchmarks.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facegallery.alignment import PUBFIG83, Template, align
from facegallery.errors import TooLarge, UserError
from facegallery.faces import Face, whole_faces
from facegallery.images import MAX_PIXELS, load_image

#: In ``auto`` mode an image without a detected face is taken whole as a face crop when neither side
#: exceeds this (a face crop such as PubFig83's 100x100); larger photos without a face give no face.
WHOLE_IMAGE_MAX_SIDE = 250
#: Smallest face box side (pixels) detection looks for; the photo is rescaled so that such a face
#: fills the detector's window. A detector's box spans brows to chin, about 0.64 of a PubFig83 crop's
#: side, so 50 finds faces framed like an 80 px crop. With the MMOD detector on 1024x768 composites
#: (RESULTS 10): 50 finds 0.948 of faces from 60 px crops at 0.72 photos/s on one core, 30 finds 0.990
#: at 0.32 photos/s; ``FACEGALLERY_MIN_FACE`` changes it for every entry point.
MIN_FACE = 50
#: Cap on the rescaled photo the detector scans: above it the smallest face found grows instead.
MAX_SCAN_PIXELS = 4_000_000

INSTALL_HINT = "pip install 'facegallery[dlib]'"


@dataclass
class Detection:
    """One face found by a detector: box [x0, y0, x1, y1] (pixel edges) and a detector score."""

    box: tuple[float, float, float, float]
    score: float


class Detector(Protocol):
    """Finds face boxes in an RGB uint8 photo; ``window`` is the smallest face side it sees unscaled."""

    name: str
    window: int

    def detect(self, pixels: np.ndarray) -> list[Detection]: ...


# ----- dlib and its model files ----------------------------------------------------------------


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


class MmodFaceDetector:
    """dlib's MMOD CNN face detector, native (:mod:`facegallery.mmod`): frontal to profile-ish faces,
    scores are window margins (> 0: a face)."""

    name = "mmod"
    window = 80

    def __init__(self, threshold: float = 0.0):
        from facegallery.mmod import load

        self._det = load()
        self._det.threshold = threshold

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        boxes, scores = self._det.detect(pixels)
        return [Detection(tuple(float(v) for v in b), float(s)) for b, s in zip(boxes, scores)]


class DlibHogDetector:
    """dlib's HOG + linear SVM frontal face detector (fast, frontal and near-frontal faces).

    Scores are SVM margins; dlib's threshold 0.0 gave the best balance of recall and precision on the
    composite benchmark (benchmarks/bench_detection.py)."""

    name = "dlib-hog"
    window = 80

    def __init__(self, threshold: float = 0.0):
        self._det = import_dlib().get_frontal_face_detector()
        self.threshold = threshold

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        rects, scores, _ = self._det.run(pixels, 0, self.threshold)
        return [Detection(_rect_box(r), float(s)) for r, s in zip(rects, scores)]


class DlibCnnDetector:
    """dlib's MMOD CNN face detector (more poses, much slower on CPU)."""

    name = "dlib-cnn"
    window = 80

    def __init__(self, threshold: float = 0.0):
        self._det = import_dlib().cnn_face_detection_model_v1(str(dlib_model_file("mmod_human_face_detector.dat")))
        self.threshold = threshold

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        return [
            Detection(_rect_box(d.rect), float(d.confidence))
            for d in self._det(pixels, 0)
            if d.confidence >= self.threshold
        ]


#: Detectors by name. A new one is a class with ``name``, ``window`` and ``detect`` plus a line here.
DETECTORS: dict[str, Callable[[], Detector]] = {
    MmodFaceDetector.name: MmodFaceDetector,
    DlibHogDetector.name: DlibHogDetector,
    DlibCnnDetector.name: DlibCnnDetector,
}
DEFAULT_DETECTOR = MmodFaceDetector.name


@cache
def get_detector(name: str = DEFAULT_DETECTOR) -> Detector:
    """The detector called ``name`` (built once, then shared)."""
    if name not in DETECTORS:
        raise UserError(f"unknown face detector {name!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[name]()


def landmarks_in(pixels: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The 5 landmarks (5, 2) of the face in ``box``, in pixel-edge coordinates (dlib's CC0 shape
    predictor, run by :mod:`facegallery.landmarks` without dlib)."""
    from facegallery.landmarks import shipped

    return shipped().predict(pixels, box)


def settings() -> tuple[str, int]:
    """The detector and smallest face every entry point uses unless told otherwise:
    ``FACEGALLERY_DETECTOR`` (a name from :data:`DETECTORS`, e.g. ``dlib-hog`` with the dlib extra: ~5x
    faster, fewer turned faces) and ``FACEGALLERY_MIN_FACE`` (pixels; smaller finds smaller faces and
    scans more pixels), else :data:`DEFAULT_DETECTOR` and :data:`MIN_FACE`."""
    name = os.environ.get("FACEGALLERY_DETECTOR") or DEFAULT_DETECTOR
    if name not in DETECTORS:
        raise UserError(f"FACEGALLERY_DETECTOR={name!r}: unknown face detector; known: {', '.join(DETECTORS)}")
    raw = os.environ.get("FACEGALLERY_MIN_FACE") or str(MIN_FACE)
    if not raw.isdigit() or not 8 <= int(raw) <= 4096:
        raise UserError(f"FACEGALLERY_MIN_FACE={raw!r}: give a face size in pixels, 8..4096")
    return name, int(raw)


# ----- scanning a photo at the right scale -----------------------------------------------------


def scan(
    pixels: np.ndarray, detector: Detector, min_face: int = MIN_FACE, max_scan_pixels: int = MAX_SCAN_PIXELS
) -> list[Detection]:
    """Run ``detector`` on ``pixels`` rescaled so a ``min_face`` face fills its window (capped at
    ``max_scan_pixels``), with boxes mapped back to the photo's pixels."""
    h, w = pixels.shape[:2]
    scale = min(detector.window / max(min_face, 1), math.sqrt(max_scan_pixels / (h * w)))
    if abs(scale - 1.0) > 1e-3:
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        work = np.asarray(Image.fromarray(pixels).resize((sw, sh), Image.Resampling.BILINEAR))
        sx, sy = w / sw, h / sh
    else:
        work, sx, sy = pixels, 1.0, 1.0
    found = detector.detect(np.ascontiguousarray(work))
    return [Detection((d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy), d.score) for d in found]


# ----- the pipeline ----------------------------------------------------------------------------


def detect_faces(
    pixels: np.ndarray,
    mode: str = "auto",
    detector: str | Detector | None = None,
    template: Template = PUBFIG83,
    min_face: int | None = None,
) -> list[Face]:
    """Every face of an RGB uint8 photo, aligned into ``template`` (the embedder's), largest first.

    ``detector`` is a name from :data:`DETECTORS` or a detector object; ``min_face`` the smallest face
    box side looked for. Left out, both come from :func:`settings` (the environment, else the defaults).

    A face cut by the photo's border is reported with its box clipped to the photo (the landmarks, placed
    in the detector's whole box, may lie outside it).

    ``mode='on'``: only detected faces (maybe none). ``mode='auto'``: as 'on', but an image no larger
    than :data:`WHOLE_IMAGE_MAX_SIDE` without a detected face is taken whole as one crop.
    """
    if mode not in ("auto", "on"):
        raise UserError(f"detection mode {mode!r}: use auto or on here")
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise UserError(f"expected an RGB uint8 image (H, W, 3), got {pixels.dtype} {pixels.shape}")
    h, w = pixels.shape[:2]
    if h * w > MAX_PIXELS:
        raise TooLarge(f"a {w}x{h} image is above the limit of {MAX_PIXELS:,} pixels")
    pixels = np.ascontiguousarray(pixels)
    default_name, default_min = settings()
    det = get_detector(detector or default_name) if detector is None or isinstance(detector, str) else detector
    min_face = default_min if min_face is None else min_face
    found = sorted(scan(pixels, det, min_face), key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    faces = []
    for d in found:
        marks = landmarks_in(pixels, d.box)
        faces.append(
            Face(
                crop=align(pixels, marks, template),
                box=[round(min(max(v, 0.0), float(side)), 2) for v, side in zip(d.box, (w, h, w, h))],
                template=template.name,
                detected=True,
                landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in marks],
                detection_score=round(d.score, 4),
            )
        )
    if not faces and mode == "auto" and max(h, w) <= WHOLE_IMAGE_MAX_SIDE:
        return whole_faces(pixels)
    return faces


def faces_in(pixels: np.ndarray, detect: str = "off", template: Template = PUBFIG83) -> list[Face]:
    """The faces of a decoded photo under a detection mode ("off": the whole image is one crop), detected
    faces aligned into ``template`` (the embedder's)."""
    if detect == "off":
        return whole_faces(pixels)
    return detect_faces(pixels, mode=detect, template=template)


def read_faces(path: str | Path, detect: str = "off", template: Template = PUBFIG83) -> list[Face]:
    """Decode ``path`` (one-line :class:`~facegallery.images.ImageReadError` if it is not a picture)
    and return its faces."""
    return faces_in(load_image(path), detect, template)


# ----- drawing ---------------------------------------------------------------------------------


def draw_faces(pixels: np.ndarray, faces: list[dict]) -> Image.Image:
    """The photo with each answered face's box, landmarks and name (or 'unknown') drawn on it."""
    im = Image.fromarray(pixels)
    draw = ImageDraw.Draw(im)
    side = max(im.size)
    width = max(2, side // 300)
    font = ImageFont.load_default(size=max(12, side // 45))
    for f in faces:
        known = f.get("name") is not None
        colour = (40, 220, 60) if known else (255, 60, 40)
        x0, y0, x1, y1 = f["box"]
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        for x, y in f.get("landmarks") or []:
            draw.ellipse([x - width, y - width, x + width, y + width], fill=colour)
        label = f["name"] if known else "unknown"
        if f.get("distance") is not None:
            label += f" {f['distance']:.2f}"
        tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), label, font=font)
        ty = y0 - (ty1 - ty0) - 2 * width if y0 - (ty1 - ty0) - 2 * width >= 0 else y1
        draw.rectangle([x0, ty, x0 + tx1 - tx0 + 2 * width, ty + ty1 - ty0 + 2 * width], fill=colour)
        draw.text((x0 + width - tx0, ty + width - ty0), label, fill=(0, 0, 0), font=font)
    return im
