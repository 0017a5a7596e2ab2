"""Detection, alignment and the dlib backend, measured. Prints figures; writes nothing but its cache.

    python benchmarks/bench_detection.py canonical              # re-measure detection.CANONICAL_LANDMARKS
    python benchmarks/bench_detection.py composite [--photos 200] [--detector dlib-hog] [--model M]
    python benchmarks/bench_detection.py protocol --model M [--detect off auto]
    python benchmarks/bench_detection.py lfw [--detectors mmod dlib-hog] [--limit N]
    python benchmarks/bench_detection.py speed [--photos 30] [--detectors mmod dlib-hog]
    python benchmarks/bench_detection.py rss [--megapixels 24]
    python benchmarks/bench_detection.py int8 [--photos 10]

``composite``: photos of 1024x768 built from PubFig83 test crops (known identities) pasted at random
positions and sizes (40-300 px, 1-4 per photo, never overlapping) onto backgrounds of blurred patches
of scikit-image's sample pictures (no people among them), noise, gradients or plain colours, seeded.
The ground-truth face box of a pasted crop is a fixed fraction of it, :data:`GT_FACE_BOX`: the median
box dlib's HOG detector finds on PubFig83 train crops. A per-crop detection cannot be the truth (the
detector misses ~2% of crops, which would hide exactly the hard faces), and PubFig83 crops frame faces
consistently (landmark spread under 0.02 of the crop). A detection matches a face at IoU >= 0.4,
greedily by score; faces and detections under the size of interest are left out of both counts.
Identification: nearest centroid of the 63 known identities' train photos (embedded with the same
detection mode as the queries), top-1 over the pasted faces (a missed face counts as wrong), against
the same faces embedded as plain crops with centroids of plain train crops.

``lfw``: every LFW photo (deep-funneled, 250x250, the face centred) scanned as the pipeline scans it; a
photo counts as found when a box's centre lies within :data:`LFW_CENTRE` of the photo's side from its
centre. The turned subset: photos whose landmarks, placed in the fixed central box :data:`LFW_BOX` (no
detector involved), put the nose off the eyes' midpoint by >= :data:`YAW` of the distance between the
eyes (a yaw of roughly 25 degrees or more).

``speed``: one thread; detection alone (scan + boxes) per detector on the same 1024x768 composites, then
the whole identify path on them with the default detector and model (detect, landmarks, chips, embed,
nearest of 1,000 centroids).

``rss``: peak resident memory of reading and detecting one photo of that many megapixels (a subprocess).

``protocol``: closed-set top-1 of the 1260 known test photos against train centroids, per detection mode.
"""

from __future__ import annotations

import argparse
import glob
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from facegallery import detection
from facegallery.datasets import discover
from facegallery.detection import faces_in
from facegallery.embedder import load_model
from facegallery.images import load_image, resize
from facegallery.recognition import Centroids, centroids, squared_distances

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pubfig83"
#: Face box in a PubFig83 crop, fractions [x0, y0, x1, y1]: the median dlib HOG box on 600 train crops
#: (seed 0) scanned as the pipeline scans a 100 px crop (2x). IoU with the CNN's median box: 0.76.
GT_FACE_BOX = (0.17, 0.25, 0.81, 0.88)
PHOTO_SIZE = (1024, 768)
BACKGROUNDS = (
    "coffee",
    "chelsea",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "hubble_deep_field",
    "retina",
    "colorwheel",
    "immunohistochemistry",
    "logo",
    "moon",
    "coins",
    "clock",
    "text",
    "page",
)


class HaarDetector:
    """OpenCV's frontal Haar cascade (measured here only: opencv-python-headless is no dependency)."""

    name = "opencv-haar"
    window = 24

    def __init__(self, threshold: float = 0.0):
        import cv2

        self._cv2 = cv2
        self._det = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        self.threshold = threshold

    def detect(self, pixels: np.ndarray) -> list[detection.Detection]:
        gray = self._cv2.cvtColor(pixels, self._cv2.COLOR_RGB2GRAY)
        rects, _, weights = self._det.detectMultiScale3(gray, 1.1, 3, outputRejectLevels=True)
        return [
            detection.Detection((float(x), float(y), float(x + w), float(y + h)), float(s))
            for (x, y, w, h), s in zip(rects, np.ravel(weights))
            if s >= self.threshold
        ]


