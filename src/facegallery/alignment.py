"""Alignment templates: where the 5 landmarks of a face go in the crop an embedder reads.

Every embedder reads faces in one template: ``resface64`` was trained on PubFig83's own 100x100 crops
(:data:`PUBFIG83`), dlib's ResNet on dlib's 150x150 "face chips" (:data:`DLIB_CHIP`). Detection aligns
each found face straight into the embedder's template (one resampling of the photo); a face crop taken
whole is assumed to be framed as PubFig83's crops are: its landmarks are found inside the box where
faces sit in such crops (:func:`crop_box`) and it is aligned by them.

Points are in pixel-edge coordinates (the centre of pixel index i is at i + 0.5). A template places
dlib's 5 points (:data:`DLIB_5`: outer and inner corner of the eye on the image's right, outer and inner
corner of the other eye, base of the nose) and may place other detectors' points too: YuNet's
(:data:`EYES_NOSE_MOUTH`: eye centres, nose tip, mouth corners, the image's left first), measured
where they fall in the template on training photos, so that faces are aligned by the detector's own
points without a second landmark model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Where dlib's 5-point landmarks fall in a PubFig83 crop, as fractions of its width and height
#: (x, y). Measured on 2000 random PubFig83 train crops (seed 0), each upsampled 4x for sub-pixel
#: landmarks: dlib's HOG box (found in 1964), the shape predictor's points in it, and the mean of the
#: points of the 1729 crops within 3 robust SDs of the median (the median agrees to 0.002).
#: ``python benchmarks/bench_detection.py canonical`` measures them again.
CANONICAL_LANDMARKS = np.array(
    [
        [0.6723, 0.4272],
        [0.5732, 0.4339],
        [0.3256, 0.4315],
        [0.4250, 0.4358],
        [0.5014, 0.6248],
    ],
    dtype=np.float64,
)

#: Where dlib's HOG detector puts the face in a PubFig83 crop, as fractions [x0, y0, x1, y1] of its
#: sides (median over 2000 random train crops, seed 0): a whole crop's landmarks are looked for there.
CROP_FACE_BOX = (0.17, 0.25, 0.81, 0.88)

#: dlib's 5-point face template on the unit square, before padding, in pixel-index coordinates
#: (``get_face_chip_details`` in dlib/image_transforms/interpolation.h).
DLIB_TEMPLATE_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ],
    dtype=np.float64,
)


#: Landmark schemes: dlib's shape predictor's 5 points, and YuNet's five.
DLIB_5, EYES_NOSE_MOUTH = "dlib-5", "eyes-nose-mouth"

#: Where YuNet's five points fall in dlib's 150x150 chip (pixels): medians over 986 of 1,000 random
#: CelebA training photos (seed 0, upscaled 3x), each photo's chip transform given by dlib's shape
#: predictor in the MMOD port's box (the default model's reference alignment), YuNet's points carried
#: through it. ``python benchmarks/bench_detectors.py template`` measures them again.
YUNET_IN_DLIB_CHIP = ((47.456, 44.656), (101.33, 45.505), (73.751, 78.112), (49.811, 100.81), (97.527, 101.643))
#: The same in a PubFig83 crop (100x100), by the same measurement.
YUNET_IN_PUBFIG83 = ((37.141, 41.991), (62.533, 42.073), (49.717, 57.592), (38.555, 68.427), (61.06, 68.538))


@dataclass(frozen=True)
class Template:
    """A named alignment: the landmarks' positions (pixels, edge coordinates) in a ``size`` crop, dlib's
    5 points in ``points``, other schemes' in ``others`` (scheme, points)."""

    name: str
    size: int
    points: tuple[tuple[float, float], ...]
    others: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = ()

    def pixels(self, scheme: str = DLIB_5) -> np.ndarray:
        """The landmark positions (5, 2) of ``scheme`` in the template's crop, in pixels."""
        pts = self.points if scheme == DLIB_5 else dict(self.others)[scheme]
        return np.array(pts, dtype=np.float64)

    def places(self, scheme: str | None) -> bool:
        """Whether faces can be aligned into this template by ``scheme``'s points."""
        return scheme == DLIB_5 or scheme in dict(self.others)


