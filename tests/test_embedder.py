"""load_model and the shipped default: the contract, the crop geometry, and that the shipped weights
really recognise people (a few real PubFig83 photos, skipped where the data is absent)."""

import numpy as np
import pytest
import torch

from facegallery import quantization
from facegallery.datasets import discover, numbered_key
from facegallery.embedder import (
    DEFAULT_MODEL,
    center_crop,
    fold_batchnorm,
    load_model,
    load_size,
    shipped_models,
    to_tensor,
)
from facegallery.errors import UserError
from facegallery.images import load_image
from facegallery.models import create_model
from facegallery.recognition import centroids, squared_distances


@pytest.fixture(scope="module")
def shipped():
    return load_model("resface64-pubfig83")


def test_default_is_the_pretrained_port_and_self_describing():
    default = load_model()
    assert DEFAULT_MODEL == "dlib-resnet29-v1" and DEFAULT_MODEL in shipped_models()
    assert default.name.split("@")[0] == DEFAULT_MODEL and default.config["arch"] == "dlib-resnet29"
    assert default.template.name == "dlib-chip-150-0.25" and default.spec["licence"].startswith("CC0")
    assert 0.0 < default.threshold < 0.36  # calibrated for centroids; dlib's pair rule (0.36) is far looser


def test_resface_is_shipped_and_self_describing(shipped):
    assert shipped.name.split("@")[0] == "resface64-pubfig83"
    # the shipped model carries an int8 calibration, used wherever this PyTorch can run it
    assert shipped.precision == ("int8" if quantization.available() else "fp32")
    assert shipped.name == "resface64-pubfig83" + ("@int8" if quantization.available() else "")
    assert shipped.config["arch"] == "resface64" and len(set(shipped.label_map)) == len(shipped.label_map) > 1
    assert 0.0 < shipped.threshold < 4.0 and shipped.flip
    assert " train --data " in shipped.config["command"]  # how it was made travels with it
    assert shipped.input_size == load_size(64, shipped.config["crop"]) and shipped.net_size == 64


def test_embeddings_are_unit_and_independent_of_batching(shipped):
    crops = np.random.default_rng(0).integers(0, 256, (5, 100, 100, 3), dtype=np.uint8)
    out = shipped.embed(crops)
    assert out.shape == (5, 128) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.allclose(shipped.embed(list(crops[2:3]), batch_size=1), out[2:3], atol=1e-5)


@pytest.mark.parametrize("arch", ["resface64", "seed-cnn"])
def test_folding_batchnorm_keeps_outputs(arch):
    torch.manual_seed(0)
    net = create_model(arch)
    for m in net.modules():  # non-trivial statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(3, 3, net.input_size, net.input_size)
    with torch.no_grad():
        assert torch.allclose(folded(x), net(x), atol=1e-5)


def test_center_crop_takes_the_middle():
    x = to_tensor(np.arange(4 * 4 * 3, dtype=np.uint8).reshape(1, 4, 4, 3))
    assert center_crop(x, 2).shape == (1, 3, 2, 2)
    assert (center_crop(x, 2) == x[:, :, 1:3, 1:3]).all()


def test_unknown_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such model"):
        load_model(tmp_path / "nothing-here")


def test_shipped_model_recognises_later_photos_of_known_people(shipped, pubfig):
    """10 people, centroids of 20 training photos each, 3 later (test) photos each as probes: chance is
    3/30 right; an untrained network got 7, the shipped models 24 or more."""
    train, test = discover(pubfig / "train"), discover(pubfig / "test")
    people = train.names[:10]
    enrol, labels, probes, truth = [], [], [], []
    for k, name in enumerate(people):
        mine = sorted((p for p, l in zip(train.paths, train.labels) if train.names[l] == name), key=numbered_key)
        later = sorted((p for p, l in zip(test.paths, test.labels) if test.names[l] == name), key=numbered_key)
        enrol += [load_image(p) for p in mine[:20]]
        labels += [k] * 20
        probes += [load_image(p) for p in later[:3]]
        truth += [k] * 3
    cents = centroids(shipped.embed(enrol), np.array(labels), len(people))
    guess = squared_distances(shipped.embed(probes), cents).argmin(1)
    assert (guess == np.array(truth)).sum() >= 18


def test_default_embeds_crops_without_dlib(without_dlib):
    """A plain install (no dlib-bin, no face_recognition_models) embeds with the default: the network
    and the landmarks that align whole crops are the project's own."""
    without_dlib(
        "import numpy as np\nfrom facegallery import load_model\n"
        "e = load_model().embed(np.random.default_rng(0).integers(0, 256, (2, 100, 100, 3), dtype=np.uint8))\n"
        "assert e.shape == (2, 128) and 'dlib' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')"
    )
