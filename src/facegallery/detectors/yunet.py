"""YuNet-n (Wu, Peng & Yu 2023, libfacedetection.train; Apache-2.0 weights) natively in PyTorch.

A 74 k-parameter anchor-free detector: a depthwise-separable backbone (stride 2 stem, max-pooling
between stages), a tiny top-down feature pyramid, and per stride 8 / 16 / 32 one head that predicts at
every feature-map cell a class logit, an objectness logit, a box (centre offset and log size, in units
of the stride) and five landmarks (offsets in units of the stride): eye centres, nose tip, mouth
corners. A face's score is ``sqrt(sigmoid(cls) * sigmoid(obj))``.

The weights ship as ``weights/yunet-n/detector.safetensors``, converted once from upstream's checkpoint
by ``python -m facegallery.convert_yunet`` with the batch norms folded into the convolutions, the
first convolution's input channels reordered so the network reads RGB (upstream reads BGR), and the
four heads of a level merged into one 16-channel head (exact: their depthwise stages are per channel).

Speed: eager PyTorch runs the many small depthwise convolutions slowly. :class:`YuNetDetector` runs
the int8 network (PyTorch's x86 kernels, activation ranges calibrated by the converter and shipped as
``int8.safetensors``): 2.3x the float network on one AVX-512 VNNI core, recall unchanged to 0.002
(RESULTS 14h). Where int8 cannot run (ARM), or with ``precision="fp32"``, the float network scripted,
frozen and optimised for inference (oneDNN fusions); a PyTorch that cannot script runs it eagerly.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegallery.detectors.base import Detection, nms, rescaled, window_scale
from facegallery.errors import UserError

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "yunet-n" / "detector.safetensors"
STRIDES = (8, 16, 32)
#: Per cell: class logit, objectness logit, box (dx, dy, log w, log h), five (x, y) landmarks.
HEAD_CHANNELS = 16


class SeparableConv(nn.Module):
    """A 1x1 convolution then a 3x3 depthwise one (batch norm folded in), ReLU unless it is a head."""

    def __init__(self, cin: int, cout: int, relu: bool = True):
        super().__init__()
        self.point = nn.Conv2d(cin, cout, 1)
        self.depth = nn.Conv2d(cout, cout, 3, padding=1, groups=cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depth(self.point(x))
        return F.relu(x) if self.relu else x


class YuNet(nn.Module):
    """The network: RGB float (N, 3, H, W) in 0..255, H and W multiples of 32 -> one (N, 16, H/s, W/s)
    map per stride s of :data:`STRIDES`."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.stem_separable = SeparableConv(16, 16)
        chans = [(16, 64), (64, 64), (64, 64), (64, 64), (64, 64)]
        self.stages = nn.ModuleList(nn.Sequential(SeparableConv(a, a), SeparableConv(a, b)) for a, b in chans)
        self.lateral = nn.ModuleList(SeparableConv(64, 64) for _ in STRIDES)
        self.shared = nn.ModuleList(SeparableConv(64, 64) for _ in STRIDES)
        self.heads = nn.ModuleList(SeparableConv(64, HEAD_CHANNELS, relu=False) for _ in STRIDES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.max_pool2d(self.stem_separable(F.relu(self.stem(x))), 2)  # stride 4
        x = self.stages[0](x)
        x = F.max_pool2d(self.stages[1](x), 2)
        s8 = self.stages[2](x)
        s16 = self.stages[3](F.max_pool2d(s8, 2))
        s32 = self.stages[4](F.max_pool2d(s16, 2))
        # top-down: each level gets the coarser one upsampled (nearest) after its lateral unit
        p32 = self.lateral[2](s32)
        p16 = self.lateral[1](s16 + F.interpolate(p32, scale_factor=2.0, mode="nearest"))
        p8 = self.lateral[0](s8 + F.interpolate(p16, scale_factor=2.0, mode="nearest"))
        return [head(shared(p)) for p, shared, head in zip((p8, p16, p32), self.shared, self.heads)]


def priors(height: int, width: int) -> np.ndarray:
    """(P, 3) rows of (x, y, stride): the top-left corner of every cell of every level, in the order
    :func:`flatten` lays the predictions out (level, then row, then column)."""
    out = []
    for s in STRIDES:
        ys, xs = np.mgrid[0 : math.ceil(height / s), 0 : math.ceil(width / s)]
        out.append(np.stack([xs.ravel() * s, ys.ravel() * s, np.full(xs.size, s)], 1))
    return np.concatenate(out).astype(np.float32)


def flatten(maps: list[torch.Tensor]) -> np.ndarray:
    """(N, P, 16) predictions of every cell of every level from the per-level maps."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, HEAD_CHANNELS) for m in maps], 1).numpy()


def decode(pred: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (P,), boxes (P, 4) [x0, y0, x1, y1] and landmarks (P, 5, 2) of one image's predictions
    (P, 16) at their priors (P, 3), in the scanned image's pixels."""
    sig = 1.0 / (1.0 + np.exp(-pred[:, :2].astype(np.float64)))
    scores = np.sqrt(sig[:, 0] * sig[:, 1])
    xy, stride = prior[:, :2], prior[:, 2:3]
    centre = pred[:, 2:4] * stride + xy
    size = np.exp(np.minimum(pred[:, 4:6], 20.0)) * stride
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
    marks = pred[:, 6:16].reshape(-1, 5, 2) * stride[:, :, None] + xy[:, None, :]
    return scores.astype(np.float32), boxes, marks


def load_network(path: Path = WEIGHTS) -> YuNet:
    """The shipped network (float, eval mode)."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path}: the shipped YuNet weights are missing; reinstall facegallery")
    net = YuNet()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def optimise(net: YuNet) -> torch.nn.Module:
    """The network scripted, frozen and optimised for inference (oneDNN fusions), or ``net`` itself
    where this PyTorch cannot (warned: eager is several times slower)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(net.eval())))
    except Exception as e:  # noqa: BLE001 - any scripting failure leaves the eager network, which is correct
        warnings.warn(f"YuNet runs eagerly (slower): {e.__class__.__name__}: {e}", stacklevel=2)
        return net