detection.DETECTORS.setdefault(HaarDetector.name, HaarDetector)  # the registry takes plug-ins


def known_test(per_id: int | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Test photos of the 63 identities that are also in train, labelled by the train name list."""
    train = discover(DATA / "train")
    test = discover(DATA / "test").only(train.names)
    idx = (
        np.arange(len(test))
        if per_id is None
        else np.concatenate([np.flatnonzero(test.labels == lab)[:per_id] for lab in range(len(train.names))])
    )
    return [test.paths[i] for i in idx], test.labels[idx], train.names


def train_centroids(embedder, mode: str, per_id: int | None, cache: Path) -> np.ndarray:
    """Centroids of the known identities' train photos embedded under ``mode`` (cached per model)."""
    f = cache / f"centroids-{embedder.fingerprint.replace(':', '_')}-{mode}-{per_id}.npy"
    if f.exists():
        return np.load(f)
    train = discover(DATA / "train")
    idx = (
        np.arange(len(train))
        if per_id is None
        else np.concatenate([np.flatnonzero(train.labels == lab)[:per_id] for lab in range(len(train.names))])
    )
    emb = embed_files(embedder, [train.paths[i] for i in idx], mode)
    cents = centroids(emb, train.labels[idx], len(train.names))
    cache.mkdir(parents=True, exist_ok=True)
    np.save(f, cents)
    return cents


def main_face(pixels: np.ndarray, mode: str) -> np.ndarray:
    """The crop of a photo's largest face (auto mode takes small images whole when none is found)."""
    faces = faces_in(pixels, mode)
    return faces[0].crop if faces else pixels


def embed_files(embedder, paths: list[Path], mode: str, batch: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(paths), batch):
        out.append(embedder.embed([main_face(load_image(p), mode) for p in paths[i : i + batch]]))
    return np.concatenate(out)


# ----- canonical landmarks ---------------------------------------------------------------------


def cmd_canonical(args) -> None:
    import dlib

    paths = sorted(glob.glob(str(DATA / "train" / "*" / "*.jpg")))
    np.random.default_rng(0).shuffle(paths)
    up, pts, boxes = 4, [], []
    hog = dlib.get_frontal_face_detector()
    for p in paths[: args.n]:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        a = np.asarray(im.resize((w * up, h * up), Image.Resampling.BILINEAR))
        rects = hog(a, 0)
        if not rects:
            continue
        r = max(rects, key=lambda r: r.area())
        marks = detection.landmarks_in(a, (r.left(), r.top(), r.right() + 1, r.bottom() + 1)) / up
        pts.append(marks / [w, h])
        boxes.append(np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1]) / up / [w, h, w, h])
    pts = np.stack(pts)
    med = np.median(pts, 0)
    mad = np.median(np.abs(pts - med), 0)
    ok = (np.abs(pts - med) <= 3 * 1.4826 * mad + 1e-9).all(axis=(1, 2))
    print(f"{len(pts)} of {args.n} crops with a face; {ok.sum()} within 3 robust SDs")
    print("median landmarks\n", np.round(med, 4), "\ntrimmed mean\n", np.round(pts[ok].mean(0), 4))
    print("median box (4x scan)", np.round(np.median(np.stack(boxes), 0), 4))


# ----- composites ------------------------------------------------------------------------------


def background(rng: np.random.Generator, samples: list[np.ndarray]) -> np.ndarray:
    w, h = PHOTO_SIZE
    kind = rng.choice(["patches", "noise", "gradient", "plain"], p=[0.55, 0.15, 0.15, 0.15])
    if kind == "plain":
        return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (h, w, 3)).copy()
    if kind == "gradient":
        t = np.linspace(0, 1, w)[None, :, None] * 0.6 + np.linspace(0, 1, h)[:, None, None] * 0.4
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        return (a + (b - a) * t).astype(np.uint8)
    if kind == "noise":
        small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
    canvas = Image.new("RGB", (w, h))
    for _ in range(6):
        src = Image.fromarray(samples[rng.integers(len(samples))])
        pw, ph = int(rng.integers(200, 600)), int(rng.integers(200, 500))
        patch = src.resize((pw, ph), Image.Resampling.BILINEAR).filter(
            ImageFilter.GaussianBlur(float(rng.uniform(0, 4)))
        )
        canvas.paste(patch, (int(rng.integers(-100, w - 100)), int(rng.integers(-100, h - 100))))
    return np.asarray(canvas)


