"""YuNet natively: decoding and NMS against brute-force references, parity with upstream's ONNX graph
under onnxruntime (test extra), the converter, and the scan passes."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegallery.detectors import load_detector
from facegallery.detectors.base import box_iou, nms
from facegallery.detectors.yunet import STRIDES, WEIGHTS, decode, flatten, load_network, priors, shared_network

UPSTREAM = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "yunet"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return pytest.importorskip("skimage.data").astronaut()


def test_priors_are_every_cell_of_every_stride_in_order():
    p = priors(64, 96)
    assert len(p) == sum((64 // s) * (96 // s) for s in STRIDES)
    assert p[0].tolist() == [0, 0, 8] and p[1].tolist() == [8, 0, 8] and p[12].tolist() == [0, 8, 8]
    assert p[(64 // 8) * (96 // 8)].tolist() == [0, 0, 16] and p[-1].tolist() == [64, 32, 32]


def test_decode_matches_a_loop_over_cells():
    rng = np.random.default_rng(0)
    prior = priors(64, 64)
    pred = rng.normal(0, 1, (len(prior), 16)).astype(np.float32)
    scores, boxes, marks = decode(pred, prior)
    for i in rng.choice(len(prior), 25, replace=False):
        x, y, s = prior[i]
        sig = [1 / (1 + math.exp(-float(v))) for v in pred[i, :2]]
        cx, cy = x + pred[i, 2] * s, y + pred[i, 3] * s
        w, h = math.exp(pred[i, 4]) * s, math.exp(pred[i, 5]) * s
        assert scores[i] == pytest.approx(math.sqrt(sig[0] * sig[1]), rel=1e-5)
        assert boxes[i] == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rel=1e-5, abs=1e-4)
        for k in range(5):
            assert marks[i, k] == pytest.approx([x + pred[i, 6 + 2 * k] * s, y + pred[i, 7 + 2 * k] * s], abs=1e-4)


def brute_nms(boxes, scores, thr):
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    keep = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_the_greedy_loop(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 80, (60, 2))], 1)
    scores = rng.uniform(0, 1, 60)
    assert nms(boxes, scores, 0.45) == brute_nms(boxes, scores, 0.45)
    assert box_iou(boxes[:3], boxes[:3]).diagonal() == pytest.approx(1.0)


def test_parity_with_upstreams_onnx_graph_on_real_photos(astronaut, lfw):
    """Our float network (folded, RGB, merged heads; scripted and frozen, and eager) against upstream's own
    graph under onnxruntime: raw outputs within 1e-4 on real photos of several sizes."""
    ort = pytest.importorskip("onnxruntime")
    graph = UPSTREAM / "yunet_n_dynamic.onnx"
    if not graph.is_file():
        pytest.skip(f"{graph} absent")
    from facegallery.images import load_image

    sess = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    photos = [astronaut, load_image(lfw / "lfw-deepfunneled" / "Al_Gore" / "Al_Gore_0001.jpg")]
    for net in (shared_network("fp32"), load_network()):  # scripted + frozen, and eager
        for pixels in photos:
            for size in ((320, 256), (640, 480)):
                px = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
                bgr = px[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)  # upstream reads BGR
                out = dict(zip(names, sess.run(None, {"input": bgr})))
                with torch.inference_mode():
                    ours = flatten(net(torch.from_numpy(px.copy()).permute(2, 0, 1)[None].float()))[0]
                ref = np.concatenate(
                    [np.concatenate([out[f"{k}_{s}"][0] for k in ("cls", "obj", "bbox", "kps")], 1) for s in STRIDES]
                )
                sig = 1 / (1 + np.exp(-ours[:, :2]))
                assert np.abs(sig - ref[:, :2]).max() <= 1e-4  # upstream's graph ends in sigmoids
                assert np.abs(ours[:, 2:] - ref[:, 2:]).max() <= 1e-4
                assert ref[:, 0].max() > 0.5  # there is a face in it


def test_the_converter_rebuilds_the_shipped_weights(tmp_path):
    checkpoint = UPSTREAM / "yunet_n.pth"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} absent")
    from safetensors.torch import load_file

    from facegallery.convert_yunet import main

    main([str(checkpoint), str(tmp_path)])
    ours, shipped = load_file(str(tmp_path / "detector.safetensors")), load_file(str(WEIGHTS))
    assert ours.keys() == shipped.keys() and all(torch.equal(ours[k], shipped[k]) for k in ours)


def test_small_and_very_large_faces_are_both_found(astronaut):
    """A 30 px face at the default min_face, and a face larger than the network saw in training (the
    half-scale pass)."""
    det = load_detector("yunet")
    face = Image.fromarray(astronaut[40:210, 135:305])
    canvas = Image.new("RGB", (1024, 768), (120, 120, 120))
    canvas.paste(face.resize((40, 40), Image.Resampling.BICUBIC), (100, 100))
    canvas.paste(face.resize((700, 700), Image.Resampling.BICUBIC), (300, 40))
    found = det.detect(np.asarray(canvas))
    sides = sorted(d.box[2] - d.box[0] for d in found)
    assert len(found) == 2 and sides[0] < 40 and sides[1] > 350


def test_the_dlib_box_fit_frames_faces_as_dlibs_detector_does_on_the_photos_it_was_fitted_on():
    """DLIB_BOX_FIT (measured on CelebA training photos) brings YuNet's boxes closer to the MMOD port's
    on such photos: the mapping's signs and units are right."""
    celeba = UPSTREAM.parent.parent / "data" / "celeba10k"
    if not celeba.is_dir():
        pytest.skip(f"{celeba} absent")
    from facegallery.images import load_image

    yunet, mmod = load_detector("yunet"), load_detector("mmod")
    before, after = [], []
    for path in sorted(celeba.glob("*/*.jpg"))[:40]:
        px = load_image(path)
        px = np.asarray(Image.fromarray(px).resize((px.shape[1] * 3, px.shape[0] * 3), Image.Resampling.BICUBIC))
        y, m = yunet.detect(px), mmod.detect(px)
        if len(y) == 1 and len(m) == 1:
            before.append(box_iou(np.array([y[0].box]), np.array([m[0].box]))[0, 0])
            after.append(box_iou(np.array([yunet.dlib_box(y[0].box)]), np.array([m[0].box]))[0, 0])
    assert len(after) >= 30 and np.mean(after) > np.mean(before) + 0.05


def test_the_int8_network_finds_what_the_float_one_finds(astronaut):
    """The shipped int8 calibration (where this PyTorch runs int8): the same faces, box edges within 15% of
    their side (int8 moves them by up to ~11% on small faces), scores within 0.05."""
    from facegallery import quantization

    if not quantization.available():
        pytest.skip("no x86 int8 kernels in this PyTorch")
    face = Image.fromarray(astronaut[40:210, 135:305])
    canvas = Image.new("RGB", (800, 600), (120, 110, 100))
    for x, y, s in [(40, 60, 220), (400, 300, 130), (650, 40, 90)]:
        canvas.paste(face.resize((s, s)), (x, y))
    px = np.asarray(canvas)
    f32, i8 = load_detector("yunet", precision="fp32").detect(px), load_detector("yunet", precision="int8").detect(px)
    assert len(f32) == len(i8) == 3
    for a, b in zip(sorted(f32, key=lambda d: d.box[0]), sorted(i8, key=lambda d: d.box[0])):
        assert np.allclose(a.box, b.box, atol=0.15 * (a.box[2] - a.box[0])) and abs(a.score - b.score) < 0.05
    assert load_detector("yunet").precision == "int8"  # the default where it can run
