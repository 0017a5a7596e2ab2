"""The detector chosen at the edge: --detector / --min-face on the commands, a gallery that remembers
its detector, `embed` per face, and `facegallery cache`."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facegallery.cli import main


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def group(tmp_path):
    """A 640x480 photo of two faces."""
    astronaut = pytest.importorskip("skimage.data").astronaut()
    face = Image.fromarray(astronaut[40:210, 135:305])
    canvas = Image.new("RGB", (640, 480), (70, 90, 120))
    canvas.paste(face.resize((200, 200)), (40, 60))
    canvas.paste(face.resize((130, 130)), (420, 300))
    path = tmp_path / "group.jpg"
    canvas.save(path, quality=95)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ("identify", "--library", "LIB"),
        ("enroll", "--gallery", "G", "--create", "--name", "Ada"),
        ("embed", "--out", "OUT"),
        ("cluster", "--out", "OUTDIR"),
        ("evaluate", "--protocol", "lfw", "--out", "OUTDIR"),
        ("serve", "--gallery", "G"),
    ],
    ids=lambda c: c[0],
)
def test_an_unknown_detector_is_one_line_naming_the_known_ones(command, group, tmp_path, face_tree):
    swap = {"LIB": face_tree, "G": tmp_path / "g.db", "OUT": tmp_path / "e.npz", "OUTDIR": tmp_path / "o"}
    args = [swap.get(a, a) for a in command]
    r = _run(*args, "--detector", "retinaface", *(() if command[0] in ("evaluate", "serve") else (group,)))
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines()[-1].endswith("known: yunet, mmod, dlib-hog, dlib-cnn")
    assert "Traceback" not in r.output


def test_verify_takes_a_detector_too(group, tmp_path):
    r = _run("verify", "--gallery", tmp_path / "g.db", "--detector", "nope", group, group)
    assert r.exit_code == 2 and "--detector 'nope': unknown face detector" in r.output


def test_embed_gives_one_row_per_face_with_its_box(group, tmp_path, tiny_model_dir):
    out = tmp_path / "e.npz"
    r = _run("embed", "--model", tiny_model_dir, "--out", out, group)
    assert r.exit_code == 0, r.output
    assert "wrote 2 embeddings of dimension 128 (1 photos)" in r.output
    with np.load(out) as z:
        assert z["embeddings"].shape == (2, 128) and z["boxes"].shape == (2, 4)
        assert list(z["paths"]) == [str(group)] * 2 and z["boxes"][0, 2] - z["boxes"][0, 0] > 100
    r = _run("embed", "--model", tiny_model_dir, "--detect", "off", "--out", out, group)
    with np.load(out) as z:  # the photo taken as one crop
        assert z["embeddings"].shape == (1, 128) and z["boxes"][0].tolist() == [0, 0, 640, 480]


def test_a_gallery_remembers_its_detector_and_says_so(tmp_path, tiny_model_dir):
    astronaut = pytest.importorskip("skimage.data").astronaut()
    photo = tmp_path / "ada.jpg"
    Image.fromarray(astronaut).save(photo)
    db = tmp_path / "g.db"
    r = _run("enroll", "--gallery", db, "--create", "--model", tiny_model_dir, "--name", "Ada",
             "--detector", "yunet", "--min-face", "30", photo)  # fmt: skip
    assert r.exit_code == 0, r.output
    from facegallery.gallery import Gallery

    with Gallery.open(db) as g:
        (found_by,) = g.detectors()
        assert found_by == {"name": "yunet", "min_face": 30, "threshold": 0.8, "max_scan_pixels": 2_000_000,
                            "precision": found_by["precision"]}  # fmt: skip
        assert g.detector.min_face == 30  # reopened without one: the gallery's own
    text = _run("threshold", "--gallery", db).output
    assert "faces found by: yunet (min_face 30, threshold 0.8, max_scan_pixels 2000000, precision " in text
    assert json.loads(_run("threshold", "--gallery", db, "--json").output)["detectors"][0]["min_face"] == 30
    people = _run("people", "--gallery", db)
    assert "Ada\t1" in people.output and "faces found by: yunet (min_face 30" in people.output
    # another detector for a second person: both recorded, the gallery still answers
    r = _run("enroll", "--gallery", db, "--name", "Bob", "--detector", "mmod", photo)
    assert r.exit_code == 0, r.output
    with Gallery.open(db) as g:
        assert [d["name"] for d in g.detectors()] == ["yunet", "mmod"]
    r = _run("identify", "--gallery", db, "--json", photo)
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["faces"][0]["name"] in ("Ada", "Bob")


def test_the_cache_command_lists_and_clears(group, tmp_path, tiny_model_dir):
    assert _run("embed", "--model", tiny_model_dir, "--out", tmp_path / "e.npz", group).exit_code == 0
    doc = json.loads(_run("cache", "--json").output)
    assert doc["path"].endswith("faces.sqlite") and doc["entries"][0]["photos"] == 1
    assert "1 photos" in _run("cache").output
    assert "cleared 1 cached photos" in _run("cache", "--clear").output
    assert json.loads(_run("cache", "--json").output)["entries"] == []