def make_composites(n: int, seed: int, faces: list[Path]) -> list[dict]:
    """``n`` photos: {'pixels', 'faces': [{'crop' index, 'box' (truth), 'size'}]}."""
    from skimage import data as skdata

    samples = []
    for name in BACKGROUNDS:
        a = getattr(skdata, name)()
        samples.append(np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3])
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        canvas = Image.fromarray(np.ascontiguousarray(background(rng, samples)))
        placed: list[tuple[int, int, int]] = []
        for _ in range(int(rng.integers(1, 5))):
            for _ in range(50):
                s = int(round(math.exp(rng.uniform(math.log(40), math.log(300)))))
                x, y = int(rng.integers(0, PHOTO_SIZE[0] - s)), int(rng.integers(0, PHOTO_SIZE[1] - s))
                if all(x + s <= px or px + ps <= x or y + s <= py or py + ps <= y for px, py, ps in placed):
                    placed.append((x, y, s))
                    break
        items = []
        for x, y, s in placed:
            k = int(rng.integers(len(faces)))
            crop = Image.open(faces[k]).convert("RGB").resize((s, s), Image.Resampling.BICUBIC)
            canvas.paste(crop, (x, y))
            f = GT_FACE_BOX
            items.append({"face": k, "size": s, "box": (x + f[0] * s, y + f[1] * s, x + f[2] * s, y + f[3] * s)})
        out.append({"pixels": np.asarray(canvas), "faces": items})
    return out


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match(truth: list[dict], found: list, min_iou: float = 0.4) -> list[int | None]:
    """Greedy by detector score: for each detection the index of its ground-truth face, or None."""
    order = sorted(range(len(found)), key=lambda i: -found[i].detection_score)
    taken: set[int] = set()
    out: list[int | None] = [None] * len(found)
    for i in order:
        best, best_iou = None, min_iou
        for j, t in enumerate(truth):
            v = iou(found[i].box, t["box"])
            if j not in taken and v >= best_iou:
                best, best_iou = j, v
        if best is not None:
            taken.add(best)
            out[i] = best
    return out


def pr_at(photos: list[dict], results: list[list], threshold: float, min_size: int) -> tuple[float, float, int]:
    """Recall, precision and number of faces >= ``min_size`` at a detection-score threshold."""
    tp = fp = n = 0
    for ph, found in zip(photos, results):
        kept = [f for f in found if f.detection_score >= threshold]
        m = match(ph["faces"], kept)
        n += sum(t["size"] >= min_size for t in ph["faces"])
        for f, j in zip(kept, m):
            if j is not None:
                tp += ph["faces"][j]["size"] >= min_size
            elif (
                math.sqrt((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])) / (GT_FACE_BOX[2] - GT_FACE_BOX[0]) >= min_size
            ):  # an unmatched box the size of a face we count
                fp += 1
    return tp / max(n, 1), tp / max(tp + fp, 1), n


