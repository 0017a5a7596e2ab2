"""``resface``: a compact residual face embedder for CPU speed (BatchNorm, basic blocks, GDC head).

The head keeps spatial layout (a depthwise 'global depthwise conv' over the last 4x4 map, as in
MobileFaceNet) instead of global average pooling: where a feature sits on a face matters.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from facegallery.models import register


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and a projected shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.short is None else self.short(x)), inplace=True)


class ResFace(nn.Module):
    """Stem conv, stages of basic blocks each halving resolution, GDC + linear to 128-D, L2."""

    def __init__(
        self,
        input_size: int = 64,
        widths: tuple[int, ...] = (48, 96, 192),
        depths: tuple[int, ...] = (1, 2, 1),
        stem: int = 24,
        stem_stride: int = 2,
        embedding_dim: int = 128,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.input_size = input_size
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
        )
        blocks, cin = [], stem
        for w, d in zip(widths, depths):
            for i in range(d):
                blocks.append(BasicBlock(cin, w, 2 if i == 0 else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        side = input_size // stem_stride // 2 ** len(widths)
        self.gdc = nn.Sequential(nn.Conv2d(cin, cin, side, groups=cin, bias=False), nn.BatchNorm2d(cin))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, embedding_dim, bias=False)
        self.bn_out = nn.BatchNorm1d(embedding_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for b in self.blocks:  # zero-init the last BN of each residual branch: blocks start as identity
            nn.init.zeros_(b.bn2.weight)

    def stages(self) -> list[nn.Module]:
        """The network from input to output in parts that fine-tuning can leave frozen: the stem, each
        resolution's blocks, and the head (GDC, linear, BN) last."""
        parts: list[list[nn.Module]] = []
        for b in self.blocks:
            if b.short is not None or not parts:  # a stage begins where the resolution halves
                parts.append([])
            parts[-1].append(b)
        return [self.stem, *(nn.ModuleList(p) for p in parts), nn.ModuleList([self.gdc, self.fc, self.bn_out])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.5
        x = self.gdc(self.blocks(self.stem(x))).flatten(1)
        return F.normalize(self.bn_out(self.fc(self.drop(x))), dim=1)


@register("resface64")
def resface64(**kw) -> ResFace:
    """The default: 64x64 input, stride-2 stem (24), stages 48-96-192 with 1-2-1 blocks, 4x4 GDC head;
    0.87 M parameters, 36.1 M multiply-adds per image.

    Chosen by measured single-core inference speed among a few widths (benchmarks/RESULTS.md).
    """
    return ResFace(input_size=64, **kw)
