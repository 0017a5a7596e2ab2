"""Reading dlib's serialised networks (the ``.dat`` files ``dlib::serialize`` writes) with numpy alone.

dlib writes a network from the loss layer inwards: every wrapper (``add_loss_layer``, ``add_layer``,
``add_tag_layer``, ``add_skip_layer``) first writes its version integer, then the layers it wraps,
then its own details. So a file holds all the version headers (outermost first), then the input
layer, then each computing layer's details from the input outwards, each followed by the wrapper's
state (three bools and three, usually empty, cached tensors), and last the loss layer's details.

Encoding (``dlib/serialize.h``): an integer is a control byte (bit 7: negative, low 4 bits: byte
count) and that many little-endian bytes of its magnitude; a bool is the byte ``'1'`` or ``'0'``; a
string is an integer length and its bytes; a float is an integer mantissa and an integer exponent
(m * 2^e). A tensor is its version (2), four integers (n, k, rows, cols) and n*k*rows*cols float32;
a shape-only "alias" tensor is version 1 and four integers.

The reader is strict: a file is read to its last byte, and anything unexpected (a truncated file, an
unknown layer kind, bytes left over) is a one-line :class:`~facegallery.errors.UserError` naming the
file and the offset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegallery.errors import UserError

#: Versions of the layer wrappers: computing layers (2; 3 for the one on the input, which also writes
#: its sample expansion factor), tag and skip layers (1).
LAYER_VERSION, INPUT_LAYER_VERSION, TAG_VERSION = 2, 3, 1


@dataclass
class Layer:
    """One computing layer: dlib's name for its kind, its flat parameter tensor, its settings."""

    kind: str
    params: np.ndarray | None = None
    fields: dict = field(default_factory=dict)


@dataclass
class Network:
    """What a ``.dat`` file holds, in computation order (input first)."""

    loss: str
    loss_fields: dict
    input: str
    input_fields: dict
    headers: list[int]  # the wrappers' version integers, outermost first
    layers: list[Layer]

    def kinds(self) -> list[str]:
        """The computing layers' kinds, input side first."""
        return [layer.kind for layer in self.layers]


