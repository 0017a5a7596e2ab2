"""The original project's network (``seed-cnn``): a VGG-like CNN on 128x128 RGB in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from facegallery.models import register


@register("seed-cnn")
class SeedCNN(nn.Module):
    """3x3 'same' conv + ReLU: 20,40 | pool | 60,80 | pool | 100,100 | pool | 100,100 | pool;
    FC 2000 ReLU, FC 1000 ReLU, FC 128, L2 normalise (the original, layer for layer)."""

    input_size = 128

    def __init__(self, embedding_dim: int = 128):
        super().__init__()
        layers, cin = [], 3
        for block in ((20, 40), (60, 80), (100, 100), (100, 100)):
            for cout in block:
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * 8 * 100, 2000),
            nn.ReLU(inplace=True),
            nn.Linear(2000, 1000),
            nn.ReLU(inplace=True),
            nn.Linear(1000, embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(x)), dim=1)
