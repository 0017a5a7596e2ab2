"""Detection and alignment: the geometry exactly, the detectors on real and generated photos."""

import math
import sys

import numpy as np
import pytest
from PIL import Image

from facegallery import detection
from facegallery.alignment import CANONICAL_LANDMARKS, align, canonical_points, similarity_transform
from facegallery.detection import detect_faces, read_faces
from facegallery.detectors import DEFAULT_DETECTOR, Detection, detector_names, load_detector
from facegallery.detectors.base import _REGISTRY, rescaled, window_scale
from facegallery.detectors.dlib import import_dlib
from facegallery.errors import UserError
from facegallery.images import ImageReadError


def rotation(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return pytest.importorskip("skimage.data").astronaut()


@pytest.fixture
def dlib():
    return pytest.importorskip("dlib")


def test_similarity_transform_recovers_rotation_scale_translation():
    src = np.random.default_rng(0).uniform(0, 100, (5, 2))
    dst = 1.7 * src @ rotation(23).T + [12.0, -40.0]
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], 1.7 * rotation(23), atol=1e-9)
    assert np.allclose(m[:, 2], [12.0, -40.0], atol=1e-9)
    assert np.allclose(np.c_[src, np.ones(5)] @ m.T, dst, atol=1e-9)


def test_similarity_transform_is_least_squares_without_reflection():
    src = np.random.default_rng(1).uniform(0, 50, (5, 2))
    mirrored = src * [-1, 1]  # no rotation maps src onto its mirror image: the fit must stay a rotation
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    noisy = 0.5 * src @ rotation(-10).T + np.random.default_rng(2).normal(0, 0.5, (5, 2))
    m = similarity_transform(src, noisy)
    fit = np.c_[src, np.ones(5)] @ m.T
    for _ in range(20):  # no nearby similarity fits better
        a, b, tx, ty = np.random.default_rng(_).normal(0, 1e-3, 4)
        e = np.array([[a, -b, tx], [b, a, ty]])
        assert ((np.c_[src, np.ones(5)] @ (m + e).T - noisy) ** 2).sum() >= ((fit - noisy) ** 2).sum()


