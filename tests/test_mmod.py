"""The native MMOD face detector: its pyramid layout, overlap rule, shipped weights, and parity with dlib-bin."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facegallery import mmod
from facegallery.detection import detect_faces
from facegallery.images import load_image
from facegallery.models.dlib_mmod import from_dat, output_to_input, smallest_input

#: A real LFW photo showing three people (the two at the sides turned and cut by the border).
THREE = Path("Bertrand_Bonello") / "Bertrand_Bonello_0001.jpg"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return pytest.importorskip("skimage.data").astronaut()


def _overlap(a, b) -> bool:
    (t0, l0, r0, c0), (t1, l1, r1, c1) = a, b
    return not (t0 + r0 <= t1 or t1 + r1 <= t0 or l0 + c0 <= l1 or l1 + c1 <= l0)


@pytest.mark.parametrize("h, w", [(768, 1024), (250, 250), (100, 700), (700, 90), (5, 5), (37, 12)])
def test_pyramid_levels_shrink_by_five_sixths_and_tile_without_overlap(h, w):
    rects, rows, cols = mmod.tile_layout(h, w)
    sizes = [(r, c) for _, _, r, c in rects]
    assert rects[0] == (11, 11, h, w) and cols == w + 22
    for (r0, c0), (r1, c1) in zip(sizes, sizes[1:]):
        assert (r1, c1) == (r0 * 5 // 6, c0 * 5 // 6) and r1 >= 5
    for t, left, r, c in rects:  # inside the tiled image's border; no two levels share a pixel
        assert t >= 11 and left >= 11 and t + r <= rows - 11 and left + c <= cols - 11
    assert not any(_overlap(a, b) for a, b in itertools.combinations(rects, 2))


def test_output_cells_map_to_the_centre_of_their_receptive_field():
    x, y = output_to_input(np.array([0, 2]), np.array([0, 3]))
    assert x.tolist() == [14.0, 38.0] and y.tolist() == [14.0, 30.0]
    assert smallest_input() == 29


def test_nms_drops_overlapping_and_covered_boxes_keeps_the_rest():
    boxes = np.array(
        [
            [0, 0, 99, 99],  # best
            [10, 10, 109, 109],  # overlaps the best by 0.69 of their bounding rectangle: dropped
            [200, 0, 299, 99],  # apart: kept
            [220, 20, 259, 59],  # inside a kept box: 0.16 of it, and covering all of itself is not > 1.0
            [60, 0, 159, 99],  # overlaps the best by 40 / 160 of the bounding rectangle: kept
        ],
        float,
    )
    assert mmod.nms(boxes, 0.338, 1.0) == [0, 2, 3, 4]
    assert mmod.nms(boxes, 0.2, 1.0) == [0, 2, 3]
    assert mmod.nms(boxes, 0.338, 0.9) == [0, 2, 4]
    assert mmod.nms(np.zeros((0, 4)), 0.3, 1.0) == []


def test_a_box_exactly_covering_another_is_not_dropped_by_coverage_alone():
    boxes = np.array([[0, 0, 99, 99], [0, 0, 99, 49]], float)  # the second is half the first
    assert mmod.nms(boxes, 0.6, 1.0) == [0, 1]  # IoU 0.5 < 0.6, coverage 1.0 is not > 1.0
    assert mmod.nms(boxes, 0.6, 0.9) == [0]


def test_blank_tiny_and_faceless_photos_have_no_face():
    det = mmod.shipped()
    for shape in [(1, 1, 3), (6, 6, 3), (7, 7, 3), (30, 500, 3), (300, 400, 3)]:
        boxes, scores = det.detect(np.full(shape, 128, np.uint8))
        assert boxes.shape == (0, 4) and scores.shape == (0,)
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert len(det.detect(noise)[0]) == 0


def test_the_astronaut_is_found_where_dlib_finds_her(astronaut):
    boxes, scores = mmod.shipped().detect(astronaut)
    assert boxes.tolist() == [[168.0, 69.0, 264.0, 165.0]] and scores[0] == pytest.approx(1.063, abs=2e-3)


def test_three_people_of_a_real_photo_are_found(lfw):
    photo = load_image(lfw / "lfw-deepfunneled" / THREE)
    boxes, scores = mmod.shipped().detect(photo)
    assert boxes.tolist() == [[72.0, 77.0, 168.0, 172.0], [149.0, 77.0, 244.0, 172.0], [12.0, 76.0, 92.0, 156.0]]
    faces = detect_faces(photo, "on", "mmod")  # the pipeline: scanned at 1.6x, landmarks, boxes inside the photo
    assert len(faces) == 3
    centres = sorted(((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in faces)
    for (cx, cy), (ex, ey) in zip(centres, [(52, 116), (120, 125), (197, 125)]):
        assert abs(cx - ex) < 12 and abs(cy - ey) < 12
    assert all(0 <= f.box[0] < f.box[2] <= 250 and 0 <= f.box[1] < f.box[3] <= 250 for f in faces)


def test_shipped_weights_are_dlibs_file(dlib_models):
    model, settings = from_dat(dlib_models / "mmod_human_face_detector.dat")
    shipped = mmod.shipped()
    assert json.loads(json.dumps(settings)) == shipped.settings and settings["window_width"] == 80
    for k, v in model.state_dict().items():
        assert torch.equal(v, shipped.model.state_dict()[k]), k


def test_boxes_and_scores_equal_dlib_bins(dlib_models, lfw, astronaut):
    dlib = pytest.importorskip("dlib")
    ref = dlib.cnn_face_detection_model_v1(str(dlib_models / "mmod_human_face_detector.dat"))
    folder = lfw / "lfw-deepfunneled"
    photos = [astronaut, load_image(folder / THREE)] + [load_image(p) for p in sorted(folder.glob("A*/*_0001.jpg"))[:6]]
    for px in photos:
        boxes, scores = mmod.shipped().detect(px)
        theirs = ref(px, 0)
        assert boxes.tolist() == [
            [d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1] for d in theirs
        ]
        assert np.allclose(scores, [d.confidence for d in theirs], atol=1e-4)