#: Activation ranges of the int8 network (observer histograms, no pickle), written by the converter.
INT8 = WEIGHTS.parent / "int8.safetensors"
PRECISIONS = ("auto", "int8", "fp32")


def resolve(precision: str) -> str:
    """The precision that runs: "auto" is "int8" where the calibration is shipped and this PyTorch runs
    int8, else "fp32". A recorded "int8" on a machine without the int8 kernels (a gallery moved to ARM)
    runs as "fp32", warned: the faces found differ by a few pixels (RESULTS 14h)."""
    from facegallery import quantization

    if precision not in PRECISIONS:
        raise UserError(f"yunet precision {precision!r}: one of {', '.join(PRECISIONS)}")
    can = INT8.is_file() and quantization.available()
    if precision == "int8" and not can:
        warnings.warn("yunet int8 cannot run with this PyTorch; the float network finds the faces", stacklevel=3)
    return "int8" if can and precision in ("int8", "auto") else "fp32"


@cache
def weights_digest(precision: str) -> str:
    """A short digest of the weights (and int8 calibration) a precision runs: caches key on it."""
    h = hashlib.sha256(WEIGHTS.read_bytes())
    if precision == "int8":
        h.update(INT8.read_bytes())
    return h.hexdigest()[:16]


@cache
def shared_network(precision: str = "fp32") -> torch.nn.Module:
    """One network per process and precision: "fp32" scripted, frozen and optimised (~1 s to build),
    "int8" PyTorch's x86 int8 network from the float weights and the shipped activation ranges."""
    net = load_network()
    if precision == "int8":
        from safetensors.torch import load_file

        from facegallery import quantization

        return quantization.build(net, load_file(str(INT8)), 64).eval()
    return optimise(net)


#: YuNet finds faces down to about this side (pixels, its box) in the image it scans; a photo is
#: scanned at ``WINDOW / min_face`` of its size. The default ``min_face`` 20 scans a 1024x768 photo as it
#: is (faces from 40 px crops: recall 0.99); ``min_face`` 12 upscales it 1.67x and also finds 30-40 px
#: crops' faces (0.97, against 0.73), at a third of the speed (RESULTS 14).
WINDOW = 20
#: Cap on the pixels scanned (a 12 MP photo is scanned at 2 MP: faces from ~50 px; decoded at 1/2 by
#: libjpeg): the photo's decode, the resize and the network all scale with it.
MAX_SCAN_PIXELS = 2_000_000
#: Score above which a cell is a face: the lowest of 0.5-0.9 keeping precision >= 0.98 on composites of
#: PubFig83 *train* photos (``bench_detectors.py composite``, RESULTS 14).
SCORE_THRESHOLD = 0.8
#: Boxes overlapping a better one by more than this IoU are the same face (upstream's test setting).
NMS_IOU = 0.45
#: How dlib's detectors frame a face YuNet boxes, for dlib's shape predictor (trained on their boxes):
#: centre shift (x, y) in units of YuNet's box side and side ratios (w, h); medians over 986 CelebA
#: training photos (``python benchmarks/bench_detectors.py template``), against the MMOD port's boxes.
DLIB_BOX_FIT = (-0.0418, -0.0161, 0.9938, 0.7125)
#: Scanned images whose shorter side exceeds this get a second pass at half scale: the network saw no
#: faces much larger than ~400 px in training.
LARGE_FACE_SIDE = 400


