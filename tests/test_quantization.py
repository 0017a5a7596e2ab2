"""int8 networks: calibration stored without pickles, rebuilt on load, close to the float network, with
their own fingerprint and threshold; the ways it can fail are one-line errors or a float fallback."""

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facegallery import checkpoints, int8, quantization
from facegallery.cli import main
from facegallery.embedder import load_model
from facegallery.errors import UserError
from facegallery.models import create_model

pytestmark = pytest.mark.skipif(not quantization.available(), reason="no x86 quantised engine here")


@pytest.fixture
def quantized(tiny_model_dir, tmp_path, make_face):
    """A copy of the tiny checkpoint with an int8 calibration and validation figures."""

    def photos(people: int, shots: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        pix = np.stack([make_face(p, s, 85) for p in range(people) for s in range(first, first + shots)])
        return pix, np.repeat(np.arange(people), shots)

    folder = tmp_path / "q"
    shutil.copytree(tiny_model_dir, folder)
    calib, _ = photos(6, 4)
    gal, gal_labels = photos(3, 4)
    gen, gen_labels = photos(3, 2, first=4)
    val = {
        "gallery": gal,
        "gallery_labels": gal_labels,
        "genuine": gen,
        "genuine_labels": gen_labels,
        "impostors": np.stack([make_face(p, 0, 85) for p in range(3, 6)]),
    }
    info = int8.quantize_checkpoint(folder, calib, val)
    return folder, info


def test_int8_network_follows_the_float_one(quantized, make_face):
    folder, info = quantized
    e8, e32 = load_model(folder), load_model(f"{folder}@fp32")
    assert (e8.precision, e32.precision) == ("int8", "fp32")
    assert e8.name == "tiny@int8" and e32.name == "tiny" and e8.fingerprint != e32.fingerprint
    probes = np.stack([make_face(p, 9, 100) for p in range(8)])
    a, b = e8.embed(probes), e32.embed(probes)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert (a * b).sum(1).min() > 0.95  # close to the float network ...
    assert not np.allclose(a, b, atol=1e-4)  # ... but really a different (quantised) one
    assert np.allclose(e8.embed(probes[3:4], batch_size=1), a[3:4], atol=1e-5)  # batching does not matter
    # the int8 network carries its own calibrated threshold; the float one keeps the checkpoint's
    assert e8.threshold == info["threshold"] == info["validation_int8"]["threshold"]
    assert e32.threshold == 0.5 and set(info["validation_fp32"]) == {"top1", "open", "threshold"}
    assert 0.95 < info["cosine_to_fp32"]["mean"] <= 1.0


def test_calibration_is_plain_tensors_and_rebuilds_the_same_network(quantized, make_face):
    folder, _ = quantized
    stored = quantization.load(folder)  # safetensors: no pickle involved
    assert stored and all(isinstance(v, torch.Tensor) for v in stored.values())
    probes = np.stack([make_face(p, 7, 100) for p in range(4)])
    assert np.array_equal(load_model(folder).embed(probes), load_model(folder).embed(probes))


def test_calibration_of_another_network_is_refused_or_ignored(quantized, tmp_path):
    folder, _ = quantized
    seed = create_model("seed-cnn")
    with pytest.raises(ValueError, match="observer tensors"):
        quantization.build(seed, quantization.load(folder), 128)
    other = tmp_path / "seed"
    checkpoints.save_checkpoint(other, seed.eval(), {"name": "seed", "arch": "seed-cnn"})
    shutil.copy(folder / quantization.INT8, other / quantization.INT8)
    with pytest.warns(UserWarning, match="does not fit"):
        assert load_model(other).precision == "fp32"  # auto: falls back to the float network
    with pytest.raises(UserError, match="does not fit"):
        load_model(other, precision="int8")


def test_missing_damaged_or_unsupported_int8_are_one_line_errors(quantized, tiny_model_dir, monkeypatch):
    folder, _ = quantized
    with pytest.raises(UserError, match="no int8 calibration.*facegallery quantize"):
        load_model(f"{tiny_model_dir}@int8")
    assert load_model(tiny_model_dir).precision == "fp32"  # auto without a calibration
    with pytest.raises(UserError, match="unknown precision"):
        load_model(folder, precision="fp16")
    monkeypatch.setattr(quantization, "available", lambda: False)
    assert load_model(folder).precision == "fp32"
    with pytest.raises(UserError, match="cannot run int8"):
        load_model(folder, precision="int8")
    monkeypatch.undo()
    (folder / quantization.INT8).write_bytes(b"not safetensors")
    with pytest.raises(UserError, match=quantization.INT8):
        load_model(folder)


def test_quantize_command_calibrates_on_the_training_part(face_tree, tmp_path):
    from facegallery.training import TrainConfig, train

    out = train(
        TrainConfig(
            data=str(face_tree),
            out=str(tmp_path / "m"),
            steps=4,
            p=3,
            k=2,
            eval_every=4,
            val_impostors=1,
            val_fraction=0.2,
            warmup=2,
            threads=1,
        ),
        progress=False,
        log=lambda s: None,
    )
    trained = (out / quantization.INT8).read_bytes()  # training ends by quantising the kept model
    assert checkpoints.read_config(out)["int8"]["validation_int8"]["top1"] >= 0
    (out / quantization.INT8).unlink()
    checkpoints.update_config(out, threshold=3.5)  # as if calibrated by an older rule
    r = CliRunner().invoke(main, ["quantize", str(out), "--data", str(face_tree), "--photos", "512"])
    assert r.exit_code == 0, r.output
    assert "int8" in r.output and "cosine to float" in r.output
    assert (out / quantization.INT8).read_bytes() == trained  # same photos, same calibration
    cfg = checkpoints.read_config(out)  # the command also recalibrates the float network's threshold
    assert cfg["threshold"] == cfg["int8"]["validation_fp32"]["threshold"] != 3.5
    r = CliRunner().invoke(main, ["quantize", str(tmp_path / "nope"), "--data", str(face_tree)])
    assert r.exit_code == 2 and "no such model" in r.output
