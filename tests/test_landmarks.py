"""The 5-point shape predictor without dlib: its file format, its cascade, and parity with dlib-bin."""

import numpy as np
import pytest
from safetensors.numpy import load_file

from facegallery import landmarks
from facegallery.errors import UserError
from facegallery.landmarks import ShapePredictor
from facegallery.models.dlib_dat import read_shape_predictor

SHAPE_FILE = "shape_predictor_5_face_landmarks.dat"


def write_predictor(w, path, initial, forests, anchors, deltas):
    """dlib's shape_predictor serialisation: version, initial shape, forests, anchors, deltas."""

    def matrix(v):
        w.int(-len(v)).int(-1)
        for x in v:
            w.float(float(x))

    w.int(1)
    matrix(initial)
    w.int(len(forests))
    for forest in forests:
        w.int(len(forest))
        for splits, leaves in forest:
            w.int(len(splits))
            for i1, i2, t in splits:
                w.int(i1).int(i2).float(t)
            w.int(len(leaves))
            for leaf in leaves:
                matrix(leaf)
    w.int(len(anchors))
    for a in anchors:
        w.int(len(a))
        for i in a:
            w.int(i)
    w.int(len(deltas))
    for d in deltas:
        w.int(len(d))
        for x, y in d:
            w.float(x).float(y)
    path.write_bytes(bytes(w.out))


def test_a_one_tree_cascade_moves_the_shape_by_the_leaf_its_pixels_choose(tmp_path, dat_writer):
    """One part, one level, one depth-1 tree comparing the grey level at the part with the one 0.25 box
    widths to its right: a bright right half sends it left (leaf 0), a dark one right (leaf 1)."""
    path = tmp_path / "tiny.dat"
    write_predictor(
        dat_writer(),
        path,
        initial=[0.5, 0.5],
        forests=[[([(1, 0, 10.0)], [[0.125, 0.0], [-0.125, 0.0]])]],
        anchors=[[0, 0]],
        deltas=[[(0.0, 0.0), (0.25, 0.0)]],
    )
    arrays = read_shape_predictor(path)
    assert arrays.splits.shape == (1, 1, 1, 2) and arrays.leaves.shape == (1, 1, 2, 2)
    sp = ShapePredictor({k: getattr(arrays, k) for k in landmarks.FIELDS})
    img = np.zeros((101, 101, 3), np.uint8)
    img[:, 70:] = 200  # pixel[1] - pixel[0] = 200 > 10: left child
    box = (0.0, 0.0, 101.0, 101.0)  # dlib's rectangle (0, 0, 100, 100)
    assert np.allclose(sp.predict(img, box), [[0.625 * 100 + 0.5, 50.5]])
    assert np.allclose(sp.predict(np.zeros_like(img), box), [[0.375 * 100 + 0.5, 50.5]])


def test_a_damaged_predictor_file_is_a_one_line_error(tmp_path, dat_writer):
    path = tmp_path / "bad.dat"
    write_predictor(
        dat_writer(), path, [0.5, 0.5], [[([(1, 0, 10.0)], [[0.1, 0.0]])]], [[0, 0]], [[(0.0, 0.0), (0.2, 0.0)]]
    )
    with pytest.raises(UserError, match="bad.dat: .*leaves do not fit"):
        read_shape_predictor(path)
    good = tmp_path / "good.dat"
    write_predictor(
        dat_writer(),
        good,
        [0.5, 0.5],
        [[([(1, 0, 1.0)], [[0.1, 0.0], [0.0, 0.1]])]],
        [[0, 0]],
        [[(0.0, 0.0), (0.2, 0.0)]],
    )
    (tmp_path / "cut.dat").write_bytes(good.read_bytes()[:-3])
    with pytest.raises(UserError, match="cut.dat: .*truncated"):
        read_shape_predictor(tmp_path / "cut.dat")


def test_shipped_arrays_are_dlibs_file_read_to_its_last_byte(dlib_models):
    arrays = read_shape_predictor(dlib_models / SHAPE_FILE)
    shipped = load_file(str(landmarks.WEIGHTS))
    for k in landmarks.FIELDS:
        assert np.array_equal(shipped[k], getattr(arrays, k)), k
    assert arrays.leaves.shape == (15, 500, 16, 10)


def test_landmarks_match_dlib_bin_on_real_photos(dlib_models, lfw):
    dlib = pytest.importorskip("dlib")
    from facegallery.images import load_image

    sp = dlib.shape_predictor(str(dlib_models / SHAPE_FILE))
    det = dlib.get_frontal_face_detector()
    errors = []
    for person in sorted(p.name for p in (lfw / "lfw-deepfunneled").iterdir())[:400:20]:
        pixels = load_image(next((lfw / "lfw-deepfunneled" / person).glob("*.jpg")))
        for r in det(pixels, 1):
            ref = np.array([[p.x + 0.5, p.y + 0.5] for p in sp(pixels, r).parts()])
            ours = landmarks.shipped().predict(pixels, (r.left(), r.top(), r.right() + 1, r.bottom() + 1))
            errors.append(np.linalg.norm(ours - ref, axis=1).mean())
    assert len(errors) >= 15
    # dlib rounds its points to whole pixels (a mean error of ~0.38 px by itself); ours are unrounded
    assert np.mean(errors) <= 0.5 and max(errors) < 1.0


def test_many_faces_at_once_give_each_face_its_own_landmarks():
    """Batching is only faster: photos of different sizes, boxes partly outside the photo."""
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(100, 100), (180, 240), (64, 90)]]
    boxes = [(17.0, 25.0, 81.0, 88.0), (-20.0, 10.0, 150.0, 170.0), (30.0, 20.0, 89.0, 63.0)]
    sp = landmarks.shipped()
    many = sp.predict_many(photos, boxes)
    assert many.shape == (3, 5, 2) and np.isfinite(many).all()
    for photo, box, got in zip(photos, boxes, many):
        assert np.allclose(sp.predict(photo, box), got, atol=1e-4)


def test_the_predictor_given_only_the_part_around_each_box_places_the_same_points():
    """detection.dlib_landmarks hands the predictor a view around each box: the points are exactly those
    of the whole photo, for a face in the middle and faces cut by the border."""
    from facegallery.detection import dlib_landmarks

    a = pytest.importorskip("skimage.data").astronaut()
    boxes = [(170.0, 75.0, 270.0, 170.0), (-20.0, 300.0, 90.0, 420.0), (480.0, 470.0, 560.0, 540.0)]
    whole = landmarks.shipped().predict_many([a] * len(boxes), boxes)
    assert np.allclose(np.array(dlib_landmarks(a, boxes)), whole, atol=1e-4)  # float32 rounding only
