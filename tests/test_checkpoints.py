import pytest
import torch

from facegallery import checkpoints
from facegallery.embedder import load_model
from facegallery.errors import UserError
from facegallery.models import create_model, list_models


def test_registry_has_both_networks_with_unit_outputs():
    assert {"seed-cnn", "resface64"} <= set(list_models())
    for name in ("seed-cnn", "resface64"):
        m = create_model(name).eval()
        x = torch.rand(2, 3, m.input_size, m.input_size)
        with torch.no_grad():
            e = m(x)
        assert e.shape == (2, 128) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(UserError, match="unknown model architecture"):
        create_model("nope")


def test_half_precision_round_trip_keeps_outputs(tmp_path):
    torch.manual_seed(0)
    m = create_model("resface64").eval()
    checkpoints.save_checkpoint(tmp_path, m, {"arch": "resface64", "label_map": ["a"]}, half=True)
    e = load_model(tmp_path)
    x = (torch.rand(3, 64, 64, 3) * 255).to(torch.uint8).numpy()
    with torch.no_grad():
        ref = m(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).numpy()
    assert abs(e.embed(x) - ref).max() < 2e-2
    assert e.label_map == ["a"]


def test_fingerprint_changes_with_weights(tmp_path):
    torch.manual_seed(0)
    checkpoints.save_checkpoint(tmp_path / "a", create_model("resface64"), {"arch": "resface64"})
    checkpoints.save_checkpoint(tmp_path / "b", create_model("resface64"), {"arch": "resface64"})
    assert load_model(tmp_path / "a").fingerprint != load_model(tmp_path / "b").fingerprint


def test_not_a_checkpoint_is_a_user_error(tmp_path):
    (tmp_path / "config.json").write_text("{")
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="corrupt"):
        load_model(tmp_path)
    with pytest.raises(UserError, match="not a checkpoint"):
        checkpoints.read_config(tmp_path / "sub")