class _Stream:
    """dlib's primitive encodings over a bytes buffer, with errors that name the file and offset."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def fail(self, what: str) -> UserError:
        return UserError(f"{self.path}: not a dlib network file of the expected kind ({what} at byte {self.pos})")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: {n} more bytes expected, {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        control = self.take(1)[0]
        if control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(control & 0x0F), "little")
        return -value if control & 0x80 else value

    def bool(self) -> bool:
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            raise self.fail(f"bool expected, got 0x{byte[0]:02x}")
        return byte == b"1"

    def string(self, limit: int = 256) -> str:
        n = self.int()
        if not 0 <= n <= limit:
            raise self.fail(f"string length {n} out of range")
        try:
            return self.take(n).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("non-ASCII string") from None

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        special = {32000: np.inf, 32001: -np.inf, 32002: np.nan}
        return float(special[exponent]) if exponent in special else float(mantissa) * 2.0**exponent

    def tensor(self) -> np.ndarray:
        """A tensor with data, as float32 (n, k, rows, cols)."""
        version = self.int()
        if version != 2:
            raise self.fail(f"tensor version 2 expected, got {version}")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise self.fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape))
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, ...]:
        """A shape-only tensor: its four dimensions."""
        version = self.int()
        if version != 1:
            raise self.fail(f"alias tensor version 1 expected, got {version}")
        return tuple(self.int() for _ in range(4))

    def peek_string(self) -> str | None:
        """The string starting here if it is a known layer or input name, without consuming it."""
        pos = self.pos
        try:
            name = self.string()
        except UserError:
            name = None
        self.pos = pos
        return name if name in _DETAILS or name in _INPUTS else None


def _multipliers(s: _Stream) -> dict:
    names = ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay")
    return {f"{n}_multiplier": s.float() for n in names}


def _con(s: _Stream) -> Layer:
    params = s.tensor()
    f = {
        k: s.int() for k in ("filters", "kernel_rows", "kernel_cols", "stride_y", "stride_x", "padding_y", "padding_x")
    }
    f["filter_shape"], f["bias_shape"] = s.alias(), s.alias()
    f.update(_multipliers(s))
    return Layer("con_4", params, f)


def _affine(s: _Stream) -> Layer:
    params = s.tensor()
    f = {"gamma_shape": s.alias(), "beta_shape": s.alias(), "mode": s.int()}
    return Layer("affine_", params, f)


def _pool(kind: str) -> Callable[[_Stream], Layer]:
    def read(s: _Stream) -> Layer:
        return Layer(
            kind,
            None,
            {k: s.int() for k in ("kernel_rows", "kernel_cols", "stride_y", "stride_x", "padding_y", "padding_x")},
        )

    return read


def _bn_con(s: _Stream) -> Layer:
    """A batch norm saved as trained (``bn_con2``): gamma then beta in params, the running statistics
    (what inference uses) and eps; the batch statistics and counters are read and dropped."""
    params = s.tensor()
    f = {"gamma_shape": s.alias(), "beta_shape": s.alias()}
    s.tensor(), s.tensor()  # the last batch's means and inverse deviations
    f["running_means"], f["running_variances"] = s.tensor().ravel(), s.tensor().ravel()
    f["num_updates"], f["running_stats_window_size"] = s.int(), s.int()
    f.update(_multipliers(s))
    f["eps"] = s.float()
    return Layer("bn_con2", params, f)


def _fc(s: _Stream) -> Layer:
    f = {"outputs": s.int(), "inputs": s.int()}
    params = s.tensor()
    f["weight_shape"], f["bias_shape"] = s.alias(), s.alias()
    f["bias_mode"] = s.int()
    f.update(_multipliers(s))
    return Layer("fc_2", params, f)


#: Readers of each computing layer's details, by the name dlib writes first.
_DETAILS: dict[str, Callable[[_Stream], Layer]] = {
    "con_4": _con,
    "affine_": _affine,
    "relu_": lambda s: Layer("relu_"),
    "add_prev_": lambda s: Layer("add_prev_"),
    "max_pool_2": _pool("max_pool_2"),
    "avg_pool_2": _pool("avg_pool_2"),
    "fc_2": _fc,
    "bn_con2": _bn_con,
}


def _mean(s: _Stream) -> tuple[float, float, float]:
    return (s.float(), s.float(), s.float())


#: Readers of the input layers' details. The image pyramid's first version did not store its padding
#: between levels and around the tiled image: dlib reads it as 10 and 11.
_INPUTS: dict[str, Callable[[_Stream], dict]] = {
    "input_rgb_image_sized": lambda s: {"mean": _mean(s), "rows": s.int(), "cols": s.int()},
    "input_rgb_image_pyramid": lambda s: {"mean": _mean(s), "padding": 10, "outer_padding": 11},
    "input_rgb_image_pyramid2": lambda s: {"mean": _mean(s), "padding": s.int(), "outer_padding": s.int()},
}


def _mmod_options(s: _Stream) -> dict:
    """``loss_mmod_``'s options, version 1: one sliding window and the box overlap rules."""
    version = s.int()
    if version != 1:
        raise s.fail(f"mmod options version 1 expected, got {version}")
    f = {"window_width": s.int(), "window_height": s.int()}
    f.update({k: s.float() for k in ("loss_per_false_alarm", "loss_per_missed_target", "truth_match_iou")})
    f["nms_iou"], f["nms_covered"] = s.float(), s.float()
    f["ignore_iou"], f["ignore_covered"] = s.float(), s.float()
    return f


#: Readers of the loss layers' details.
_LOSSES: dict[str, Callable[[_Stream], dict]] = {
    "loss_metric_2": lambda s: {"margin": s.float(), "distance_threshold": s.float()},
    "loss_mmod_": _mmod_options,
}


def _open(path: str | Path, what: str) -> _Stream:
    """A stream over the file, past its leading version integer (1 for both kinds of file)."""
    path = Path(path)
    try:
        s = _Stream(path.read_bytes(), path)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    version = s.int()
    if version != 1:
        raise s.fail(f"{what} version 1 expected, got {version}")
    return s


