"""Losses: FaceNet's triplet loss, a CosFace (large-margin cosine) classification head, a spread-out
regulariser and relational distillation."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.2, reduction: str = "mean"
) -> torch.Tensor:
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


def spread_out_loss(emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Global orthogonal regularisation (Zhang et al. 2017): pairs of different people should look like
    random unit vectors, mean cosine 0 and mean squared cosine at most 1/d.

    A classification head over few identities squeezes the embedding into a few dozen directions;
    this term asks for the whole sphere, which is room for people never trained on."""
    cos = emb @ emb.t()
    neg = labels[:, None] != labels[None, :]
    if not neg.any():
        return emb.sum() * 0.0
    d = cos[neg]
    return d.mean().pow(2) + F.relu(d.pow(2).mean() - 1.0 / emb.shape[1])


def relation_loss(emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the batch's pairwise cosine similarities and a teacher's
    (relational distillation, Park et al. 2019): the student must place people as the teacher does
    relative to each other, not in the teacher's own coordinates, which a smaller network need not
    share. Both inputs are unit rows, in the same order."""
    if len(emb) < 2:
        return emb.sum() * 0.0
    off = ~torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    return ((emb @ emb.t() - target @ target.t())[off]).pow(2).mean()
