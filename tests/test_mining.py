"""Miners against brute-force references written as plain loops."""

import itertools

import torch

from facegallery.mining import all_positive_random_negative, batch_hard, semi_hard, squared_distances


def _batch(seed: int, n_ids: int = 4, k: int = 3, dim: int = 8):
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(n_ids * k, dim, generator=g), dim=1)
    labels = torch.arange(n_ids).repeat_interleave(k)
    return emb, labels


def _d(emb, i, j):
    return float(((emb[i] - emb[j]) ** 2).sum())


def test_squared_distances_match_loops():
    emb, _ = _batch(0)
    d = squared_distances(emb)
    for i, j in itertools.product(range(len(emb)), repeat=2):
        assert abs(float(d[i, j]) - _d(emb, i, j)) < 1e-5


def test_batch_hard_equals_brute_force():
    for seed in range(5):
        emb, labels = _batch(seed)
        a, p, n = batch_hard(emb, labels)
        assert a.tolist() == list(range(len(emb)))
        for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist()):
            pos = [j for j in range(len(emb)) if j != ai and labels[j] == labels[ai]]
            neg = [j for j in range(len(emb)) if labels[j] != labels[ai]]
            assert pi == max(pos, key=lambda j: _d(emb, ai, j))
            assert ni == min(neg, key=lambda j: _d(emb, ai, j))


def _semi_hard_reference(emb, labels):
    out = []
    for ai in range(len(emb)):
        for pi in range(len(emb)):
            if pi == ai or labels[pi] != labels[ai]:
                continue
            dap = _d(emb, ai, pi)
            neg = [j for j in range(len(emb)) if labels[j] != labels[ai]]
            farther = [j for j in neg if _d(emb, ai, j) > dap]
            ni = min(farther, key=lambda j: _d(emb, ai, j)) if farther else max(neg, key=lambda j: _d(emb, ai, j))
            out.append((ai, pi, ni))
    return out


def test_semi_hard_equals_brute_force():
    for seed in range(5):
        emb, labels = _batch(seed, n_ids=3, k=4)
        a, p, n = semi_hard(emb, labels)
        assert list(zip(a.tolist(), p.tolist(), n.tolist())) == _semi_hard_reference(emb, labels)


def test_semi_hard_falls_back_to_farthest_negative_when_none_is_farther():
    # anchor 0 and its positive 1 are far apart; every negative is nearer than the positive
    emb = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.9, 0.1], [0.5, 0.5]])
    emb = torch.nn.functional.normalize(emb, dim=1)
    labels = torch.tensor([0, 0, 1, 2])
    a, p, n = semi_hard(emb, labels)
    row = [(ai, pi, ni) for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist()) if ai == 0][0]
    assert row == (0, 1, 3)  # node 3 is the farthest negative from node 0


def test_random_negative_is_always_a_negative_and_covers_all_pairs():
    emb, labels = _batch(1)
    a, p, n = all_positive_random_negative(emb, labels, generator=torch.Generator().manual_seed(0))
    assert len(a) == 4 * 3 * 2
    assert bool((labels[a] == labels[p]).all()) and bool((labels[a] != labels[n]).all())
    assert bool((a != p).all())
