"""The face cache: what it keys on, what it gives back, and that nothing is found twice."""

import io

import numpy as np
import pytest
from PIL import Image

from facegallery import pipeline
from facegallery.detectors import load_detector
from facegallery.embedder import load_model
from facegallery.facecache import FaceCache
from facegallery.pipeline import Finder, ReadPhoto, read_photos


@pytest.fixture(scope="module")
def group_jpeg() -> bytes:
    """A 640x480 JPEG of two faces."""
    a = pytest.importorskip("skimage.data").astronaut()
    face = Image.fromarray(a[40:210, 135:305])
    canvas = Image.new("RGB", (640, 480), (90, 110, 130))
    canvas.paste(face.resize((160, 160)), (40, 60))
    canvas.paste(face.resize((110, 110)), (400, 250))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture
def counted(monkeypatch):
    """How many photos had their faces found (not read from the cache)."""
    calls = []
    real = Finder.faces
    monkeypatch.setattr(Finder, "faces", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    return calls


def read_embedded(paths, finder, embedder):
    got = [r for r in read_photos(paths, finder) if isinstance(r, ReadPhoto)]
    from facegallery.embedder import embed_faces

    for r in got:
        embed_faces(embedder, r.faces)
    finder.remember(got)
    return got


def test_a_second_read_finds_nothing_and_gives_the_same_faces(tmp_path, group_jpeg, tiny_model_dir, counted):
    (tmp_path / "a.jpg").write_bytes(group_jpeg)
    (tmp_path / "renamed copy.jpg").write_bytes(group_jpeg)
    embedder = load_model(tiny_model_dir)
    first = read_embedded([tmp_path / "a.jpg"], Finder.of(embedder, "on", "yunet"), embedder)
    assert len(counted) == 1 and len(first[0].faces) == 2
    again = read_embedded([tmp_path / "renamed copy.jpg"], Finder.of(embedder, "on", "yunet"), embedder)
    assert len(counted) == 1 and not again[0].fresh  # the same bytes under another name: a hit
    for f, g in zip(first[0].faces, again[0].faces):
        assert g.crop is None and g.box == f.box and g.landmarks == f.landmarks and g.detected
        assert np.allclose(g.embedding, f.embedding, atol=1e-6) and g.thumbnail() == f.thumbnail()


@pytest.mark.parametrize(
    "change", ["min_face", "detector", "model", "detect", "alignment"], ids=lambda c: f"another {c}"
)
def test_what_changes_the_faces_is_another_entry(tmp_path, group_jpeg, tiny_model_dir, counted, change):
    from dataclasses import replace

    (tmp_path / "a.jpg").write_bytes(group_jpeg)
    embedder = load_model(tiny_model_dir)
    read_embedded([tmp_path / "a.jpg"], Finder.of(embedder, "on", "yunet"), embedder)
    other = {
        "min_face": lambda: Finder.of(embedder, "on", load_detector("yunet", 30)),
        "detector": lambda: Finder.of(embedder, "on", "mmod"),
        "model": lambda: Finder.of(load_model("resface64-pubfig83"), "on", "yunet"),
        "detect": lambda: Finder.of(embedder, "auto", "yunet"),
        "alignment": lambda: replace(
            Finder.of(embedder, "on", "yunet"),
            template=replace(embedder.template, others=()),  # YuNet's points not placed: dlib's landmarks
        ),
    }[change]()
    got = next(read_photos([tmp_path / "a.jpg"], other))
    assert got.fresh and len(counted) == 2


def test_torn_entries_read_as_misses_and_the_cache_can_be_listed_and_cleared(tmp_path, group_jpeg, tiny_model_dir):
    (tmp_path / "a.jpg").write_bytes(group_jpeg)
    embedder = load_model(tiny_model_dir)
    finder = Finder.of(embedder, "on", "yunet")
    read_embedded([tmp_path / "a.jpg"], finder, embedder)
    cache = FaceCache()
    (entry,) = cache.summary()
    assert entry["photos"] == 1 and entry["model"] == embedder.fingerprint and '"yunet"' in entry["detector"]
    db = cache._db()
    db.execute("UPDATE faces SET data = ?", (b"not an npz",))
    assert next(read_photos([tmp_path / "a.jpg"], finder)).fresh  # found again, not a crash
    assert cache.clear() == 1 and cache.summary() == []


def test_an_unwritable_cache_only_costs_time(tmp_path, group_jpeg, tiny_model_dir, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    (tmp_path / "a.jpg").write_bytes(group_jpeg)
    embedder = load_model(tiny_model_dir)
    finder = Finder.of(embedder, "on", "yunet", cache=FaceCache(blocker / "cache"))
    assert len(read_embedded([tmp_path / "a.jpg"], finder, embedder)[0].faces) == 2


def test_workers_give_the_same_answers_in_order(tmp_path, face_tree, tiny_model_dir):
    paths = sorted(face_tree.rglob("*.jpg"))
    embedder = load_model(tiny_model_dir)
    one = [r.faces[0].box for r in read_photos(paths, Finder.of(embedder, "off", cache=False, workers=1))]
    many = [r.faces[0].box for r in read_photos(paths, Finder.of(embedder, "off", cache=False, workers=3))]
    assert one == many and len(one) == len(paths)
    assert pipeline.default_workers() >= 1
