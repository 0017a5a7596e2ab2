"""Finding the faces of a photo: a detector (:mod:`facegallery.detectors`, chosen by the caller) gives
:class:`~facegallery.detectors.Detection` records, and each becomes a :class:`~facegallery.faces.Face`
whose crop is aligned into the embedder's template, here and nowhere else.

A face is aligned by its detector's own landmarks where the template places that detector's points
(YuNet's five in dlib's chip: eye centres, nose tip, mouth corners), else by dlib's 5-point shape
predictor run in its box (detectors that place no landmarks: ``mmod``, ``dlib-hog``, ``dlib-cnn``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facegallery.alignment import DLIB_5, PUBFIG83, Template, align
from facegallery.detectors import Detection, Detector, load_detector
from facegallery.errors import TooLarge, UserError
from facegallery.faces import Face, whole_faces
from facegallery.images import MAX_PIXELS, load_image

#: In ``auto`` mode an image without a detected face is taken whole as a face crop when neither side
#: exceeds this (a face crop such as PubFig83's 100x100); larger photos without a face give no face.
WHOLE_IMAGE_MAX_SIDE = 250


def landmarks_of(
    pixels: np.ndarray, detections: list[Detection], detector: Detector, template: Template
) -> list[tuple[np.ndarray, str]]:
    """The points each face is aligned by and their scheme: the detector's own where ``template``
    places them, else dlib's shape predictor's in the face's box (mapped to the box convention that
    predictor was trained on where the detector frames faces otherwise: ``detector.dlib_box``)."""
    from facegallery.landmarks import shipped

    own = detector.landmark_scheme if template.places(detector.landmark_scheme) else None
    out: list[tuple[np.ndarray, str] | None] = [
        (d.landmarks, own) if own is not None and d.landmarks is not None else None for d in detections
    ]
    rest = [i for i, o in enumerate(out) if o is None]
    if rest:
        to_dlib = getattr(detector, "dlib_box", None)
        boxes = [to_dlib(detections[i].box) if to_dlib else detections[i].box for i in rest]
        for i, marks in zip(rest, shipped().predict_many([pixels] * len(rest), boxes)):
            out[i] = (marks, DLIB_5)
    return out  # type: ignore[return-value]


def aligned_faces(pixels: np.ndarray, detections: list[Detection], detector: Detector, template: Template) -> list[Face]:
    """Each detection of ``pixels`` as a :class:`Face` aligned into ``template``, largest first."""
    h, w = pixels.shape[:2]
    detections = sorted(detections, key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    faces = []
    for d, (marks, scheme) in zip(detections, landmarks_of(pixels, detections, detector, template)):
        faces.append(
            Face(
                crop=align(pixels, marks, template, scheme),
                box=[round(min(max(v, 0.0), float(side)), 2) for v, side in zip(d.box, (w, h, w, h))],
                template=template.name,
                detected=True,
                landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in marks],
                detection_score=round(d.score, 4),
            )
        )
    return faces


def detect_faces(
    pixels: np.ndarray, mode: str = "auto", detector: str | Detector | None = None, template: Template = PUBFIG83
) -> list[Face]:
    """Every face of an RGB uint8 photo, aligned into ``template`` (the embedder's), largest first.

    ``detector``: a name (:func:`~facegallery.detectors.load_detector`) or a detector; left out, the
    default (``FACEGALLERY_DETECTOR``, else ``yunet``). A face cut by the photo's border is reported with
    its box clipped to the photo. ``mode='on'``: only detected faces (maybe none). ``mode='auto'``: as
    'on', but an image no larger than :data:`WHOLE_IMAGE_MAX_SIDE` without a detected face is taken whole.
    """
    if mode not in ("auto", "on"):
        raise UserError(f"detection mode {mode!r}: use auto or on here")
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise UserError(f"expected an RGB uint8 image (H, W, 3), got {pixels.dtype} {pixels.shape}")
    h, w = pixels.shape[:2]
    if h * w > MAX_PIXELS:
        raise TooLarge(f"a {w}x{h} image is above the limit of {MAX_PIXELS:,} pixels")
    pixels = np.ascontiguousarray(pixels)
    det = load_detector(detector)
    faces = aligned_faces(pixels, det.detect(pixels), det, template)
    if not faces and mode == "auto" and max(h, w) <= WHOLE_IMAGE_MAX_SIDE:
        return whole_faces(pixels, template)
    return faces


def faces_in(
    pixels: np.ndarray, detect: str = "off", template: Template = PUBFIG83, detector: str | Detector | None = None
) -> list[Face]:
    """The faces of a decoded photo under a detection mode ("off": the whole image is one crop, aligned
    into ``template`` by the landmarks found where a PubFig83-framed crop holds the face)."""
    if detect == "off":
        return whole_faces(pixels, template)
    return detect_faces(pixels, detect, detector, template)


def read_faces(
    path: str | Path, detect: str = "off", template: Template = PUBFIG83, detector: str | Detector | None = None
) -> list[Face]:
    """Decode ``path`` (one-line :class:`~facegallery.images.ImageReadError` if it is not a picture)
    and return its faces."""
    return faces_in(load_image(path), detect, template, detector)


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
