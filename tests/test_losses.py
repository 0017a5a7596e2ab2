import itertools

import torch

from facegallery.losses import CosFaceHead, relation_loss, spread_out_loss, triplet_loss


def test_triplet_loss_values_by_hand():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # d_ap = 2, 0
    n = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])  # d_an = 4, 2
    # max(0, 2 - 4 + 0.2) = 0 ; max(0, 0 - 2 + 0.2) = 0
    assert float(triplet_loss(a, p, n, 0.2, "sum")) == 0.0
    n2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # d_an = 2, 0
    # 2 - 2 + 0.2 = 0.2 ; 0 - 0 + 0.2 = 0.2
    assert abs(float(triplet_loss(a, p, n2, 0.2, "sum")) - 0.4) < 1e-6
    assert abs(float(triplet_loss(a, p, n2, 0.2, "mean")) - 0.2) < 1e-6


def test_collapsed_embeddings_give_margin_per_triplet():
    e = torch.ones(128, 4) / 2
    assert abs(float(triplet_loss(e, e, e, 0.2, "sum")) - 128 * 0.2) < 1e-4


def test_triplet_loss_gradient_pushes_negative_away():
    a = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.8, 0.6]])
    n = torch.tensor([[0.9, 0.1]], requires_grad=True)  # violates the margin
    triplet_loss(a, p, n, 0.2).backward()
    stepped = n.detach() - 0.1 * n.grad
    assert float(((stepped - a) ** 2).sum()) > float(((n.detach() - a) ** 2).sum())


def test_cosface_margin_raises_loss_for_the_true_class():
    torch.manual_seed(0)
    head = CosFaceHead(8, 3, scale=10.0, margin=0.0)
    emb = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():  # losses read as numbers, not trained through
        plain = float(head(emb, y))
        head.margin = 0.35
        assert float(head(emb, y)) > plain


def test_spread_out_loss_equals_pairwise_reference():
    torch.manual_seed(1)
    emb = torch.nn.functional.normalize(torch.randn(9, 4), dim=1)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])
    cos = [float(emb[i] @ emb[j]) for i, j in itertools.permutations(range(9), 2) if y[i] != y[j]]
    m1 = sum(cos) / len(cos)
    m2 = sum(c * c for c in cos) / len(cos)
    ref = m1**2 + max(0.0, m2 - 1 / 4)
    assert abs(float(spread_out_loss(emb, y)) - ref) < 1e-6


def test_spread_out_loss_zero_for_orthogonal_people_and_penalises_clumping():
    eye = torch.eye(4)
    y = torch.arange(4)
    assert float(spread_out_loss(eye, y)) == 0.0
    clumped = torch.nn.functional.normalize(torch.ones(4, 4) + 0.1 * eye, dim=1)
    assert float(spread_out_loss(clumped, y)) > 0.5
    # one person only: no pair of different people, no penalty (and no NaN)
    assert float(spread_out_loss(clumped, torch.zeros(4, dtype=torch.long))) == 0.0


def test_relation_loss_ignores_a_rotation_but_not_a_different_arrangement():
    """Relational distillation matches similarities, not coordinates: the teacher's own embeddings
    turned by any rotation cost nothing; the same points collapsed together, or shuffled, cost a lot."""
    g = torch.Generator().manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(12, 16, generator=g), dim=1)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert relation_loss(teacher @ rotation, teacher) < 1e-10
    collapsed = torch.nn.functional.normalize(teacher + 3 * teacher.mean(0), dim=1)
    assert relation_loss(collapsed, teacher) > 0.05
    assert relation_loss(teacher[torch.randperm(12, generator=g)], teacher) > 0.02
    off = ~torch.eye(12, dtype=torch.bool)
    want = ((collapsed @ collapsed.t() - teacher @ teacher.t())[off] ** 2).mean()
    assert torch.allclose(relation_loss(collapsed, teacher), want)
    assert float(relation_loss(teacher[:1], teacher[:1])) == 0.0  # one photo: no pair to compare