def _pubfig83(size: int = 100) -> Template:
    others = ((EYES_NOSE_MOUTH, YUNET_IN_PUBFIG83),) if size == 100 else ()
    return Template("pubfig83-crop", size, tuple(map(tuple, CANONICAL_LANDMARKS * size)), others)


def dlib_chip(size: int = 150, padding: float = 0.25) -> Template:
    """dlib's ``get_face_chip(img, shape5, size, padding)`` geometry: the padded template scaled to
    ``size`` in dlib's pixel-index coordinates, moved to edge coordinates."""
    pts = (DLIB_TEMPLATE_5 + padding) / (1 + 2 * padding) * size + 0.5
    others = ((EYES_NOSE_MOUTH, YUNET_IN_DLIB_CHIP),) if (size, padding) == (150, 0.25) else ()
    return Template(f"dlib-chip-{size}-{padding:g}", size, tuple(map(tuple, pts)), others)


PUBFIG83 = _pubfig83()
DLIB_CHIP = dlib_chip()
TEMPLATES = {t.name: t for t in (PUBFIG83, DLIB_CHIP)}


def canonical_points(size: int = PUBFIG83.size) -> np.ndarray:
    """Where the landmarks sit in a ``size`` x ``size`` PubFig83-framed crop."""
    return CANONICAL_LANDMARKS * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` points onto
    ``dst`` (Umeyama 1991, as dlib's ``find_similarity_transform``), as a 2x3 matrix ``M`` with
    ``dst ~ M @ [x, y, 1]``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc**2).sum() / len(src)
    u, sv, vt = np.linalg.svd(dc.T @ sc / len(src))
    d = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rot = u @ np.diag(d) @ vt
    scale = float((sv * d).sum() / var_s) if var_s > 0 else 1.0
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def warp(pixels: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` image of ``pixels`` under the 2x3 transform ``m`` (photo -> crop).

    Strong reductions are warped at up to 4x the size and then downsampled, so that large faces are
    antialiased (dlib uses an image pyramid for the same reason); pixels outside the photo are black."""
    scale = math.hypot(m[0, 0], m[1, 0])
    k = int(min(4, max(1, math.ceil(1.0 / scale - 1e-6)))) if scale > 0 else 1
    inv = np.linalg.inv(np.vstack([m * k, [0.0, 0.0, 1.0]]))[:2]  # output pixel -> photo pixel
    out = Image.fromarray(pixels).transform(
        (size * k, size * k), Image.Transform.AFFINE, data=tuple(inv.ravel()), resample=Image.Resampling.BILINEAR
    )
    if k > 1:
        out = out.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def align(pixels: np.ndarray, landmarks: np.ndarray, template: Template = PUBFIG83, scheme: str = DLIB_5) -> np.ndarray:
    """The crop of ``template`` in which ``landmarks`` (photo pixels, of ``scheme``) land on its positions."""
    return warp(pixels, similarity_transform(landmarks, template.pixels(scheme)), template.size)


def align_by(pixels: np.ndarray, point_sets: list[tuple[np.ndarray, str]], template: Template) -> np.ndarray:
    """The crop of ``template`` whose positions the photo's points (several sets, each of its scheme)
    fit best: one least-squares similarity over all of them."""
    src = np.concatenate([np.asarray(p, np.float64) for p, _ in point_sets])
    dst = np.concatenate([template.pixels(scheme) for _, scheme in point_sets])
    return warp(pixels, similarity_transform(src, dst), template.size)


def crop_box(crop: np.ndarray) -> tuple[float, float, float, float]:
    """:data:`CROP_FACE_BOX` in a PubFig83-framed crop's pixels."""
    h, w = crop.shape[:2]
    return (CROP_FACE_BOX[0] * w, CROP_FACE_BOX[1] * h, CROP_FACE_BOX[2] * w, CROP_FACE_BOX[3] * h)
