"""Triplet selection inside a batch of embeddings: each miner returns (anchor, positive, negative)
row indices. Distances are squared Euclidean, as in FaceNet. Every miner has a brute-force test."""

from __future__ import annotations

from collections.abc import Callable

import torch

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """All pairwise squared Euclidean distances of the rows of ``x`` (clamped at 0)."""
    sq = (x * x).sum(1)
    return (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def batch_hard(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> Triplets:
    """For every anchor with a positive and a negative: its farthest positive and nearest negative
    (Hermans et al. 2017). ``margin`` is unused; kept so all miners share one signature."""
    d = squared_distances(emb.detach())
    pos, neg = _masks(labels)
    ok = pos.any(1) & neg.any(1)
    a = torch.nonzero(ok).squeeze(1)
    p = d.masked_fill(~pos, -1.0).argmax(1)[a]
    n = d.masked_fill(~neg, float("inf")).argmin(1)[a]
    return a, p, n


def semi_hard(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> Triplets:
    """FaceNet's choice: every anchor-positive pair takes the nearest negative that is still farther
    than the positive (d_an > d_ap; the paper's semi-hard band d_ap < d_an < d_ap + margin is where
    such a negative lies whenever the loss is non-zero). When no negative is farther than the
    positive, the farthest negative is taken (the convention of TensorFlow Addons' semi-hard loss)."""
    d = squared_distances(emb.detach())
    pos, neg = _masks(labels)
    a, p = torch.nonzero(pos, as_tuple=True)
    d_ap = d[a, p][:, None]
    d_an = d[a].masked_fill(~neg[a], float("nan"))
    farther = d_an > d_ap  # nan compares False
    semi = torch.where(farther, d_an, torch.full_like(d_an, float("inf"))).argmin(1)
    fallback = torch.nan_to_num(d_an, nan=-1.0).argmax(1)
    has = farther.any(1) & neg[a].any(1)
    keep = neg[a].any(1)
    n = torch.where(has, semi, fallback)
    return a[keep], p[keep], n[keep]


def all_positive_random_negative(
    emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, generator: torch.Generator | None = None
) -> Triplets:
    """Every anchor-positive pair with a uniformly random negative (no mining; for comparison)."""
    pos, neg = _masks(labels)
    a, p = torch.nonzero(pos, as_tuple=True)
    w = neg[a].float()
    keep = w.sum(1) > 0
    n = torch.multinomial(w[keep], 1, generator=generator).squeeze(1)
    return a[keep], p[keep], n


MINERS: dict[str, Callable[..., Triplets]] = {
    "batch-hard": batch_hard,
    "semi-hard": semi_hard,
    "random": all_positive_random_negative,
}
