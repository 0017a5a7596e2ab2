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

from functools import lru_cache
from pathlib import Path

import numpy as np

from facegallery.alignment import Template, align, crop_box, similarity_transform
from facegallery.errors import UserError

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
        grey = pixels if pixels.ndim == 2 else pixels.astype(np.uint16).sum(2) // 3
        grey = grey.astype(np.float32)
        h, w = grey.shape
        # dlib's rectangle(x0, y0, x1 - 1, y1 - 1); (0, 0) -> its top left, (1, 1) -> its bottom right
        x0, y0 = int(round(box[0])), int(round(box[1]))
        x1, y1 = int(round(box[2])) - 1, int(round(box[3])) - 1
        origin = np.array([x0, y0], np.float32)
        scale = np.array([x1 - x0, y1 - y0], np.float32)
        shape = self.initial.copy()
        for level in range(len(self.leaves)):
            m = similarity_transform(self.initial, shape)[:, :2].astype(np.float32)
            points = (self.deltas[level] @ m.T + shape[self.anchors[level]]) * scale + origin
            px = np.floor(points + 0.5).astype(np.int64)
            inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
            values = np.zeros(len(px), np.float32)
            values[inside] = grey[px[inside, 1], px[inside, 0]]
            node = np.zeros(len(self._trees), np.int64)
            for _ in range(self.depth):
                diff = values[self.idx1[level, self._trees, node]] - values[self.idx2[level, self._trees, node]]
                node = 2 * node + np.where(diff > self.thresholds[level, self._trees, node], 1, 2)
            leaf = node - self.thresholds.shape[2]
            shape = shape + self.leaves[level, self._trees, leaf].sum(0).reshape(-1, 2)
        return (shape * scale + origin + 0.5).astype(np.float64)


def align_crop(crop: np.ndarray, template: Template) -> np.ndarray:
    """A whole face crop framed as PubFig83's, aligned into ``template`` by the landmarks found in the
    box where such crops hold the face."""
    return align(crop, shipped().predict(crop, crop_box(crop)), template)


@lru_cache(maxsize=None)
def shipped() -> ShapePredictor:
    """The shipped 5-point predictor (converted from dlib's CC0 file)."""
    from safetensors.numpy import load_file

    if not WEIGHTS.is_file():
        raise UserError(f"{WEIGHTS}: the shipped landmark model is missing; reinstall facegallery")
    return ShapePredictor(load_file(str(WEIGHTS)))
