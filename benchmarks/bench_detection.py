"""Alignment, the PubFig83 protocol per detection mode, and the dlib backend, measured. Prints figures;
writes nothing but its cache. (Detectors themselves are measured by ``bench_detectors.py``: composites,
LFW faces found, speed, memory.)

    python benchmarks/bench_detection.py canonical              # re-measure alignment.CANONICAL_LANDMARKS
    python benchmarks/bench_detection.py protocol --model M [--detect off auto]
    python benchmarks/bench_detection.py int8 [--photos 10]
    python benchmarks/bench_detection.py dlib-chip
    python benchmarks/bench_detection.py calibrate --model M

``protocol``: closed-set top-1 of the 1260 known test photos against train centroids, per detection mode.
``int8``: the MMOD network as int8 against float on composites (``bench_detectors.make_composites``).
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

import numpy as np
import torch
from bench_detectors import DATA, known_test, make_composites
from PIL import Image

from facegallery.datasets import discover
from facegallery.detection import faces_in
from facegallery.embedder import load_model
from facegallery.images import load_image, resize
from facegallery.landmarks import shipped
from facegallery.recognition import Centroids, centroids, squared_distances


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
        marks = shipped().predict(a, (r.left(), r.top(), r.right() + 1, r.bottom() + 1)) / up
        pts.append(marks / [w, h])
        boxes.append(np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1]) / up / [w, h, w, h])
    pts = np.stack(pts)
    med = np.median(pts, 0)
    mad = np.median(np.abs(pts - med), 0)
    ok = (np.abs(pts - med) <= 3 * 1.4826 * mad + 1e-9).all(axis=(1, 2))
    print(f"{len(pts)} of {args.n} crops with a face; {ok.sum()} within 3 robust SDs")
    print("median landmarks\n", np.round(med, 4), "\ntrimmed mean\n", np.round(pts[ok].mean(0), 4))
    print("median box (4x scan)", np.round(np.median(np.stack(boxes), 0), 4))


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


YAW = 0.15, (75.0, 75.0, 175.0, 175.0), 0.25


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
    c = sub.add_parser("protocol")
    c.add_argument("--model", required=True)
    c.add_argument("--detect", nargs="+", default=["off", "auto"])
    c.add_argument("--train-per-id", type=int)
    c.add_argument("--test-per-id", type=int)
    c.add_argument("--cache", type=Path, default=Path("/tmp/facegallery-bench"))
    c = sub.add_parser("int8")
    c.add_argument("--photos", type=int, default=10)
    c.add_argument("--seed", type=int, default=3)
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
        "protocol": cmd_protocol,
        "dlib-chip": cmd_dlib_chip,
        "int8": cmd_int8,
        "calibrate": cmd_calibrate,
    }[args.cmd](args)


if __name__ == "__main__":
    main()