def dots(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A black picture with a white 3x3 dot at each point (pixel-edge coordinates)."""
    img = np.zeros((size[1], size[0], 3), np.uint8)
    for x, y in points:
        img[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
    return img


def centroid_near(img: np.ndarray, p: np.ndarray, r: int = 6) -> np.ndarray:
    x0, y0 = int(p[0]) - r, int(p[1]) - r
    w = img[y0 : y0 + 2 * r, x0 : x0 + 2 * r, 0].astype(float)
    yy, xx = np.mgrid[y0 : y0 + 2 * r, x0 : x0 + 2 * r]
    return np.array([(w * (xx + 0.5)).sum() / w.sum(), (w * (yy + 0.5)).sum() / w.sum()])


@pytest.mark.parametrize("scale,deg", [(3.0, 20.0), (0.8, -35.0)])
def test_align_puts_landmarks_on_canonical_positions(scale, deg):
    canon = canonical_points()
    marks = scale * (canon - 50) @ rotation(deg).T + [300.5, 200.5]
    crop = align(dots(marks, (600, 400)), marks)
    assert crop.shape == (100, 100, 3) and crop.dtype == np.uint8
    for p in canon:
        assert np.linalg.norm(centroid_near(crop, p) - p) < 1.0


def test_dlib_chip_template_is_dlibs_padded_template_in_edge_coordinates():
    from facegallery.alignment import DLIB_CHIP, DLIB_TEMPLATE_5

    assert DLIB_CHIP.size == 150
    assert np.allclose(DLIB_CHIP.pixels(), (DLIB_TEMPLATE_5 + 0.25) / 1.5 * 150 + 0.5)
    assert CANONICAL_LANDMARKS[0, 0] > CANONICAL_LANDMARKS[2, 0]  # dlib's order: image-right eye first


def test_align_on_a_crop_at_canonical_positions_is_the_identity():
    img = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    out = align(img, canonical_points())
    assert np.abs(out[2:-2, 2:-2].astype(int) - img[2:-2, 2:-2]).max() <= 1


class FixedDetector:
    """A plug-in detector returning one fixed box (no landmarks) in the photo's pixels."""

    name = "fixed"
    landmark_scheme = None

    def __init__(self, box=(10.0, 20.0, 90.0, 100.0), min_face=40):
        self.box, self.min_face, self.seen = box, min_face, []

    @property
    def settings(self) -> dict:
        return {"min_face": self.min_face}

    def scan_scale(self, height: int, width: int) -> float:
        return window_scale(80, self.min_face, height, width, 4_000_000)

    def detect(self, pixels, scale: float = 1.0):
        h, w = pixels.shape[:2]
        work, fx, fy = rescaled(pixels, self.scan_scale(round(h / scale), round(w / scale)) / scale)
        self.seen.append(work.shape)
        return [Detection(self.box, 2.5).scaled(scale, scale)]


def test_window_scale_makes_the_smallest_face_fill_the_window_and_caps_the_pixels():
    det = FixedDetector(min_face=40)
    det.detect(np.zeros((300, 400, 3), np.uint8))
    assert det.seen == [(600, 800, 3)]  # a 40 px face fills the 80 px window
    assert window_scale(80, 40, 3000, 4000, 1_000_000) == pytest.approx(math.sqrt(1e6 / 12e6))
    work, fx, fy = rescaled(np.zeros((3000, 4000, 3), np.uint8), math.sqrt(1e6 / 12e6))
    assert work.shape[0] * work.shape[1] <= 1_000_000 * 1.01 and fx == pytest.approx(4000 / work.shape[1])


def test_detection_scales_boxes_and_landmarks():
    d = Detection((10.0, 20.0, 30.0, 60.0), 0.9, np.array([[15.0, 30.0]] * 5)).scaled(2.0, 3.0)
    assert d.box == (20.0, 60.0, 60.0, 180.0) and np.allclose(d.landmarks, [[30.0, 90.0]] * 5)
    assert Detection((-5.0, 10.0, 120.0, 50.0), 1.0).clipped(100, 40).box == (0.0, 10.0, 100.0, 40.0)


def test_detector_registry():
    assert DEFAULT_DETECTOR == "yunet" and {"yunet", "mmod", "dlib-hog", "dlib-cnn"} <= set(detector_names())
    with pytest.raises(UserError, match="unknown face detector 'nope'; known: yunet, mmod"):
        load_detector("nope")


def test_huge_arrays_are_refused_before_detection(monkeypatch):
    monkeypatch.setattr(detection, "MAX_PIXELS", 10_000)
    with pytest.raises(UserError, match="above the limit"):
        detect_faces(np.zeros((200, 200, 3), np.uint8), "auto")


def test_a_custom_detector_gets_landmarks_and_an_aligned_crop(astronaut):
    faces = detect_faces(astronaut, "on", FixedDetector((170.0, 75.0, 270.0, 170.0), min_face=80))
    assert len(faces) == 1 and faces[0].detected and faces[0].detection_score == 2.5
    assert faces[0].box == [170.0, 75.0, 270.0, 170.0]
    (rx, ry), (lx, ly) = np.mean(faces[0].landmarks[:2], 0), np.mean(faces[0].landmarks[2:4], 0)
    assert 180 < lx < rx < 265 and abs(ry - ly) < 10  # two eyes, level, inside the box
    assert faces[0].crop.shape == (100, 100, 3)


def test_astronaut_has_one_face_where_it_is(astronaut):
    faces = detect_faces(astronaut, "auto")
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert 190 < (x0 + x1) / 2 < 250 and 95 < (y0 + y1) / 2 < 150 and 70 < x1 - x0 < 120
    assert faces[0].detected and faces[0].detection_score > 0.5
    (le, re) = faces[0].landmarks[:2]  # YuNet's five points: the eyes first, level, in the box
    assert x0 < le[0] < re[0] < x1 and abs(le[1] - re[1]) < 10


def test_every_face_of_a_group_photo_is_found(astronaut):
    face = Image.fromarray(astronaut[60:190, 155:285])
    canvas = Image.new("RGB", (900, 500), (90, 110, 130))
    spots = [(40, 60, 130), (400, 250, 200), (700, 40, 90)]
    for x, y, s in spots:
        canvas.paste(face.resize((s, s), Image.Resampling.BICUBIC), (x, y))
    faces = detect_faces(np.asarray(canvas), "on")
    assert len(faces) == 3
    assert [f.box[2] - f.box[0] for f in faces] == sorted((f.box[2] - f.box[0] for f in faces), reverse=True)
    for f, (x, y, s) in zip(faces, sorted(spots, key=lambda t: -t[2])):
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        assert x < cx < x + s and y < cy < y + s


def test_no_face_modes():
    blank_small = np.full((100, 100, 3), 128, np.uint8)
    blank_large = np.full((400, 600, 3), 128, np.uint8)
    (whole,) = detect_faces(blank_small, "auto")
    assert not whole.detected and whole.box == [0.0, 0.0, 100.0, 100.0] and whole.crop is blank_small
    assert detect_faces(blank_small, "on") == []
    assert detect_faces(blank_large, "auto") == []  # a photo without a face: no face, no error
    with pytest.warns(UserWarning, match="too small to be a face crop"):
        assert detect_faces(np.zeros((3, 2, 3), np.uint8), "auto") == []  # a 2x3 image is no face
    assert detect_faces(np.zeros((20, 20, 3), np.uint8), "auto")[0].box == [0.0, 0.0, 20.0, 20.0]


def test_a_plain_install_reads_group_photos_without_dlib(without_dlib):
    """The default detector, landmarks and alignment are the project's own: with dlib and its model
    package unimportable, a group photo still gives every face."""
    without_dlib(
        "import numpy as np\nfrom PIL import Image\nfrom skimage import data\n"
        "from facegallery.detection import detect_faces\n"
        "face = Image.fromarray(data.astronaut()[40:210, 135:305])\n"
        "canvas = Image.new('RGB', (1024, 768), (90, 110, 130))\n"
        "for x, y, s in [(40, 60, 220), (500, 300, 170), (800, 40, 150)]:\n"
        "    canvas.paste(face.resize((s, s)), (x, y))\n"
        "faces = detect_faces(np.asarray(canvas), 'on')\n"
        "assert len(faces) == 3 and all(f.detected and len(f.landmarks) == 5 for f in faces), faces\n"
        "assert not [m for m in sys.modules if 'dlib' == m.split('.')[0] and sys.modules[m] is not None]\n"
        "print('ok')"
    )


def test_missing_dlib_is_a_one_line_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(UserError, match=r"pip install 'facegallery\[dlib\]'"):
        import_dlib()


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_any_picture_mode_goes_through_detection(astronaut, tmp_path, mode):
    im = Image.fromarray(astronaut[:240, 100:340]).convert(mode)  # the head and shoulders
    path = tmp_path / ("a.png" if mode in ("RGBA", "P", "L") else "a.jpg")
    im.save(path)
    faces = read_faces(path, "auto")
    assert len(faces) == 1 and faces[0].detected


def test_transparent_png_and_tiny_images_through_detection(tmp_path):
    rgba = np.zeros((64, 48, 4), np.uint8)  # fully transparent: composited on white
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    (face,) = read_faces(tmp_path / "clear.png", "auto")
    assert not face.detected and face.crop.shape == (64, 48, 3) and (face.crop == 255).all()
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "tiny.png")
    assert read_faces(tmp_path / "tiny.png", "on") == []


