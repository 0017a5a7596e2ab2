"""Face detection without dlib: dlib's CC0 MMOD CNN detector, its pyramid, scoring and overlap rules.

How dlib's ``cnn_face_detection_model_v1`` finds faces, rebuilt step by step:

1. pyramid: the photo and its downscalings by 5/6 (``pyramid_down<6>``, down to 5 rows) are tiled into
   one image, the full-size level on the left, smaller levels down a second column from the bottom
   right, 10 pixels apart with an 11-pixel border (``compute_tiled_image_pyramid_details``). dlib fills
   it in network units ((RGB - mean) / 256, 0 elsewhere) and makes each level by a corner-aligned
   bilinear resize of the one before; so one network pass scores every scale (the pyramid is batched).
2. scoring: :class:`~facegallery.models.dlib_mmod.MmodNet` gives a score per cell; every cell above the
   threshold (0) is an 80x80 window centred where the cell maps to in the tiled image.
3. back to the photo: a window belongs to the pyramid level nearest its centre and is mapped up through
   the levels (``point_up``: p * 6/5 + 0.3 per level), then rounded to whole pixels.
4. non-maximum suppression: by falling score, a window is dropped if it overlaps a kept one by more
   than 0.338 of their bounding rectangle, or covers all of it (dlib's ``test_box_overlap``).

Boxes are returned in pixel-edge coordinates ([x0, y0, x1, y1], dlib's inclusive rectangle + 1 on the
right and bottom). A face smaller than the window (~80 px) is found by upscaling the photo first, as
:func:`facegallery.detection.scan` does.

The weights ship as ``weights/dlib-mmod-face/detector.safetensors`` (0.7 MB; batch norms folded),
converted from dlib's file by ``python -m facegallery.convert_dlib detector DAT``.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facegallery.errors import UserError
from facegallery.models.dlib_mmod import MmodNet, output_to_input, smallest_input

WEIGHTS = Path(__file__).parent / "weights" / "dlib-mmod-face" / "detector.safetensors"
#: dlib's pyramid_down<6>: each level is 5/6 of the one before; levels stop under this many rows.
RATE, MIN_LEVEL_ROWS = 5 / 6, 5


def level_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """(rows, cols) of each pyramid level, the photo first."""
    sizes = [(h, w)]
    while True:
        h, w = math.floor(RATE * h), math.floor(RATE * w)
        if h * w == 0 or h < MIN_LEVEL_ROWS:
            return sizes
        sizes.append((h, w))


def tile_layout(h: int, w: int, padding: int = 10, outer: int = 11) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """Where each pyramid level sits in dlib's tiled image: ``(top, left, rows, cols)`` per level and the
    tiled image's rows and cols. Levels that would overlap the photo's own tile are left out, as dlib
    leaves them."""
    sizes = level_sizes(h, w)
    total = sum(r + padding for r, _ in sizes) - 2 * padding
    height, prev_cols = 0, 0
    for r, c in sizes:  # how far the first column goes before the rest fits beside it, going up
        if c <= w - prev_cols - padding and (height - h) * 2 >= total - h:
            break
        height += r + padding
        prev_cols = c
    height -= padding
    rects, y, i = [], outer, 0
    while y < height + outer and i < len(sizes):
        rects.append((y, outer, *sizes[i]))
        y += sizes[i][0] + padding
        i += 1
    y -= padding
    right = outer + w - 1  # the second column, bottom up, right-aligned
    while i < len(sizes):
        r, c = sizes[i]
        top, left = y - r, right - c + 1
        if top < outer + h and left < outer + w:  # would cut into the photo's own tile
            break
        rects.append((top, left, r, c))
        y -= r + padding
        i += 1
    return rects, height + 2 * outer, w + 2 * outer


class MmodDetector:
    """dlib's MMOD face detector on PyTorch: ``detect(pixels) -> (boxes (N, 4), scores (N,))``."""

    def __init__(self, model: MmodNet, settings: dict, threshold: float = 0.0):
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.settings = settings
        self.threshold = threshold
        self.window = int(settings["window_width"]), int(settings["window_height"])
        self._mean = torch.tensor(settings["mean"], dtype=torch.float32)

    def tiled(self, pixels: np.ndarray) -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
        """The tiled pyramid of an RGB uint8 photo in network units (1, 3, rows, cols), held channels-last
        (what the CPU convolutions run fastest on), and its layout."""
        h, w = pixels.shape[:2]
        rects, rows, cols = tile_layout(h, w, self.settings["padding"], self.settings["outer_padding"])
        hwc = torch.zeros(rows, cols, 3)
        top, left = rects[0][:2]
        photo = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"]))
        hwc[top : top + h, left : left + w] = (photo.float() - self._mean) / 256
        data = hwc.permute(2, 0, 1)[None]  # a channels-last view, no copy
        for (t0, l0, r0, c0), (t1, l1, r1, c1) in zip(rects, rects[1:]):
            src = data[:, :, t0 : t0 + r0, l0 : l0 + c0]
            data[:, :, t1 : t1 + r1, l1 : l1 + c1] = F.interpolate(
                src, size=(r1, c1), mode="bilinear", align_corners=True
            )
        return data, rects

    @torch.inference_mode()
    def scores(self, pixels: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
        """The network's score map over the tiled pyramid (rows', cols') and the pyramid's layout."""
        data, rects = self.tiled(pixels)
        return self.model(data)[0, 0].numpy(), rects

    def detect(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes (N, 4; pixel edges) and scores (N,) in an RGB uint8 photo, best first."""
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise UserError(f"expected an RGB uint8 image (H, W, 3), got {pixels.dtype} {pixels.shape}")
        if min(pixels.shape[:2]) + 2 * self.settings["outer_padding"] < smallest_input():
            return np.zeros((0, 4)), np.zeros(0)  # too small for one window of the network
        score_map, rects = self.scores(pixels)
        rows, cols = np.nonzero(score_map > self.threshold)
        score = score_map[rows, cols].astype(np.float64)
        order = np.argsort(-score, kind="stable")
        x, y = output_to_input(rows[order], cols[order])
        boxes = self._to_photo(x, y, rects)
        keep = nms(boxes, self.settings["nms_iou"], self.settings["nms_covered"])
        boxes = boxes[keep]
        boxes[:, 2:] += 1  # dlib's inclusive right and bottom -> pixel edges
        return boxes, score[order][keep]

    def _to_photo(self, x: np.ndarray, y: np.ndarray, rects: list[tuple[int, int, int, int]]) -> np.ndarray:
        """Windows centred at tiled-image (x, y) as whole-pixel inclusive photo rectangles (N, 4)."""
        ww, wh = self.window
        r = np.array(rects, np.float64)  # top, left, rows, cols
        # dlib's nearest_rect: the level holding the centre, else the nearest level (first on ties)
        dx = np.maximum(0, np.maximum(r[None, :, 1] - x[:, None], x[:, None] - (r[None, :, 1] + r[None, :, 3] - 1)))
        dy = np.maximum(0, np.maximum(r[None, :, 0] - y[:, None], y[:, None] - (r[None, :, 0] + r[None, :, 2] - 1)))
        level = np.argmin(np.hypot(dx, dy), axis=1)
        x0, y0 = x - (ww - 1) / 2 - r[level, 1], y - (wh - 1) / 2 - r[level, 0]
        x1, y1 = x0 + ww - 1, y0 + wh - 1
        corners = np.stack([x0, y0, x1, y1], 1)
        for _ in range(int(level.max(initial=0))):  # point_up once per level still to climb
            climbing = level > 0
            corners[climbing] = corners[climbing] / RATE + 0.3
            level = level - climbing
        return np.floor(corners + 0.5)


def nms(boxes: np.ndarray, iou: float, covered: float) -> list[int]:
    """Indices of ``boxes`` (inclusive [l, t, r, b], best first) kept by dlib's overlap rule: a box is
    dropped if its intersection with a kept box exceeds ``iou`` of their bounding rectangle or
    ``covered`` of either box."""
    keep: list[int] = []
    if len(boxes) == 0:
        return keep
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    for i in range(len(boxes)):
        if keep:
            k = np.array(keep)
            b, kb = boxes[i], boxes[k]
            iw = np.minimum(b[2], kb[:, 2]) - np.maximum(b[0], kb[:, 0]) + 1
            ih = np.minimum(b[3], kb[:, 3]) - np.maximum(b[1], kb[:, 1]) + 1
            inner = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
            ow = np.maximum(b[2], kb[:, 2]) - np.minimum(b[0], kb[:, 0]) + 1
            oh = np.maximum(b[3], kb[:, 3]) - np.minimum(b[1], kb[:, 1]) + 1
            hit = (inner > 0) & ((inner / (ow * oh) > iou) | (inner / area[i] > covered) | (inner / area[k] > covered))
            if hit.any():
                continue
        keep.append(i)
    return keep


def save(model: MmodNet, settings: dict, out: str | Path, metadata: dict | None = None) -> Path:
    """Write the network and its settings as one safetensors file (settings in its metadata)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"settings": json.dumps(settings), **(metadata or {})}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out), metadata=meta)
    return out


def load(path: str | Path = WEIGHTS) -> MmodDetector:
    """The detector stored by :func:`save`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: the face detector's weights are missing; reinstall facegallery")
    with safe_open(str(path), "pt") as f:
        settings = json.loads(f.metadata()["settings"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    model = MmodNet()
    model.load_state_dict(state)
    return MmodDetector(model, settings)


@cache
def shipped() -> MmodDetector:
    """The shipped detector (converted from dlib's CC0 ``mmod_human_face_detector.dat``)."""
    return load(WEIGHTS)
