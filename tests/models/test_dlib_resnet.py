"""The native port of dlib's face ResNet against dlib-bin itself, on real faces (skipped without dlib-bin)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from facegallery import checkpoints
from facegallery.alignment import DLIB_CHIP, align
from facegallery.detection import detect_faces
from facegallery.embedder import checkpoint_folder, load_model, to_tensor
from facegallery.lfw import nearest_centre
from facegallery.models import create_model

MODEL = "dlib-resnet29-v1"
#: LFW people with two photos each: some pairs same, most different, for the 0.6 decisions.
PEOPLE = ["Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody", "Al_Gore", "Alejandro_Toledo", "Ali_Naimi"]


@pytest.fixture(scope="module")
def dlib():
    return pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def photos(lfw: Path) -> list[np.ndarray]:
    from facegallery.images import load_image

    return [load_image(lfw / "lfw-deepfunneled" / p / f"{p}_{n:04d}.jpg") for p in PEOPLE for n in (1, 2)]


def _dlib_chip(dlib, pixels: np.ndarray, face) -> np.ndarray:
    parts = [dlib.point(int(round(x - 0.5)), int(round(y - 0.5))) for x, y in face.landmarks]
    x0, y0, x1, y1 = (int(v) for v in face.box)
    shape = dlib.full_object_detection(dlib.rectangle(x0, y0, x1 - 1, y1 - 1), parts)
    return np.asarray(dlib.get_face_chip(pixels, shape, 150, 0.25))


@pytest.fixture(scope="module")
def chips(dlib, photos) -> tuple[np.ndarray, np.ndarray]:
    """(dlib's get_face_chip, our aligner's chip) of each photo's central face, from the same landmarks
    (dlib's shape predictor's, in the MMOD box)."""
    theirs, ours = [], []
    for pixels in photos:
        face = nearest_centre(detect_faces(pixels, "on", "mmod", DLIB_CHIP), pixels.shape)  # dlib's 5 points
        theirs.append(_dlib_chip(dlib, pixels, face))
        ours.append(face.crop)
    return np.stack(theirs), np.stack(ours)


def test_port_matches_dlib_bin_on_real_chips(dlib, dlib_models, chips):
    net = dlib.face_recognition_model_v1(str(dlib_models / "dlib_face_recognition_resnet_model_v1.dat"))
    theirs = chips[0]
    ref = np.asarray(net.compute_face_descriptor([np.ascontiguousarray(c) for c in theirs]))
    net = create_model("dlib-resnet29")
    net.load_state_dict(checkpoints.load_weights(checkpoint_folder(MODEL)))  # the shipped weights
    with torch.inference_mode():
        raw = net.eval().features(to_tensor(theirs)).numpy()
    assert np.abs(raw - ref).max() <= 1e-4
    # as the embedder runs it (affine folded into the convs, channels-last): dlib's vectors made unit
    model = load_model(f"{MODEL}@fp32")
    model.flip = False  # the shipped default averages with the mirrored chip
    unit = model.embed(theirs)
    assert np.abs(unit - ref / np.linalg.norm(ref, axis=1, keepdims=True)).max() <= 1e-4
    d_ref = np.linalg.norm(ref[:, None] - ref[None], axis=2)
    d_raw = np.linalg.norm(raw[:, None] - raw[None], axis=2)
    assert np.array_equal(d_ref < 0.6, d_raw < 0.6)
    same = np.equal.outer(np.arange(len(ref)) // 2, np.arange(len(ref)) // 2)
    assert (d_ref < 0.6)[same].all() and not (d_ref < 0.6)[~same].any()  # the photos are what we think


def test_our_chip_embeds_as_dlibs_chip_does(chips):
    """Same landmarks, our warp vs dlib's (pyramid + bilinear): the embeddings differ far less than two
    photos of one person do (the measured figures over LFW are in benchmarks/RESULTS.md)."""
    model = load_model(f"{MODEL}@fp32")
    theirs, ours = model.embed(chips[0]), model.embed(chips[1])
    d = ((theirs - ours) ** 2).sum(1)
    genuine = ((theirs[0::2] - theirs[1::2]) ** 2).sum(1)
    assert d.max() < 0.02 and np.median(d) < 0.2 * np.median(genuine)


def test_a_whole_crop_is_reframed_into_the_chip(chips):
    """A PubFig83-framed crop, with no landmarks given, lands on the chip's geometry: the chip our
    pipeline cuts from it is the detected chip's, up to the crop's looser framing."""
    from facegallery.alignment import CANONICAL_LANDMARKS, PUBFIG83, similarity_transform, warp
    from facegallery.landmarks import to_template

    model = load_model(f"{MODEL}@fp32")
    chip = chips[1][0]
    # the PubFig83-framed crop around the chip's face (the inverse of the fixed transform), at 100 px
    m = similarity_transform(DLIB_CHIP.pixels(), CANONICAL_LANDMARKS * PUBFIG83.size)
    crop = warp(chip, m, PUBFIG83.size)
    d = float(((model.embed(to_template([crop], DLIB_CHIP)) - model.embed([chip])) ** 2).sum())
    assert d < 0.1
    assert align(crop, CANONICAL_LANDMARKS * 100, DLIB_CHIP).shape == (150, 150, 3)