def cmd_composite(args) -> None:
    torch.set_num_threads(1)
    paths, labels, names = known_test()
    photos = make_composites(args.photos, args.seed, paths)
    det = detection.DETECTORS[args.detector](threshold=args.low_threshold)
    n_faces = sum(len(p["faces"]) for p in photos)
    print(
        f"{len(photos)} composites of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, {n_faces} faces, seed {args.seed}; "
        f"detector {args.detector}, min_face {args.min_face}"
    )
    t0 = time.perf_counter()
    results = [detection.detect_faces(p["pixels"], "on", det, min_face=args.min_face) for p in photos]
    dt = (time.perf_counter() - t0) / len(photos)
    print(f"detection + landmarks + alignment: {dt:.3f} s/photo = {1 / dt:.2f} photos/s")
    for min_size in (40, 60, 80):
        for thr in args.thresholds:
            r, p, n = pr_at(photos, results, thr, min_size)
            print(f"  faces >= {min_size:3d} px (n={n:4d})  score >= {thr:+.2f}: recall {r:.3f} precision {p:.3f}")
    if not args.model:
        return
    emb = load_model(args.model)
    t0 = time.perf_counter()
    kept = [[f for f in found if f.detection_score >= args.threshold] for found in results]
    queries, truth, hit = [], [], []
    for ph, found in zip(photos, kept):
        m = match(ph["faces"], found)
        by_truth = {j: f for f, j in zip(found, m) if j is not None}
        for j, t in enumerate(ph["faces"]):
            if t["size"] >= 60:
                truth.append(labels[t["face"]])
                hit.append(j in by_truth)
                queries.append(by_truth[j].crop if j in by_truth else np.zeros((100, 100, 3), np.uint8))
    q = emb.embed(queries)
    embed_s = (time.perf_counter() - t0) / len(photos)
    auto_cents = train_centroids(emb, "auto", args.train_per_id, args.cache)
    off_cents = train_centroids(emb, "off", args.train_per_id, args.cache)
    truth, hit = np.array(truth), np.array(hit)
    pred = squared_distances(q, auto_cents).argmin(1)
    acc_comp = float(((pred == truth) & hit).mean())
    acc_found = float((pred[hit] == truth[hit]).mean())
    idx = []
    for ph in photos:
        idx += [t["face"] for t in ph["faces"] if t["size"] >= 60]
    plain = embed_files(emb, [paths[i] for i in idx], "off")
    acc_plain = float((squared_distances(plain, off_cents).argmin(1) == truth).mean())
    print(f"identification, {emb.name}, {len(truth)} pasted faces >= 60 px, score >= {args.threshold:+.2f}:")
    print(f"  as plain crops (detect off): {acc_plain:.3f}")
    print(f"  found in composites: {acc_comp:.3f} (misses count as wrong; {acc_found:.3f} of the {hit.sum()} found)")
    pred_off = squared_distances(q, off_cents).argmin(1)
    print(f"  found in composites, centroids of plain train crops: {float(((pred_off == truth) & hit).mean()):.3f}")
    print(f"  embedding cost on top of detection: {embed_s:.3f} s/photo")


def cmd_protocol(args) -> None:
    torch.set_num_threads(1)
    emb = load_model(args.model)
    paths, labels, _ = known_test(args.test_per_id)
    for mode in args.detect:
        t0 = time.perf_counter()
        cents = train_centroids(emb, mode, args.train_per_id, args.cache)
        t1 = time.perf_counter()
        q = embed_files(emb, paths, mode)
        t2 = time.perf_counter()
        top1 = float((squared_distances(q, cents).argmin(1) == labels).mean())
        print(
            f"{emb.name} detect={mode}: closed-set top-1 {top1:.4f} on {len(paths)} test photos "
            f"(train photos per identity: {args.train_per_id or 'all'}; test {(t2 - t1) / len(paths) * 1000:.1f} "
            f"ms/photo; centroids {t1 - t0:.0f} s)"
        )


LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "lfw-deepfunneled"
LFW_CENTRE, LFW_BOX, YAW = 0.15, (75.0, 75.0, 175.0, 175.0), 0.25


def cmd_lfw(args) -> None:
    from facegallery.landmarks import shipped

    torch.set_num_threads(1)
    paths = sorted(Path(args.lfw).glob("*/*.jpg"))[: args.limit]
    dets = {name: detection.get_detector(name) for name in args.detectors}
    found = {name: np.zeros(len(paths), bool) for name in dets}
    spent = dict.fromkeys(dets, 0.0)
    yaw = np.zeros(len(paths))
    for i, path in enumerate(paths):
        px = load_image(path)
        m = shipped().predict(px, LFW_BOX)
        eyes = (m[0:2].mean(0) + m[2:4].mean(0)) / 2
        yaw[i] = (m[4, 0] - eyes[0]) / max(np.linalg.norm(m[0:2].mean(0) - m[2:4].mean(0)), 1e-6)
        h, w = px.shape[:2]
        for name, det in dets.items():
            t0 = time.perf_counter()
            boxes = detection.scan(px, det, args.min_face)
            spent[name] += time.perf_counter() - t0
            found[name][i] = any(
                math.hypot((b.box[0] + b.box[2]) / 2 - w / 2, (b.box[1] + b.box[3]) / 2 - h / 2)
                <= LFW_CENTRE * max(h, w)
                for b in boxes
            )
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} photos: " + ", ".join(f"{n} {found[n][: i + 1].mean():.4f}" for n in dets), flush=True)
    turned = np.abs(yaw) >= YAW
    print(
        f"{len(paths)} LFW photos ({turned.sum()} turned, |yaw proxy| >= {YAW}); min_face {args.min_face}, one thread"
    )
    for name in dets:
        f = found[name]
        print(
            f"  {name}: face near the centre in {f.mean():.4f} ({(~f).sum()} missed); turned {f[turned].mean():.4f} "
            f"({(~f[turned]).sum()} missed); {spent[name] / len(paths) * 1000:.1f} ms/photo"
        )
    both = [n for n in dets]
    if len(both) == 2:
        a, b = both
        print(f"  found by {a} only: {(found[a] & ~found[b]).sum()}, by {b} only: {(found[b] & ~found[a]).sum()}")


