"""dlib's pretrained face recognition ResNet (128-D) as an embedder, from the optional ``dlib`` extra.

The network expects a 150x150 chip aligned by dlib's own 5-point template. This backend is dlib-bin's
whole pipeline, kept for comparison: it reads PubFig83-framed crops (its template; detection aligns found
faces into it) and dlib itself places the landmarks in them and cuts the chip, the one embedder that
aligns for itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facegallery.alignment import CROP_FACE_BOX, PUBFIG83
from facegallery.detectors.dlib import dlib_model_file, import_dlib
from facegallery.images import resize

RECOGNITION_WEIGHTS = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_WEIGHTS = "shape_predictor_5_face_landmarks.dat"
CHIP_SIZE = 150
CHIP_PADDING = 0.25
#: Identification distance (squared, unit vectors, divided by 1 + 1/n for a centroid of n photos) above
#: which a face is unknown, calibrated as training calibrates its own: the balanced open-set accuracy of
#: PubFig83 train photos, 50 known identities' centroids of 3 photos against 13 held-out ones, is best
#: (0.966) at 0.0818 (0.109 by raw distance); dlib's own rule for a pair of photos, Euclidean 0.6 (0.36
#: here), would call every stranger known (accuracy 0.50).
#: ``python benchmarks/bench_detection.py calibrate --model dlib --gallery-per-id 3 --genuine-per-id 2
#: --per-impostor 8`` measures it.
THRESHOLD = 0.0818


def fingerprint(weights: list[Path]) -> str:
    """``dlib:<hash>`` of the weights files' bytes and the chip geometry: it changes with either."""
    h = hashlib.sha1()
    for path in weights:
        h.update(path.read_bytes())
    h.update(repr((CROP_FACE_BOX, CHIP_SIZE, CHIP_PADDING)).encode())
    return f"dlib:{h.hexdigest()[:16]}"


class DlibEmbedder:
    """dlib_face_recognition_resnet_model_v1 behind the :class:`~facegallery.embedder.Embedder`
    contract; dlib's vectors are scaled to unit length so distances are squared Euclidean in [0, 4]."""

    name = "dlib"
    input_size = CHIP_SIZE
    template = PUBFIG83  # it reads PubFig83-framed crops and finds the landmarks in them itself

    def __init__(self) -> None:
        dlib = import_dlib()
        self._dlib = dlib
        rec, marks = dlib_model_file(RECOGNITION_WEIGHTS), dlib_model_file(LANDMARK_WEIGHTS)
        self._net = dlib.face_recognition_model_v1(str(rec))
        self._shape = dlib.shape_predictor(str(marks))
        self.fingerprint = fingerprint([rec, marks])
        self.threshold: float | None = THRESHOLD
        self.config: dict = {}
        self.spec: dict = {
            "input_size": CHIP_SIZE,
            "template": "dlib get_face_chip of the crop's landmarks",
            "normalisation": "dlib's",
            "embedding_dim": 128,
            "precision": "fp32 (dlib)",
            "licence": "CC0-1.0",
            "training_data": "dlib's ~3M faces (see dlib-resnet29-v1's card)",
        }

    def chip(self, crop: np.ndarray) -> np.ndarray:
        """dlib's aligned 150x150 chip of a face crop."""
        crop = np.ascontiguousarray(resize(np.asarray(crop, dtype=np.uint8), self.input_size))
        s = self.input_size
        x0, y0, x1, y1 = (int(round(f * s)) for f in CROP_FACE_BOX)
        shape = self._shape(crop, self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.asarray(self._dlib.get_face_chip(crop, shape, CHIP_SIZE, CHIP_PADDING), dtype=np.uint8)

    def embed(self, images: np.ndarray | Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Unit embeddings (N, 128) of RGB uint8 PubFig83-framed face crops of any size (dlib finds the
        landmarks in each crop)."""
        out = []
        for i in range(0, len(images), batch_size):
            chips = [self.chip(im) for im in images[i : i + batch_size]]
            out.append(np.asarray(self._net.compute_face_descriptor(chips), dtype=np.float64))
        if not out:
            return np.zeros((0, 128), np.float32)
        emb = np.concatenate(out)
        return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