def test_truncated_and_oversized_files_are_one_line_errors(tmp_path, astronaut):
    Image.fromarray(astronaut).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        read_faces(tmp_path / "cut.jpg", "auto")
    Image.new("1", (8000, 6000)).save(tmp_path / "huge.png")  # 48 Mpx, a few kB on disk
    with pytest.raises(ImageReadError, match="huge.png: 8000x6000 pixels is above the limit"):
        read_faces(tmp_path / "huge.png", "auto")


def test_a_face_cut_by_the_border_is_found_with_its_box_inside_the_photo(astronaut):
    face = astronaut[40:210, 135:305]  # the astronaut's head, 170 px
    canvas = np.full((400, 500, 3), 120, np.uint8)
    canvas[100:270, :130] = face[:, 40:]  # the left quarter of the face is beyond the photo's edge
    (f,) = detect_faces(canvas, "on")
    x0, y0, x1, y1 = f.box
    assert 0.0 <= x0 < 20 and 60 < x1 < 160 and 100 < y0 < y1 < 280  # inside the photo, at the edge it crosses
    assert f.landmarks is not None and f.crop.shape[:2] == (100, 100)


def test_the_environment_picks_the_default_detector_and_smallest_face(monkeypatch):
    seen = []

    class Spy(FixedDetector):
        name = "spy"

        def detect(self, pixels, scale=1.0):
            seen.append((self.min_face, pixels.shape))
            return []

    monkeypatch.setitem(_REGISTRY, "spy", Spy)
    monkeypatch.setenv("FACEGALLERY_DETECTOR", "spy")
    monkeypatch.setenv("FACEGALLERY_MIN_FACE", "40")
    assert detect_faces(np.zeros((300, 400, 3), np.uint8), "on") == []
    assert seen == [(40, (300, 400, 3))]
    assert detect_faces(np.zeros((300, 400, 3), np.uint8), "on", load_detector("spy", 60)) == []
    assert seen[-1][0] == 60  # a detector passed down wins over the environment
    monkeypatch.setenv("FACEGALLERY_DETECTOR", "nope")
    with pytest.raises(UserError, match="FACEGALLERY_DETECTOR: unknown face detector 'nope'"):
        detect_faces(np.zeros((300, 400, 3), np.uint8), "on")
    monkeypatch.setenv("FACEGALLERY_DETECTOR", "spy")
    monkeypatch.setenv("FACEGALLERY_MIN_FACE", "tiny")
    with pytest.raises(UserError, match="FACEGALLERY_MIN_FACE='tiny'"):
        detect_faces(np.zeros((300, 400, 3), np.uint8), "on")