def cmd_speed(args) -> None:
    from facegallery.embedder import embed_faces

    torch.set_num_threads(1)
    paths, _, _ = known_test()
    photos = [p["pixels"] for p in make_composites(args.photos, args.seed, paths)]
    n_faces = 0
    rates = {}
    for name in args.detectors:
        det = detection.get_detector(name)
        detection.scan(photos[0], det, args.min_face)  # warm-up
        t0 = time.perf_counter()
        for px in photos:
            n_faces += len(detection.scan(px, det, args.min_face))
        rates[name] = len(photos) / (time.perf_counter() - t0)
        print(f"{name}: detection {rates[name]:.2f} photos/s (1024x768, min_face {args.min_face}, one thread)")
    if len(rates) >= 2:
        first, *rest = args.detectors
        print("  ratio " + ", ".join(f"{first}/{r} {rates[first] / rates[r]:.2f}" for r in rest))
    emb = load_model(args.model)
    cents = np.random.default_rng(0).normal(size=(1000, 128)).astype(np.float32)
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    t0, faces_seen = time.perf_counter(), 0
    for px in photos:
        faces = detection.detect_faces(px, "on", min_face=args.min_face, template=emb.template)
        if faces:
            squared_distances(embed_faces(emb, faces), cents).argmin(1)
        faces_seen += len(faces)
    dt = time.perf_counter() - t0
    print(
        f"identify end to end ({emb.name}, {detection.DEFAULT_DETECTOR}): {len(photos) / dt:.2f} photos/s, "
        f"{faces_seen / dt:.1f} faces/s ({faces_seen} faces in {len(photos)} photos)"
    )


