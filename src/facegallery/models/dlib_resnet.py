"""``dlib-resnet29``: dlib's public-domain (CC0) face recognition ResNet in native PyTorch.

dlib's ``dlib_face_recognition_resnet_model_v1`` (Davis King, 2017; LFW 99.38% by dlib's own figure) is
a ResNet-34 with layers removed and half the filters: 29 convolutions, 5.6 M parameters, 0.27 G
multiply-adds for a 150x150 chip. This module rebuilds its exact computation:

- input: the chip's RGB values as ``(pixel - mean) / 256`` (dlib's means; no division by a deviation);
- stem: conv 7x7/2 (padding 0), affine, relu, max pool 3x3/2 (padding 0);
- residual blocks: 3 at 32 channels, then at 64 (one down, 3), 128 (down, 2), 256 (down, 2), and one
  more down block at 256; a block is conv 3x3, affine, relu, conv 3x3, affine, plus the shortcut, relu.
  A down block's first conv has stride 2 and padding 0 and its shortcut is a 2x2/2 average pool;
- dlib adds branches of different shapes by zero-filling the smaller one at the end (more channels,
  bottom rows, right columns): every down block's shortcut has fewer channels, and in the last two
  levels it is also a row and column larger (4x4 vs 3x3, 2x2 vs 1x1);
- head: global average pool, 256 -> 128 linear without bias.

dlib's ``affine`` layers (frozen batch norms) are kept as eval-mode BatchNorm2d (mean 0, variance
1 - eps), so they fold into the convolutions for inference and can be fine-tuned as usual. ``forward``
returns unit rows, as every registry model does; :meth:`DlibResNet.features` the raw vectors dlib
returns (norms ~1.3-1.6; dlib's rule is Euclidean distance < 0.6 between those).

:func:`from_dat` builds the network from dlib's file with :mod:`facegallery.models.dlib_dat`;
``python -m facegallery.convert_dlib recognition DAT OUT`` converts the file into a checkpoint folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegallery.errors import UserError
from facegallery.models import register
from facegallery.models.dlib_dat import Network, read_network

#: dlib's per-channel input means (R, G, B), as ``input_rgb_image_sized`` stores them.
MEAN_RGB = (122.782, 117.001, 104.298)
CHIP = 150
#: (channels, regular blocks after the level's down block) from the stem outwards; the first level has
#: no down block, the last one nothing but its down block.
LEVELS = ((32, 3), (64, 3), (128, 2), (256, 2), (256, 0))


def _out(size: int, kernel: int, stride: int, padding: int) -> int:
    return 1 + (size + 2 * padding - kernel) // stride


def _affine(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(var + eps) == x: a plain affine
    return bn


class Block(nn.Module):
    """conv 3x3 (stride s), affine, relu, conv 3x3, affine; plus the shortcut (zero-filled to the larger
    shape), relu. ``pad_main`` / ``pad_short``: F.pad amounts fixed at build time for the input size."""

    def __init__(self, cin: int, cout: int, size: int, down: bool):
        super().__init__()
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 0 if down else 1)
        self.bn1 = _affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = _affine(cout)
        self.down = down
        main = _out(size, 3, stride, 0 if down else 1)
        short = _out(size, 2, 2, 0) if down else size
        self.out_size = max(main, short)
        self.pad_main = (0, self.out_size - main, 0, self.out_size - main)
        self.pad_short = (0, self.out_size - short, 0, self.out_size - short, 0, cout - cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = F.avg_pool2d(x, 2, 2) if self.down else x
        if any(self.pad_main):
            y = F.pad(y, self.pad_main)
        if any(self.pad_short):
            s = F.pad(s, self.pad_short)
        return F.relu(y + s)


@register("dlib-resnet29")
class DlibResNet(nn.Module):
    """dlib's face ResNet: (N, 3, 150, 150) chips in [0, 1] -> (N, 128) unit rows."""

    input_size = CHIP

    def __init__(self, embedding_dim: int = 128):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1) / 255.0, persistent=False)
        self.stem = nn.Conv2d(3, 32, 7, 2, 0)
        self.stem_bn = _affine(32)
        size = _out(_out(CHIP, 7, 2, 0), 3, 2, 0)
        blocks, cin = [], 32
        for i, (cout, regular) in enumerate(LEVELS):
            for down in ([True] if i else []) + [False] * regular:
                blocks.append(Block(cin, cout, size, down))
                cin, size = cout, blocks[-1].out_size
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, embedding_dim, bias=False)

    def stages(self) -> list[nn.Module]:
        """The network from input to output in parts that fine-tuning can leave frozen: the stem, each
        level's blocks (a level begins at its down block), and the 256 -> 128 linear head last."""
        parts: list[list[nn.Module]] = []
        for b in self.blocks:
            if b.down or not parts:
                parts.append([])
            parts[-1].append(b)
        return [nn.ModuleList([self.stem, self.stem_bn]), *(nn.ModuleList(p) for p in parts), self.fc]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """dlib's raw 128-D descriptors (not unit length)."""
        x = (x - self.mean) * (255.0 / 256.0)
        x = F.max_pool2d(F.relu(self.stem_bn(self.stem(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.features(x), dim=1)


# ----- from dlib's file ------------------------------------------------------------------------


def _expect(net: Network, path: Path) -> None:
    """Refuse a file that is not this network, naming what differs."""
    want = ["con_4", "affine_", "relu_", "max_pool_2"]
    for i, (_, regular) in enumerate(LEVELS):
        block = ["con_4", "affine_", "relu_", "con_4", "affine_"]
        want += (block + ["avg_pool_2", "add_prev_", "relu_"] if i else []) + (block + ["add_prev_", "relu_"]) * regular
    want += ["avg_pool_2", "fc_2"]
    got = net.kinds()
    if net.loss != "loss_metric_2" or net.input != "input_rgb_image_sized" or got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise UserError(
            f"{path}: not dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1): "
            f"{net.loss}/{net.input} with {len(got)} layers, first difference at layer {first} "
            f"(expected loss_metric_2/input_rgb_image_sized, {len(want)} layers)"
        )
    if net.input_fields["rows"] != CHIP or net.input_fields["cols"] != CHIP:
        raise UserError(f"{path}: input {net.input_fields['rows']}x{net.input_fields['cols']}, expected {CHIP}x{CHIP}")


def state_dict_from(net: Network, path: Path) -> dict[str, torch.Tensor]:
    """The :class:`DlibResNet` state dict holding ``net``'s parameters (checked layer by layer)."""
    _expect(net, path)
    model = DlibResNet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    con_layers = [layer for layer in net.layers if layer.kind == "con_4"]
    affines = [layer for layer in net.layers if layer.kind == "affine_"]
    # dlib's computation order puts a down block's shortcut after its main branch, as modules() does
    with torch.no_grad():
        for conv, layer in zip(convs, con_layers):
            f = layer.fields
            shape = (f["filters"], conv.in_channels, f["kernel_rows"], f["kernel_cols"])
            geometry = (f["stride_y"], f["stride_x"], f["padding_y"], f["padding_x"])
            if shape != tuple(conv.weight.shape) or geometry != (*conv.stride, *conv.padding):
                raise UserError(
                    f"{path}: a convolution is {shape} {geometry}, expected "
                    f"{tuple(conv.weight.shape)} {(*conv.stride, *conv.padding)}"
                )
            flat = layer.params.ravel()
            n = conv.weight.numel()
            conv.weight.copy_(torch.from_numpy(flat[:n].reshape(shape).copy()))
            conv.bias.copy_(torch.from_numpy(flat[n:].copy()))
        for bn, layer in zip(bns, affines):
            flat = layer.params.ravel()
            c = bn.num_features
            if flat.size != 2 * c:
                raise UserError(f"{path}: an affine layer has {flat.size} parameters, expected {2 * c}")
            bn.weight.copy_(torch.from_numpy(flat[:c].copy()))
            bn.bias.copy_(torch.from_numpy(flat[c:].copy()))
        fc = net.layers[-1]
        w = fc.params.reshape(fc.fields["inputs"], fc.fields["outputs"])
        if w.shape != (model.fc.in_features, model.fc.out_features) or fc.fields["bias_mode"] != 1:
            raise UserError(
                f"{path}: the last layer is {w.shape}, expected {(model.fc.in_features, model.fc.out_features)}"
                " without bias"
            )
        model.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
    return model.state_dict()


def from_dat(path: str | Path) -> DlibResNet:
    """The network with the weights of dlib's ``dlib_face_recognition_resnet_model_v1.dat``."""
    path = Path(path)
    model = DlibResNet()
    model.load_state_dict(state_dict_from(read_network(path), path))
    return model.eval()
