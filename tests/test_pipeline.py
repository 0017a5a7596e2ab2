"""The shared pipeline: paths, bytes, named bytes, open files and arrays give the same answers; what
cannot be read comes back as a typed skip with its reason and kind, not only as a warning."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facegallery.embedder import load_model
from facegallery.errors import InvalidInput, TooLarge
from facegallery.gallery import Gallery
from facegallery.images import PhotoBytes, SkipWarning
from facegallery.library import Library


def test_every_kind_of_photo_gives_the_same_answer(face_tree, tiny_model_dir, tmp_path):
    lib = Library.from_folder(face_tree, load_model(tiny_model_dir), detect="off")
    path = face_tree / "Person 2" / "3.jpg"
    data = path.read_bytes()
    pixels = np.asarray(Image.open(path).convert("RGB"))
    found = lib.identify([path, data, PhotoBytes("upload.jpg", data), io.BytesIO(data), pixels], detect="off")
    assert [a["path"] for a in found] == [str(path), "<bytes>", "upload.jpg", "<file>", "<array>"]
    names = {a["faces"][0]["name"] for a in found}
    distances = {a["faces"][0]["distance"] for a in found}
    assert names == {"Person 2"} and len(distances) == 1 and found.skipped == []


def test_skipped_photos_are_typed(face_tree, tiny_model_dir, tmp_path):
    with Gallery.open(tmp_path / "g.db", model=tiny_model_dir, create=True) as g:
        g.enroll_folder(face_tree, detect="off")
        huge = io.BytesIO()
        Image.new("RGB", (300, 300)).save(huge, format="PNG")
        good = PhotoBytes("ok.jpg", (face_tree / "Person 1" / "2.jpg").read_bytes())
        found = g.recognize(
            [good, PhotoBytes("notes.txt", b"hello"), tmp_path / "gone.jpg", PhotoBytes("big.png", huge.getvalue())],
            detect="off",
            max_pixels=50_000,
        )
        assert [a["path"] for a in found] == ["ok.jpg"] and found[0]["faces"][0]["name"] == "Person 1"
        assert "score" in found[0]["faces"][0]
        kinds = {s.path: s.error for s in found.skipped}
        assert set(kinds) == {"notes.txt", str(tmp_path / "gone.jpg"), "big.png"}
        assert isinstance(kinds["notes.txt"], InvalidInput) and isinstance(kinds["big.png"], TooLarge)
        assert found.as_dict()["skipped"][0] == {"path": "notes.txt", "reason": found.skipped[0].reason}
        assert "not a readable image" in found.skipped[0].reason and not found.skipped[0].reason.startswith("notes")


def test_enrol_reports_its_problems_and_keeps_thumbnails(face_tree, tiny_model_dir, tmp_path):
    with Gallery.open(tmp_path / "g.db", model=tiny_model_dir, create=True) as g:
        with pytest.warns(SkipWarning, match="<bytes>: not a readable image"):
            res = g.enroll("Ada", [face_tree / "Person 0" / "1.jpg", b"not an image"], detect="off")
        assert res.added == 1 and res.rejected == 1 and "not a readable image" in res.problems[0].reason
        jpeg = g.thumbnail("Ada")
        assert jpeg[:2] == b"\xff\xd8" and Image.open(io.BytesIO(jpeg)).size == (96, 96)
        (photo,) = g.photos("Ada")
        assert g.remove("Ada", sha256=photo.sha256) == 1 and g.thumbnail("Ada") is None
