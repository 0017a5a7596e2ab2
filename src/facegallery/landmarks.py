"""5-point face landmarks without dlib: dlib's CC0 shape predictor (an ensemble of regression trees,
Kazemi & Sullivan 2014) evaluated in numpy.

Given a face box, the predictor starts from a mean shape in the box's unit square and refines it through
a cascade: each level samples the photo's grey levels at fixed points attached to the current shape
(each point anchored to a landmark, its offset turned and scaled as the shape is relative to the mean
shape), and every tree of the level walks down by comparing two of those samples, adding its leaf's
increment to the shape. The computation follows dlib's ``shape_predictor::operator()``: grey level
(R + G + B) / 3 of the nearest pixel, 0 outside the photo, the box's corners as dlib's inclusive
rectangle. Landmarks are returned in pixel-edge coordinates (+0.5), unrounded (dlib rounds them to
whole pixels).

The predictor's arrays ship as ``weights/dlib-landmarks5/landmarks.safetensors``, converted from
``shape_predictor_5_face_landmarks.dat`` by ``python -m facegallery.convert_dlib landmarks DAT``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from facegallery.alignment import PUBFIG83, Template, align, crop_box
from facegallery.errors import UserError
from facegallery.images import resize

WEIGHTS = Path(__file__).parent / "weights" / "dlib-landmarks5" / "landmarks.safetensors"
FIELDS = ("initial_shape", "splits", "thresholds", "leaves", "anchors", "deltas")


class ShapePredictor:
    """dlib's cascade of regression trees: ``predict(pixels, box) -> (parts, 2)`` landmarks."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        missing = [k for k in FIELDS if k not in arrays]
        if missing:
            raise UserError(f"shape predictor arrays lack {', '.join(missing)}")
        self.initial = arrays["initial_shape"].astype(np.float32).reshape(-1, 2)
        self.idx1, self.idx2 = arrays["splits"][..., 0], arrays["splits"][..., 1]
        self.thresholds = arrays["thresholds"].astype(np.float32)
        self.leaves = arrays["leaves"].astype(np.float32)
        self.anchors, self.deltas = arrays["anchors"], arrays["deltas"].astype(np.float32)
        self.depth = int(np.log2(self.thresholds.shape[2] + 1))
        self._trees = np.arange(self.thresholds.shape[1])

    @property
    def parts(self) -> int:
        return len(self.initial)

    def predict(self, pixels: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """The landmarks (parts, 2) of the face in ``box`` ([x0, y0, x1, y1], pixel edges) of an RGB or
        grey uint8 photo, in pixel-edge coordinates."""
        return self.predict_many([pixels], [box])[0]

    def predict_many(self, photos: list[np.ndarray], boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
        """:meth:`predict` for many faces at once (N, parts, 2): every level of the cascade runs over all
        faces together, their grey levels gathered from one flat buffer."""
        n = len(photos)
        if n == 0:
            return np.zeros((0, self.parts, 2))
        greys = [p if p.ndim == 2 else p.astype(np.uint16).sum(2) // 3 for p in photos]
        sizes = np.array([g.shape for g in greys], np.int64)  # (N, 2): h, w
        offsets = np.concatenate([[0], np.cumsum(sizes[:, 0] * sizes[:, 1])[:-1]])
        flat = np.concatenate([g.ravel() for g in greys]).astype(np.float32)
        # dlib's rectangle(x0, y0, x1 - 1, y1 - 1); (0, 0) -> its top left, (1, 1) -> its bottom right
        b = np.rint(np.asarray(boxes, np.float64)).astype(np.int64)
        origin = b[:, None, :2].astype(np.float32)
        scale = (b[:, None, 2:] - 1 - b[:, None, :2]).astype(np.float32)
        shape = np.repeat(self.initial[None], n, 0)  # (N, parts, 2)
        ref = self.initial - self.initial.mean(0)
        ref_c = ref[:, 0] + 1j * ref[:, 1]
        trees = self._trees[None, :]
        for level in range(len(self.leaves)):
            # the similarity taking the initial shape to each current one (closed form in complex numbers,
            # the least-squares fit dlib's find_similarity_transform makes); only its rotation-scale part
            cur = shape - shape.mean(1, keepdims=True)
            spread = (np.abs(ref_c) ** 2).sum()
            a = (
                (np.conj(ref_c)[None] * (cur[..., 0] + 1j * cur[..., 1])).sum(1) / spread
                if spread > 0
                else np.ones(n, complex)
            )  # one part: identity, as dlib
            d = self.deltas[level]  # (F, 2)
            dc = (d[:, 0] + 1j * d[:, 1])[None] * a[:, None]  # (N, F)
            anchor = shape[:, self.anchors[level]]  # (N, F, 2)
            points = (np.stack([dc.real, dc.imag], -1) + anchor) * scale + origin
            px = np.floor(points + 0.5).astype(np.int64)
            h, w = sizes[:, None, 0], sizes[:, None, 1]
            inside = (px[..., 0] >= 0) & (px[..., 0] < w) & (px[..., 1] >= 0) & (px[..., 1] < h)
            where = offsets[:, None] + np.clip(px[..., 1], 0, h - 1) * w + np.clip(px[..., 0], 0, w - 1)
            values = np.where(inside, flat[where], 0.0).astype(np.float32)  # (N, F)
            node = np.zeros((n, len(self._trees)), np.int64)
            for _ in range(self.depth):
                i1 = self.idx1[level][trees, node]  # (N, T)
                i2 = self.idx2[level][trees, node]
                diff = np.take_along_axis(values, i1, 1) - np.take_along_axis(values, i2, 1)
                node = 2 * node + np.where(diff > self.thresholds[level][trees, node], 1, 2)
            leaf = node - self.thresholds.shape[2]
            shape = shape + self.leaves[level][trees, leaf].sum(1).reshape(n, -1, 2)
        return (shape * scale + origin + 0.5).astype(np.float64)


def align_crops(crops: list[np.ndarray], template: Template) -> list[np.ndarray]:
    """Whole face crops framed as PubFig83's, each aligned into ``template`` by the landmarks found in
    the box where such crops hold the face."""
    marks = shipped().predict_many(crops, [crop_box(c) for c in crops])
    return [align(c, m, template) for c, m in zip(crops, marks)]


def to_template(crops: list[np.ndarray], template: Template) -> list[np.ndarray]:
    """Whole face crops framed as PubFig83's, in ``template``: as they are for PubFig83's own (the
    embedder resizes them), else brought to the template's size and aligned by their landmarks there
    (:func:`align_crops`)."""
    if template.name == PUBFIG83.name:
        return list(crops)
    return align_crops([resize(np.asarray(c, np.uint8), template.size) for c in crops], template)


@cache
def shipped() -> ShapePredictor:
    """The shipped 5-point predictor (converted from dlib's CC0 file)."""
    from safetensors.numpy import load_file

    if not WEIGHTS.is_file():
        raise UserError(f"{WEIGHTS}: the shipped landmark model is missing; reinstall facegallery")
    return ShapePredictor(load_file(str(WEIGHTS)))