def read_network(path: str | Path) -> Network:
    """Parse a dlib network file to its last byte."""
    s = _open(path, "loss layer")
    loss = s.string()
    if loss not in _LOSSES:
        raise s.fail(f"unknown loss layer {loss!r} (known: {', '.join(_LOSSES)})")
    loss_fields = _LOSSES[loss](s)
    headers = []
    while s.peek_string() is None:
        headers.append(s.int())
        if headers[-1] not in (LAYER_VERSION, INPUT_LAYER_VERSION, TAG_VERSION) or len(headers) > 100_000:
            raise s.fail(f"layer wrapper version {headers[-1]} unexpected")
    name = s.string()
    if name not in _INPUTS:
        raise s.fail(f"input layer expected, found {name!r}")
    input_fields = _INPUTS[name](s)
    computing = [v for v in headers if v != TAG_VERSION]
    if not computing or computing[-1] != INPUT_LAYER_VERSION or INPUT_LAYER_VERSION in computing[:-1]:
        raise s.fail("one input-side layer wrapper (version 3), innermost, expected")
    layers = []
    for wrapper in reversed(computing):
        kind = s.string()
        if kind not in _DETAILS:
            raise s.fail(f"unknown layer kind {kind!r} (known: {', '.join(_DETAILS)})")
        layers.append(_DETAILS[kind](s))
        for _ in range(3):  # setup called, gradient stale, output getters disabled
            s.bool()
        for _ in range(3):  # cached tensors (x_grad, output, gradient): empty in saved models
            s.tensor()
        if wrapper == INPUT_LAYER_VERSION:
            s.int()  # sample expansion factor
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} bytes left over after the last layer")
    return Network(loss, loss_fields, name, input_fields, headers, layers)


# ----- shape predictors (an ensemble of regression trees, not a network) ----------------------------


@dataclass
class ShapePredictorFile:
    """dlib's ``shape_predictor``: a cascade of regression-tree forests over pixel-difference features.

    Shapes are (parts * 2,) vectors of (x, y) in the face box's unit square. For cascade c and tree t:
    ``splits[c, t, n] = (idx1, idx2)`` and ``thresholds[c, t, n]`` of node n (breadth first: children of
    n are 2n + 1 when ``pixel[idx1] - pixel[idx2] > threshold``, else 2n + 2), ``leaves[c, t, l]`` the
    shape increment of leaf l; each cascade samples its pixels at ``anchors[c, p]`` (a part of the shape)
    plus ``deltas[c, p]`` (an offset in the initial shape's frame)."""

    initial_shape: np.ndarray  # (2P,) float32
    splits: np.ndarray  # (C, T, N, 2) int32
    thresholds: np.ndarray  # (C, T, N) float32
    leaves: np.ndarray  # (C, T, N + 1, 2P) float32
    anchors: np.ndarray  # (C, F) int32
    deltas: np.ndarray  # (C, F, 2) float32


def _float_matrix(s: _Stream) -> np.ndarray:
    rows, cols = abs(s.int()), abs(s.int())  # dlib writes the dimensions negated (its newer format)
    return np.array([s.float() for _ in range(rows * cols)], np.float32)


def _vector(s: _Stream, item: Callable[[_Stream], object], limit: int = 1_000_000) -> list:
    n = s.int()
    if not 0 <= n <= limit:
        raise s.fail(f"vector length {n} out of range")
    return [item(s) for _ in range(n)]


def read_shape_predictor(path: str | Path) -> ShapePredictorFile:
    """Parse dlib's ``shape_predictor`` file (e.g. ``shape_predictor_5_face_landmarks.dat``) to its last byte."""
    s = _open(path, "shape predictor")
    initial = _float_matrix(s)

    def tree(s: _Stream) -> tuple[list, list]:
        splits = _vector(s, lambda s: (s.int(), s.int(), s.float()))
        leaves = _vector(s, _float_matrix)
        if len(leaves) != len(splits) + 1 or any(len(v) != len(initial) for v in leaves):
            raise s.fail("a regression tree's leaves do not fit its splits and the shape")
        return splits, leaves

    forests = _vector(s, lambda s: _vector(s, tree))
    anchors = _vector(s, lambda s: _vector(s, lambda s: s.int()))
    deltas = _vector(s, lambda s: _vector(s, lambda s: (s.float(), s.float())))
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} bytes left over after the shape predictor")
    shapes = {len(f) for f in forests}, {len(t[0]) for f in forests for t in f}, {len(a) for a in anchors}
    if not forests or any(len(x) != 1 for x in shapes) or not len(anchors) == len(forests) == len(deltas):
        raise s.fail("the cascades are not all alike (trees per cascade, tree depth, features)")
    return ShapePredictorFile(
        initial_shape=initial,
        splits=np.array([[[sp[:2] for sp in t[0]] for t in f] for f in forests], np.int32),
        thresholds=np.array([[[sp[2] for sp in t[0]] for t in f] for f in forests], np.float32),
        leaves=np.array([[t[1] for t in f] for f in forests], np.float32),
        anchors=np.array(anchors, np.int32),
        deltas=np.array(deltas, np.float32),
    )