class YuNetDetector:
    """Faces and their five landmarks by YuNet-n: fast, small faces, turned faces."""

    name = "yunet"
    landmark_scheme = "eyes-nose-mouth"

    def __init__(
        self,
        min_face: int = 20,
        threshold: float = SCORE_THRESHOLD,
        max_scan_pixels: int = MAX_SCAN_PIXELS,
        precision: str = "auto",
    ):
        if not 0.0 < threshold < 1.0:
            raise UserError(f"yunet threshold {threshold}: give a score between 0 and 1")
        self.min_face, self.threshold, self.max_scan_pixels = int(min_face), float(threshold), int(max_scan_pixels)
        self.precision = resolve(precision)
        self.net = shared_network(self.precision)
        self.weights_digest = weights_digest(self.precision)

    @property
    def settings(self) -> dict:
        """What changes this detector's output (cache keys and galleries record it)."""
        return {
            "min_face": self.min_face,
            "threshold": self.threshold,
            "max_scan_pixels": self.max_scan_pixels,
            "precision": self.precision,
        }

    @staticmethod
    def dlib_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A YuNet box as dlib's detectors would frame the same face (:data:`DLIB_BOX_FIT`)."""
        dx, dy, sw, sh = DLIB_BOX_FIT
        w, h = box[2] - box[0], box[3] - box[1]
        cx, cy = (box[0] + box[2]) / 2 + dx * w, (box[1] + box[3]) / 2 + dy * h
        return (cx - sw * w / 2, cy - sh * h / 2, cx + sw * w / 2, cy + sh * h / 2)

    def scan_scale(self, height: int, width: int) -> float:
        """The factor a ``height`` x ``width`` photo is resized by before scanning."""
        return window_scale(WINDOW, self.min_face, height, width, self.max_scan_pixels)

    @torch.inference_mode()
    def raw(self, pixels: np.ndarray) -> np.ndarray:
        """(P, 16) predictions for one RGB uint8 image scanned as it is (padded to a multiple of 32)."""
        h, w = pixels.shape[:2]
        ph, pw = -h % 32, -w % 32
        x = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"])).permute(2, 0, 1)[None].float()
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return flatten(self.net(x))[0]

    def detect_scanned(self, pixels: np.ndarray) -> list[Detection]:
        """Faces of an image scanned at its own size (no rescaling), boxes in its pixels."""
        h, w = pixels.shape[:2]
        if min(h, w) < 8:
            return []
        pred = self.raw(pixels)
        prior = priors(h + (-h % 32), w + (-w % 32))
        keep = 1.0 / (1.0 + np.exp(-pred[:, :2].astype(np.float64))).prod(1) > self.threshold**2
        scores, boxes, marks = decode(pred[keep], prior[keep])
        return [Detection(tuple(map(float, b)), float(s), m) for b, s, m in zip(boxes, scores, marks)]

    def detect(self, pixels: np.ndarray, scale: float = 1.0) -> list[Detection]:
        """Every face of an RGB uint8 photo shown at ``scale`` of its size (a reduced decode), boxes and
        landmarks in the given pixels, best first."""
        h, w = pixels.shape[:2]
        first = self.scan_scale(round(h / scale), round(w / scale)) / scale
        found: list[Detection] = []
        for s in (first, first / 2) if min(h, w) * first > LARGE_FACE_SIDE else (first,):
            work, fx, fy = rescaled(pixels, s)
            found += [d.scaled(fx, fy) for d in self.detect_scanned(work)]
        if not found:
            return []
        keep = nms(np.array([d.box for d in found]), np.array([d.score for d in found]), NMS_IOU)
        return [found[i].clipped(w, h) for i in keep]
