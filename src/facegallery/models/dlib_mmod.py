"""dlib's public-domain (CC0) MMOD CNN face detector network, ``mmod_human_face_detector``, in PyTorch.

Davis King's max-margin object detection network (2017) is a small fully convolutional scorer: three
5x5 stride-2 convolutions (16, 32, 32 filters) downsample by 8, three 5x5 convolutions of 45 filters
follow, each conv with a batch norm and a relu, and one 9x9 convolution gives a single score map. A
score at output (row r, column c) rates an 80x80 window centred at input pixel (8c + 14, 8r + 14); the
detector slides it over an image pyramid (:mod:`facegallery.mmod`). Padding follows dlib's rule (k // 2
for stride 1, none otherwise). dlib saved the batch norms as trained (``bn_con2``); inference uses them
as ``gamma * (x - running_mean) / sqrt(running_var + eps) + beta``, folded here into the conv before.

:func:`from_dat` reads dlib's file with :mod:`facegallery.models.dlib_dat`; ``python -m
facegallery.convert_dlib detector DAT`` writes the shipped safetensors file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from facegallery.errors import UserError
from facegallery.models.dlib_dat import Network, read_network

#: (filters, kernel, stride) of each convolution, input first; all but the last are followed by a
#: (folded) batch norm and a relu.
CONVS = ((16, 5, 2), (32, 5, 2), (32, 5, 2), (45, 5, 1), (45, 5, 1), (45, 5, 1), (1, 9, 1))


def output_to_input(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input-tensor (x, y) of output cells, through every conv as dlib maps it (p * stride - padding +
    kernel // 2): 8 * p + 14 for this network."""
    x, y = cols.astype(np.float64), rows.astype(np.float64)
    for _, k, s in reversed(CONVS):
        pad = k // 2 if s == 1 else 0
        x, y = x * s - pad + k // 2, y * s - pad + k // 2
    return x, y


def smallest_input() -> int:
    """The smallest side the network gives a score for (29: smaller inputs have no whole window)."""
    size = 1
    for _, k, s in reversed(CONVS):
        size = (size - 1) * s + k - 2 * (k // 2 if s == 1 else 0)
    return size


class MmodNet(nn.Module):
    """The MMOD scorer: (N, 3, H, W) normalised RGB -> (N, 1, H', W') window scores (> 0: a face)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for i, (filters, k, s) in enumerate(CONVS):
            layers.append(nn.Conv2d(channels, filters, k, stride=s, padding=k // 2 if s == 1 else 0))
            if i < len(CONVS) - 1:
                layers.append(nn.ReLU(inplace=True))
            channels = filters
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _fold(conv: np.ndarray, filters: int, channels: int, k: int, bn: dict | None, bn_params: np.ndarray | None):
    """The conv's (weight, bias), with the following batch norm folded in when there is one."""
    flat = conv.ravel()
    n = filters * channels * k * k
    weight, bias = flat[:n].reshape(filters, channels, k, k), flat[n:]
    if bn is None:
        return weight, bias
    gamma, beta = bn_params.ravel()[:filters], bn_params.ravel()[filters:]
    g = gamma / np.sqrt(bn["running_variances"] + bn["eps"])
    return weight * g[:, None, None, None], (bias - bn["running_means"]) * g + beta


def state_from_network(net: Network) -> dict[str, np.ndarray]:
    """The :class:`MmodNet` state (batch norms folded) from a parsed dlib network, checked layer by layer."""
    if net.loss != "loss_mmod_" or not net.input.startswith("input_rgb_image_pyramid"):
        raise UserError(f"not dlib's MMOD detector: loss {net.loss}, input {net.input}")
    expected = []
    for i in range(len(CONVS)):
        expected += ["con_4"] if i == len(CONVS) - 1 else ["con_4", "bn_con2", "relu_"]
    if net.kinds() != expected:
        raise UserError(f"unexpected MMOD layers: {' '.join(net.kinds())}")
    state, channels, layers = {}, 3, iter(net.layers)
    for i, (filters, k, s) in enumerate(CONVS):
        conv = next(layers)
        f = conv.fields
        pad = k // 2 if s == 1 else 0
        if (f["filters"], f["kernel_rows"], f["stride_y"], f["padding_y"]) != (filters, k, s, pad):
            raise UserError(f"MMOD conv {i}: {f['filters']} filters {f['kernel_rows']}x{f['kernel_cols']}, unexpected")
        bn = next(layers) if i < len(CONVS) - 1 else None
        if bn is not None:
            next(layers)  # relu
        w, b = _fold(conv.params, filters, channels, k, bn.fields if bn else None, bn.params if bn else None)
        index = 2 * i  # Sequential positions: conv, relu, conv, relu, ...
        state[f"body.{index}.weight"] = np.ascontiguousarray(w, np.float32)
        state[f"body.{index}.bias"] = np.ascontiguousarray(b, np.float32)
        channels = filters
    return state


def from_dat(path: str | Path) -> tuple[MmodNet, dict]:
    """The network and its detection settings (window, overlap rules, input means and padding) from
    dlib's ``mmod_human_face_detector.dat``."""
    net = read_network(path)
    model = MmodNet()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state_from_network(net).items()})
    settings = {**net.loss_fields, **net.input_fields}
    return model.eval(), settings