def cmd_int8(args) -> None:
    """The MMOD network as int8 (FX static quantisation, calibrated on PubFig83 train photos) against
    float on the same composites' tiled pyramids: speed and how far the scores move."""
    from facegallery import mmod, quantization

    torch.set_num_threads(1)
    det = mmod.shipped()
    train = sorted((DATA / "train").glob("*/*.jpg"))[:: max(1, len(list((DATA / "train").glob("*/*.jpg"))) // 40)][:40]
    calib = [det.tiled(np.asarray(Image.open(p).convert("RGB").resize((300, 300))))[0].contiguous() for p in train]
    q = quantization.build(det.model, quantization.calibrate(det.model, calib), 64)
    paths, _, _ = known_test()
    tiles = [det.tiled(p["pixels"])[0] for p in make_composites(args.photos, args.seed, paths)]
    times = {"fp32": 0.0, "int8": 0.0}
    worst, flips, positives = 0.0, 0, 0
    with torch.inference_mode():
        for x in tiles:
            t0 = time.perf_counter()
            a = det.model(x)
            times["fp32"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            b = q(x)
            times["int8"] += time.perf_counter() - t0
            worst = max(worst, float((a - b).abs().max()))
            flips += int(((a > 0) != (b > 0)).sum())
            positives += int((a > 0).sum())
    print(
        f"MMOD network on {len(tiles)} tiled pyramids of 1024x768 composites, one thread: fp32 "
        f"{times['fp32'] / len(tiles):.3f} s, int8 {times['int8'] / len(tiles):.3f} s "
        f"({times['fp32'] / times['int8']:.2f}x); max |score change| {worst:.3f}; "
        f"{flips} window decisions flipped of {positives} positive windows"
    )


def cmd_rss(args) -> None:
    import subprocess
    import sys
    import tempfile

    side = math.sqrt(args.megapixels * 1e6 / 6)
    w, h = int(3 * side), int(2 * side)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jpg"
        paths, _, _ = known_test()
        small = make_composites(1, args.seed, paths)[0]["pixels"]
        Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).save(path, quality=90)
        code = (
            "import resource, sys, time\nfrom facegallery.detection import read_faces\n"
            f"t = time.perf_counter(); faces = read_faces({str(path)!r}, 'on')\n"
            "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
            "print(len(faces), round(time.perf_counter() - t, 1), peak)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    print(f"a {w}x{h} photo ({w * h / 1e6:.1f} MP): {out[0]} faces in {out[1]} s, peak RSS {out[2]} MB")


def cmd_dlib_chip(args) -> None:
    """How DlibEmbedder should cut its chip from a crop that comes without landmarks."""
    import dlib

    from facegallery.models import dlib_backend

    emb = load_model("dlib")
    train = discover(DATA / "train")
    tidx = np.concatenate([np.flatnonzero(train.labels == lab)[: args.train_per_id] for lab in range(len(train.names))])
    paths, labels, _ = known_test(args.test_per_id)
    gal = [load_image(train.paths[i]) for i in tidx]
    probes = [load_image(p) for p in paths]
    hog = dlib.get_frontal_face_detector()

    def native(img: np.ndarray) -> np.ndarray:  # dlib's own pipeline on the photo: HOG (2x), landmarks, chip
        rects = hog(img, 1)
        if not rects:
            return emb.chip(img)
        shape = emb._shape(img, max(rects, key=lambda r: r.area()))
        return np.asarray(dlib.get_face_chip(img, shape, dlib_backend.CHIP_SIZE, dlib_backend.CHIP_PADDING))

    variants = {f"box {b}": b for b in [dlib_backend.CROP_FACE_BOX, (0, 0, 1, 1)]}
    for name in list(variants) + ["resize", "native"]:
        t0 = time.perf_counter()
        if name in variants:
            dlib_backend.CROP_FACE_BOX = variants[name]
            cut = emb.chip
        else:
            cut = native if name == "native" else (lambda im: resize(im, dlib_backend.CHIP_SIZE))
        vec = []
        for group in (gal, probes):
            d = np.asarray(emb._net.compute_face_descriptor([np.ascontiguousarray(cut(im)) for im in group]))
            vec.append(d / np.linalg.norm(d, axis=1, keepdims=True))
        cents = centroids(vec[0], train.labels[tidx], len(train.names))
        top1 = float((squared_distances(vec[1], cents).argmin(1) == labels).mean())
        print(
            f"chip from {name}: top-1 {top1:.4f} ({len(probes)} probes, {args.train_per_id} train photos per "
            f"identity; {time.perf_counter() - t0:.0f} s)"
        )


def cmd_calibrate(args) -> None:
    """An unknown threshold for a model from PubFig83 train alone (as training calibrates its own):
    ``--impostors`` identities held out as strangers, the rest split into gallery and genuine probes."""
    from facegallery.calibration import calibrate
    from facegallery.recognition import accuracy_at

    torch.set_num_threads(1)
    emb = load_model(args.model)
    train = discover(DATA / "train")
    rng = np.random.default_rng(args.seed)
    strangers = set(rng.permutation(len(train.names))[: args.impostors].tolist())
    known = [lab for lab in range(len(train.names)) if lab not in strangers]
    gal, gen, imp = [], [], []
    for lab in range(len(train.names)):
        idx = rng.permutation(np.flatnonzero(train.labels == lab))
        if lab in strangers:
            imp += idx[: args.per_impostor].tolist()
        else:
            gal += idx[: args.gallery_per_id].tolist()
            gen += idx[args.gallery_per_id : args.gallery_per_id + args.genuine_per_id].tolist()
    remap = {lab: i for i, lab in enumerate(known)}
    vec = [embed_files(emb, [train.paths[i] for i in part], args.detect) for part in (gal, gen, imp)]
    lab = [np.array([remap[train.labels[i]] for i in part]) for part in (gal, gen)]
    cal = calibrate(vec[0], lab[0], len(known), vec[1], lab[1], vec[2])
    print(
        f"{emb.name} (detect {args.detect}): threshold {cal.threshold:.4f}, balanced open-set accuracy "
        f"{cal.accuracy:.4f}, closed top-1 {cal.closed_top1:.4f} ({cal.genuine} genuine, {cal.impostors} "
        f"impostor photos; {len(known)} known, {len(strangers)} stranger identities; seed {args.seed})"
    )
    d = Centroids.of(vec[0], lab[0], len(known)).distances(np.concatenate(vec[1:]))  # what thresholds apply to
    truth = np.concatenate([lab[1], np.full(len(vec[2]), -1)])
    w = np.concatenate([np.full(len(vec[1]), 0.5 / len(vec[1])), np.full(len(vec[2]), 0.5 / len(vec[2]))])
    for t in args.also:
        print(f"  at threshold {t}: balanced open-set accuracy {accuracy_at(d.argmin(1), d.min(1), truth, t, w):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("canonical")
    c.add_argument("--n", type=int, default=2000)
    c = sub.add_parser("composite")
    c.add_argument("--photos", type=int, default=200)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--detector", default=detection.DEFAULT_DETECTOR, choices=list(detection.DETECTORS))
    c.add_argument("--min-face", type=int, default=detection.MIN_FACE)
    c.add_argument("--low-threshold", type=float, default=-0.5, help="Detector threshold (scores kept above).")
    c.add_argument("--thresholds", type=float, nargs="+", default=[-0.3, 0.0, 0.3])
    c.add_argument("--threshold", type=float, default=0.0, help="Score threshold for identification.")
    c.add_argument("--model", help="Also measure identification with this model.")
    c.add_argument("--train-per-id", type=int)
    c.add_argument("--cache", type=Path, default=Path("/tmp/facegallery-bench"))
    c = sub.add_parser("protocol")
    c.add_argument("--model", required=True)
    c.add_argument("--detect", nargs="+", default=["off", "auto"])
    c.add_argument("--train-per-id", type=int)
    c.add_argument("--test-per-id", type=int)
    c.add_argument("--cache", type=Path, default=Path("/tmp/facegallery-bench"))
    c = sub.add_parser("lfw")
    c.add_argument("--lfw", type=Path, default=LFW)
    c.add_argument("--detectors", nargs="+", default=["mmod", "dlib-hog"])
    c.add_argument("--min-face", type=int, default=detection.MIN_FACE)
    c.add_argument("--limit", type=int)
    c = sub.add_parser("speed")
    c.add_argument("--photos", type=int, default=30)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--detectors", nargs="+", default=["mmod", "dlib-hog"])
    c.add_argument("--min-face", type=int, default=detection.MIN_FACE)
    c.add_argument("--model", default=None)
    c = sub.add_parser("int8")
    c.add_argument("--photos", type=int, default=10)
    c.add_argument("--seed", type=int, default=3)
    c = sub.add_parser("rss")
    c.add_argument("--megapixels", type=float, default=24)
    c.add_argument("--seed", type=int, default=2)
    c = sub.add_parser("dlib-chip")
    c.add_argument("--train-per-id", type=int, default=10)
    c.add_argument("--test-per-id", type=int, default=5)
    c = sub.add_parser("calibrate")
    c.add_argument("--model", required=True)
    c.add_argument("--detect", default="off")
    c.add_argument("--impostors", type=int, default=13)
    c.add_argument("--gallery-per-id", type=int, default=10)
    c.add_argument("--genuine-per-id", type=int, default=6)
    c.add_argument("--per-impostor", type=int, default=25)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--also", type=float, nargs="*", default=[0.36], help="Also report accuracy at these.")
    args = ap.parse_args()
    {
        "canonical": cmd_canonical,
        "composite": cmd_composite,
        "protocol": cmd_protocol,
        "dlib-chip": cmd_dlib_chip,
        "lfw": cmd_lfw,
        "speed": cmd_speed,
        "rss": cmd_rss,
        "int8": cmd_int8,
        "calibrate": cmd_calibrate,
    }[args.cmd](args)


if __name__ == "__main__":
    main()
