"""`facegallery identify` on ordinary photos: --detect modes, the answer per face, --annotate."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facegallery.cli import main


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def photos(tmp_path):
    """group.jpg: the astronaut's face twice on a plain 640x480 background; crop.jpg: a small face-crop
    sized image without a face; wall.jpg: a 400x300 photo without a face."""
    astronaut = pytest.importorskip("skimage.data").astronaut()
    face = Image.fromarray(astronaut[60:190, 155:285])
    group = Image.new("RGB", (640, 480), (70, 90, 120))
    group.paste(face.resize((200, 200)), (40, 60))
    group.paste(face.resize((120, 120)), (420, 300))
    d = tmp_path / "photos"
    d.mkdir()
    group.save(d / "group.jpg", quality=95)
    Image.fromarray(np.full((100, 100, 3), 200, np.uint8)).save(d / "crop.jpg")
    Image.fromarray(np.full((300, 400, 3), 30, np.uint8)).save(d / "wall.jpg")
    return d


def test_auto_is_the_default_and_answers_every_face(face_tree, tiny_model_dir, photos):
    r = _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--json", photos)
    assert r.exit_code == 0, r.output
    out = {p["path"].split("/")[-1]: p["faces"] for p in json.loads(r.stdout)}
    group = out["group.jpg"]
    assert len(group) == 2 and all(f["detected"] for f in group)
    big, small = group
    assert 40 < big["box"][0] < big["box"][2] < 240 and 420 < small["box"][0] < small["box"][2] < 540
    for f in group:
        assert len(f["landmarks"]) == 5 and f["detection_score"] > 0 and f["candidates"]
        assert all(f["box"][0] < x < f["box"][2] and f["box"][1] < y < f["box"][3] for x, y in f["landmarks"])
    (crop,) = out["crop.jpg"]
    assert crop["detected"] is False and crop["box"] == [0.0, 0.0, 100.0, 100.0] and crop["landmarks"] is None
    assert out["wall.jpg"] == []  # a photo with no face: an empty list, not an error


def test_detect_off_takes_every_image_as_one_crop(face_tree, tiny_model_dir, photos):
    r = _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--detect", "off", "--json", photos)
    out = json.loads(r.stdout)
    assert [len(p["faces"]) for p in out] == [1, 1, 1]
    assert all("detected" not in p["faces"][0] for p in out)
    assert out[1]["faces"][0]["box"] == [0.0, 0.0, 640.0, 480.0]


def test_text_output_says_when_no_face_is_found(face_tree, tiny_model_dir, photos):
    r = _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--detect", "on", photos / "wall.jpg")
    assert r.exit_code == 0 and r.stdout.strip() == f"{photos / 'wall.jpg'}: no face found"


def test_annotate_draws_boxes_and_names(face_tree, tiny_model_dir, photos, tmp_path):
    out_dir = tmp_path / "annotated"
    r = _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--annotate", out_dir, "--json", photos)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["crop.jpg.png", "group.jpg.png", "wall.jpg.png"]
    original = np.asarray(Image.open(photos / "group.jpg").convert("RGB")).astype(int)
    drawn = np.asarray(Image.open(out_dir / "group.jpg.png")).astype(int)
    assert drawn.shape == original.shape
    changed = np.abs(drawn - original).max(2) > 60
    for f in json.loads(r.stdout)[1]["faces"]:
        x0, y0, x1, y1 = (int(round(v)) for v in f["box"])
        assert changed[y0:y1, x0 - 1 : x0 + 2].any(1).mean() > 0.9  # the box's left edge is drawn
    assert changed[400:, :300].mean() == 0  # nothing drawn away from the faces
    wall = np.asarray(Image.open(out_dir / "wall.jpg.png")).astype(int)
    assert np.abs(wall - 30).max() <= 2  # no face, nothing drawn


def test_annotate_never_overwrites_an_input_and_keeps_same_stem_photos_apart(face_tree, tiny_model_dir, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    Image.fromarray(np.full((80, 80, 3), 90, np.uint8)).save(photos / "x.jpg")
    Image.fromarray(np.full((80, 80, 3), 160, np.uint8)).save(photos / "x.png")
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    r = _run(
        "identify", "--library", face_tree, "--model", tiny_model_dir, "--detect", "off", "--annotate", photos, photos
    )
    assert r.exit_code == 0, r.output
    assert {p.name: p.read_bytes() for p in photos.iterdir() if p.name in before} == before
    assert sorted(p.name for p in photos.iterdir()) == ["x.jpg", "x.jpg.png", "x.png", "x.png.png"]
    r = _run(
        "identify",
        "--library",
        face_tree,
        "--model",
        tiny_model_dir,
        "--detect",
        "off",
        "--annotate",
        photos,
        photos / "x.jpg.png",
    )  # its own annotation would be x.jpg.png.png: never the input
    assert r.exit_code == 0 and (photos / "x.jpg.png.png").is_file()


def test_identify_and_embed_fail_when_nothing_could_be_read(face_tree, tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    (bad / "b.png").write_bytes(b"\x89PNG broken")
    r = _run("identify", "--library", face_tree, "--model", tiny_model_dir, bad)
    assert r.exit_code == 2 and "none of the 2 photos could be read" in r.output
    r = _run("embed", "--model", tiny_model_dir, "--out", tmp_path / "e.npz", bad)
    assert r.exit_code == 2 and not (tmp_path / "e.npz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_identify_reads_photo_lists_and_checks_its_options_first(face_tree, tiny_model_dir, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{face_tree / 'Person 1' / '2.jpg'}\n\n{face_tree / 'Person 2' / '3.jpg'}\n")
    r = _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--detect", "off", "--json", f"@{listing}")
    assert r.exit_code == 0, r.output
    assert [a["path"] for a in json.loads(r.stdout)] == [
        str(face_tree / "Person 1" / "2.jpg"),
        str(face_tree / "Person 2" / "3.jpg"),
    ]
    for bad in ("nan", "-0.1", "99"):
        r = _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--threshold", bad, face_tree)
        assert r.exit_code == 2 and "0..4" in r.output, bad
    r = _run("embed", "--model", tiny_model_dir, "--out", tmp_path / "missing" / "e.npz", face_tree)
    assert r.exit_code == 2 and "no such folder" in r.output


def test_text_output_names_each_faces_box_when_a_photo_has_several(face_tree, tiny_model_dir, photos):
    r = _run("identify", "--library", face_tree, "--model", tiny_model_dir, photos / "group.jpg", photos / "crop.jpg")
    assert r.exit_code == 0, r.output
    group = [line for line in r.stdout.splitlines() if "group.jpg" in line]
    assert len(group) == 2 and all("[face at " in line for line in group)
    assert len(set(line.split("]")[0] for line in group)) == 2  # two different boxes
    assert "[face at" not in next(line for line in r.stdout.splitlines() if "crop.jpg" in line)


def test_embed_on_a_full_disk_is_one_line_and_leaves_no_debris(face_tree, tiny_model_dir, tmp_path, monkeypatch):
    import errno

    def full(f, **arrays):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = CliRunner().invoke(main, ["embed", "--model", str(tiny_model_dir), "--out", str(out_dir / "e.npz"),
                                  str(face_tree)])  # fmt: skip
    assert r.exit_code == 2 and "No space left on device" in r.output and "Traceback" not in r.output
    assert list(out_dir.iterdir()) == []
