"""Every registered detector keeps the contract the pipeline relies on (dlib's own ones skip without the
dlib extra)."""

import json

import numpy as np
import pytest
from PIL import Image

from facegallery.detectors import Detection, describe, detector_names, load_detector
from facegallery.errors import UserError

#: (x, y, side) of each pasted head
HEADS = [(30, 40, 200), (330, 220, 130), (520, 30, 90)]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return pytest.importorskip("skimage.data").astronaut()


@pytest.fixture(scope="module")
def group(astronaut) -> np.ndarray:
    """A 640x480 photo of three faces (200, 130 and 90 px heads) on a plain background."""
    face = Image.fromarray(astronaut[40:210, 135:305])
    canvas = Image.new("RGB", (640, 480), (90, 110, 130))
    for x, y, s in HEADS:
        canvas.paste(face.resize((s, s), Image.Resampling.BICUBIC), (x, y))
    return np.asarray(canvas)


def build(name: str):
    try:
        return load_detector(name)
    except UserError as e:
        if "dlib extra" in str(e):
            pytest.skip(str(e))
        raise


@pytest.fixture(params=detector_names())
def detector(request):
    return build(request.param)


def test_detections_are_well_formed_on_a_three_face_photo(detector, group):
    found = detector.detect(group)
    assert len(found) == 3 and all(isinstance(d, Detection) for d in found)
    h, w = group.shape[:2]
    for d in found:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h  # inside the photo
        if d.landmarks is not None:
            assert d.landmarks.shape == (5, 2) and detector.landmark_scheme is not None
            assert ((d.landmarks >= [x0, y0]) & (d.landmarks <= [x1, y1])).all()  # inside their box
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)
    json.dumps(describe(detector))  # its settings are data a gallery and the cache can record


def slow(detector) -> None:
    if detector.name == "dlib-cnn":
        pytest.skip("dlib-bin's CPU build takes seconds a photo; it is the mmod network (tests/test_mmod.py)")


def test_the_three_faces_are_found_where_they_are(detector, group):
    slow(detector)
    found = detector.detect(group)
    centres = [((d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2) for d in found]
    for x, y, s in HEADS:
        assert sum(x < cx < x + s and y < cy < y + s for cx, cy in centres) == 1


def test_nothing_on_blank_and_tiny_images(detector):
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((6, 5, 3), np.uint8)) == []
    assert detector.detect(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)) == []


def test_a_reduced_decode_finds_the_same_faces_in_its_own_pixels(detector, group):
    """``scale``: pixels showing the photo at half its size, boxes returned in those pixels."""
    slow(detector)
    full = detector.detect(group)
    half = detector.detect(np.asarray(Image.fromarray(group).resize((320, 240), Image.Resampling.BILINEAR)), 0.5)
    assert len(half) == len(full)
    for a, b in zip(sorted(full, key=lambda d: d.box[0]), sorted(half, key=lambda d: d.box[0])):
        assert np.allclose(np.array(b.box) * 2, a.box, atol=0.12 * (a.box[2] - a.box[0]))
