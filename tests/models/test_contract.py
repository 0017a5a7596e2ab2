"""One contract over every registered architecture and every shipped model (as timm tests its models)."""

import numpy as np
import pytest
import torch

from facegallery.embedder import SPEC_KEYS, load_model, shipped_models
from facegallery.models import create_model, list_models


@pytest.mark.parametrize("arch", list_models())
def test_every_architecture_maps_a_batch_to_unit_rows(arch):
    torch.manual_seed(0)
    net = create_model(arch).eval()
    s = int(net.input_size)
    with torch.no_grad():
        out = net(torch.rand(2, 3, s, s))
    assert out.shape == (2, 128) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("name", shipped_models())
def test_every_shipped_model_keeps_the_embedder_contract(name):
    a, b = load_model(name), load_model(name)
    assert a.fingerprint == b.fingerprint and a.fingerprint.startswith(name)
    crops = np.random.default_rng(0).integers(0, 256, (3, 100, 100, 3), dtype=np.uint8)
    emb = a.embed(crops)
    assert emb.shape == (3, a.spec["embedding_dim"]) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert np.allclose(emb, b.embed(crops), atol=1e-6)  # deterministic
    assert all(a.spec.get(k) not in (None, "") for k in SPEC_KEYS), a.spec  # the card is complete
    assert a.spec["template"] == a.template.name and 0 < a.threshold < 4
    fp32 = load_model(f"{name}@fp32")
    assert fp32.fingerprint != a.fingerprint or a.precision == "fp32"  # int8 is another model


@pytest.mark.parametrize("arch", [a for a in list_models() if hasattr(create_model(a), "stages")])
def test_stages_cover_every_parameter_once_from_input_to_head(arch):
    """What ``train --train-layers`` relies on: the stages partition the network, the head is last."""
    net = create_model(arch)
    stages = net.stages()
    ids = [id(p) for s in stages for p in s.parameters()]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in net.parameters()}
    assert len(stages) >= 3
    head = {id(p) for p in stages[-1].parameters()}
    last_linear = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert id(last_linear.weight) in head  # the projection to the embedding is in the head
