"""A face of a photo: the crop the embedder sees and where it was.

Without detection (``detect="off"``) the whole image is one face crop, as in the PubFig83 protocol.
Finding faces (``auto`` / ``on``) is :mod:`facegallery.detection`'s, which also reads a photo's faces
under any mode (``faces_in``, ``read_faces``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegallery.alignment import PUBFIG83, Template
from facegallery.images import jpeg_thumbnail, warn_skip

DETECT_MODES = ("auto", "on", "off")


@dataclass
class Face:
    """One face of a photo: the crop to embed and where it came from. A face read back from the face
    cache has no crop but its ``embedding`` and thumbnail (``jpeg``)."""

    crop: np.ndarray | None  # RGB uint8 (H, W, 3) in the embedder's template
    box: list[float]  # [x0, y0, x1, y1] in the photo's (EXIF-upright) pixels
    detected: bool = False  # False: the whole image was taken as the crop
    landmarks: list[list[float]] | None = None
    detection_score: float | None = None
    template: str | None = None  # the alignment template ``crop`` is in
    scheme: str | None = None  # which points ``landmarks`` are (alignment.DLIB_5 or EYES_NOSE_MOUTH)
    embedding: np.ndarray | None = None  # (D,) once embedded
    jpeg: bytes | None = field(default=None, repr=False)

    def thumbnail(self) -> bytes:
        """A small JPEG of the face (what galleries keep per photo)."""
        if self.jpeg is None:
            self.jpeg = jpeg_thumbnail(self.crop)
        return self.jpeg


#: A whole image smaller than this on either side is no face crop (a 1x1 "photo" would otherwise be
#: embedded and averaged into a person's centroid).
MIN_CROP_SIDE = 20


def whole_image(pixels: np.ndarray, template: Template = PUBFIG83) -> Face:
    """The whole picture as one face crop framed as PubFig83's, carried into ``template`` (by dlib's
    landmarks found where such crops hold the face) unless it is PubFig83's own."""
    from facegallery.landmarks import to_template

    h, w = pixels.shape[:2]
    return Face(crop=to_template([pixels], template)[0], box=[0.0, 0.0, float(w), float(h)], template=template.name)


def whole_faces(pixels: np.ndarray, template: Template = PUBFIG83) -> list[Face]:
    """``[whole_image(pixels, template)]``, or no face (warned) for an image under :data:`MIN_CROP_SIDE`
    a side."""
    h, w = pixels.shape[:2]
    if min(h, w) < MIN_CROP_SIDE:
        warnings.warn(
            f"a {w}x{h} image is too small to be a face crop (under {MIN_CROP_SIDE} px a side): no face in it",
            stacklevel=3,
        )
        return []
    return [whole_image(pixels, template)]


def not_one_face(faces: list[Face]) -> str:
    """Why a photo that should show one person cannot be used (it shows none, or several)."""
    return "no face found" if not faces else f"{len(faces)} faces found; use photos showing only this person"


def only_face(faces: list[Face], where: Path) -> Face | None:
    """The face of a photo that should show exactly one person (an enrolment or library photo); None,
    warned, when it shows no face or several."""
    if len(faces) == 1:
        return faces[0]
    warn_skip(where, not_one_face(faces))
    return None


def box_overlap(a: list[float], b: list[float]) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def face_at(faces: list[Face], box: list[float], min_overlap: float = 0.3) -> Face | None:
    """The face whose box overlaps ``box`` most (at least ``min_overlap`` IoU): how a face answered in a
    photo of several is picked again, e.g. to enrol it under a name."""
    best = max(faces, key=lambda f: box_overlap(f.box, box), default=None)
    return best if best is not None and box_overlap(best.box, box) >= min_overlap else None
