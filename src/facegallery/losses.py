"""Losses: FaceNet's triplet loss and a CosFace (large-margin cosine) classification head."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = 0.2, reduction: str = "mean") -> torch.Tensor:
    """max(0, |a-p|^2 - |a-n|^2 + margin) on squared Euclidean distance, summed or averaged."""
    d_ap = (anchor - positive).pow(2).sum(1)
    d_an = (anchor - negative).pow(2).sum(1)
    loss = F.relu(d_ap - d_an + margin)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if len(loss) else loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


class CosFaceHead(nn.Module):
    """Logits s * (cos(theta_y) - m) for the true class, s * cos(theta_j) otherwise (Wang et al. 2018).

    Only used while training: a proxy per identity that pulls each class into a tight cone, which
    complements the triplet loss on small batches.
    """

    def __init__(self, embedding_dim: int, classes: int, scale: float = 30.0, margin: float = 0.35):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, embedding_dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the margin logits (``emb`` must already be unit rows)."""
        cos = F.linear(emb, F.normalize(self.weight, dim=1))
        logits = self.scale * (cos - self.margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype))
        return F.cross_entropy(logits, labels)
