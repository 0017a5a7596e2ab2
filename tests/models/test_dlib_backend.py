"""The dlib backend keeps the embedder contract; without the extra it is a one-line error."""

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from facegallery.cli import main
from facegallery.embedder import load_model
from facegallery.errors import UserError
from facegallery.images import load_image
from facegallery.models.dlib_backend import fingerprint


@pytest.fixture(scope="module")
def dlib_embedder():
    pytest.importorskip("dlib")
    return load_model("dlib")


def test_contract(dlib_embedder):
    e = dlib_embedder
    assert e.name == "dlib" and e.input_size == 150 and e.config == {}
    assert e.fingerprint.startswith("dlib:") and e.fingerprint == load_model("dlib").fingerprint
    assert 0.0 < e.threshold < 4.0
    crops = np.random.default_rng(0).integers(0, 256, (3, 100, 100, 3), dtype=np.uint8)
    out = e.embed(crops)
    assert out.shape == (3, 128) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.allclose(e.embed(list(crops[:1])), out[:1], atol=1e-6)  # a list or a batch, the same vectors
    assert e.embed(np.zeros((0, 100, 100, 3), np.uint8)).shape == (0, 128)


def test_threshold_separates_a_known_person_from_a_stranger(dlib_embedder, pubfig):
    """The threshold is on the distance to a person's centroid (the mean of their unit vectors)."""
    known = [load_image(pubfig / "train" / "Adam Sandler" / f"{n}.jpg") for n in (3, 5, 7)]
    probe = load_image(pubfig / "test" / "Adam Sandler" / "241.jpg")
    stranger = load_image(pubfig / "test" / "Angelina Jolie" / "1002.jpg")
    *gallery, p, s = dlib_embedder.embed(known + [probe, stranger])
    centroid = np.mean(gallery, axis=0)
    assert ((p - centroid) ** 2).sum() < dlib_embedder.threshold < ((s - centroid) ** 2).sum()


def test_fingerprint_follows_the_weights(tmp_path):
    a, b = tmp_path / "a.dat", tmp_path / "b.dat"
    a.write_bytes(b"weights one")
    b.write_bytes(b"landmarks")
    first = fingerprint([a, b])
    assert fingerprint([a, b]) == first
    a.write_bytes(b"weights two")
    assert fingerprint([a, b]) != first


def test_missing_extra_is_a_one_line_error(monkeypatch, face_tree):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(UserError, match=r"pip install 'facegallery\[dlib\]'"):
        load_model("dlib")
    r = CliRunner().invoke(
        main,
        [
            "identify",
            "--library",
            str(face_tree),
            "--model",
            "dlib",
            "--detect",
            "off",
            str(face_tree / "Person 0" / "1.jpg"),
        ],
    )
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        "facegallery: error: face detection and the dlib model need the dlib extra: pip install 'facegallery[dlib]'"
    ]