def _jpeg(pixels: np.ndarray, path) -> None:
    Image.fromarray(pixels).save(path, quality=92)


def test_a_big_jpeg_is_decoded_reduced_for_scanning_and_its_faces_cut_fine_enough(astronaut, tmp_path, monkeypatch):
    """A 4000x3000 photo: scanned from a 1/2 or smaller draft decode; a large face is cut from a reduced
    decode too, a small one from full resolution; boxes and landmarks in the full photo's pixels, and
    the same faces as a full decode gives."""
    from facegallery import images
    from facegallery.alignment import DLIB_CHIP

    face = Image.fromarray(astronaut[40:210, 135:305])
    canvas = Image.new("RGB", (4000, 3000), (100, 120, 110))
    canvas.paste(face.resize((1200, 1200), Image.Resampling.BICUBIC), (300, 400))
    big = tmp_path / "big.jpg"
    _jpeg(np.asarray(canvas), big)
    reductions = []
    real = images.load_image
    monkeypatch.setattr(
        detection, "load_image", lambda *a, **k: reductions.append(a[2] if len(a) > 2 else 1) or real(*a, **k)
    )
    det = load_detector("yunet", precision="fp32")  # the decoding under test, not int8's finer jitter
    (f,) = read_faces(big, "on", DLIB_CHIP, det)
    assert reductions and min(reductions) >= 2  # never decoded whole: the face is large enough
    (g,) = detect_faces(real(big), "on", det, DLIB_CHIP)
    tolerance = 0.02 * (g.box[2] - g.box[0])
    assert np.allclose(f.box, g.box, atol=tolerance) and np.allclose(f.landmarks, g.landmarks, atol=tolerance)
    assert np.abs(f.crop.astype(int) - g.crop).mean() < 4  # the same chip, up to resampling

    canvas.paste(face.resize((150, 150), Image.Resampling.BICUBIC), (3000, 2500))  # a small face too
    _jpeg(np.asarray(canvas), big)
    reductions.clear()
    assert len(read_faces(big, "on", DLIB_CHIP, det)) == 2
    assert reductions[0] >= 2 and reductions[-1] == 1  # scanned reduced, cut at full resolution


def test_load_image_decodes_a_jpeg_reduced_on_request(tmp_path, astronaut):
    from facegallery.images import load_image, upright_size

    _jpeg(np.asarray(Image.fromarray(astronaut).resize((1600, 1200))), tmp_path / "a.jpg")
    assert load_image(tmp_path / "a.jpg", reduce=4).shape == (300, 400, 3)
    assert load_image(tmp_path / "a.jpg").shape == (1200, 1600, 3)
    assert upright_size((tmp_path / "a.jpg").read_bytes()) == (1600, 1200, True)
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", reduce=4).shape == (512, 512, 3)  # other formats decode whole


def test_a_turned_jpeg_decoded_reduced_gives_its_faces_upright(astronaut):
    """EXIF orientation 6 on a 3000x4000 stored JPEG: the reduced decode is turned upright like the full
    one, and the boxes agree."""
    import io

    from facegallery.alignment import DLIB_CHIP
    from facegallery.images import load_image

    canvas = Image.new("RGB", (4000, 3000), (100, 120, 110))
    canvas.paste(Image.fromarray(astronaut[40:210, 135:305]).resize((900, 900)), (2500, 300))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter; viewers turn it back
    buf = io.BytesIO()
    canvas.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    det = load_detector("yunet", precision="fp32")
    (f,) = read_faces(buf.getvalue(), "on", DLIB_CHIP, det)
    (g,) = detect_faces(load_image(buf.getvalue()), "on", det, DLIB_CHIP)
    assert 2500 < f.box[0] < f.box[2] < 3400 and np.allclose(f.box, g.box, atol=10)
