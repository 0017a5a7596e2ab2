"""dlib's face ResNet as ``dlib-resnet29-v1``: speed side by side with dlib-bin, and LFW per variant.

    .venv/bin/python benchmarks/bench_pretrained.py speed [--batch 64 --rounds 5]
    .venv/bin/python benchmarks/bench_pretrained.py lfw [--lfw ../shared/data/lfw --pairs view2]

``speed``: images/s on ONE thread, on the same real 150x150 chips, round-robin over the variants so
that a machine that slows down slows every variant alike: dlib-bin's ``compute_face_descriptor``, the
PyTorch port as plain NCHW float (nothing folded), as the embedder runs it (affine folded into the convs,
channels-last), and int8, each without and with flip averaging (two passes a face); each figure also
as a ratio to dlib-bin and as a fraction of the core's float peak (given with ``--peak-gflops``, else
estimated as 32 flop/cycle x the clock lscpu reports: two 8-wide FMA units, AVX2).

``lfw``: faces found and aligned ONCE by the project's pipeline (as ``evaluate --protocol lfw`` does),
then every variant embeds the same chips: float, float + flip, int8, int8 + flip, and the float network
on dlib's own ``get_face_chip`` of the same landmarks (our aligner vs dlib's, as an embedding distance).
dlib-bin's own descriptors of dlib's chips are compared on ``--parity`` photos (max abs difference of
the raw 128-D vectors, and the same decisions at dlib's 0.6).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from facegallery.embedder import embed_faces, load_model, to_tensor
from facegallery.lfw import load_protocol, photo_faces, score
from facegallery.pipeline import Finder

MODEL = "dlib-resnet29-v1"
GMAC = 0.271  # multiply-adds per 150x150 chip (the network's convolutions and fc)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = re.search(r"Model name:\s*(.+)", out).group(1).strip()
        flags = re.search(r"Flags:\s*(.+)", out).group(1).split()
        isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
        mhz = re.search(r"CPU max MHz:\s*([\d.]+)", out) or re.search(r"BogoMIPS:\s*([\d.]+)", out)
        return f"{name} ({', '.join(isa)}; {mhz.group(0) if mhz else 'clock unknown'})"
    except (OSError, AttributeError):
        return platform.processor() or "unknown CPU"


def clock_ghz() -> float | None:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"CPU max MHz:\s*([\d.]+)", out) or re.search(r"CPU MHz:\s*([\d.]+)", out)
        if m:
            return float(m.group(1)) / 1000
        m = re.search(r"BogoMIPS:\s*([\d.]+)", out)  # twice the clock on x86
        return float(m.group(1)) / 2000 if m else None
    except OSError:
        return None


def real_chips(n: int, lfw: Path) -> np.ndarray:
    """``n`` 150x150 chips of LFW photos, aligned by the project's pipeline."""
    protocol = load_protocol(lfw, "devtest")
    step = max(1, len(protocol.photos) // n)
    finder = Finder.of(load_model(MODEL), "on", cache=False)
    faces, _ = photo_faces(protocol.images, protocol.photos[::step][:n], finder, progress=False)
    return np.stack([f.crop for f in faces])


def cmd_speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    chips = real_chips(args.batch, args.lfw)
    x = to_tensor(chips)
    fp32, int8, fp32_flip, int8_flip = (load_model(f"{MODEL}@{p}") for p in ("fp32", "int8", "fp32", "int8"))
    fp32.flip, int8.flip, fp32_flip.flip, int8_flip.flip = False, False, True, True
    from facegallery import checkpoints
    from facegallery.embedder import checkpoint_folder
    from facegallery.models import create_model

    plain = create_model("dlib-resnet29")
    plain.load_state_dict(checkpoints.load_weights(checkpoint_folder(MODEL)))
    plain.eval()
    variants = {
        "PyTorch fp32, plain NCHW": lambda: plain(x),
        "PyTorch fp32 (folded, channels-last)": lambda: fp32.embed(chips, batch_size=args.batch),
        "PyTorch fp32 + flip averaging": lambda: fp32_flip.embed(chips, batch_size=args.batch),
        "PyTorch int8": lambda: int8.embed(chips, batch_size=args.batch),
        "PyTorch int8 + flip averaging (default)": lambda: int8_flip.embed(chips, batch_size=args.batch),
    }
    try:
        import dlib

        from facegallery.detectors.dlib import dlib_model_file

        net = dlib.face_recognition_model_v1(str(dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")))
        chip_list = [np.ascontiguousarray(c) for c in chips]
        variants = {"dlib-bin compute_face_descriptor": lambda: net.compute_face_descriptor(chip_list), **variants}
    except ImportError:
        print("dlib-bin not installed: no dlib figure")
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        for f in variants.values():  # warm-up
            f()
        for _ in range(args.rounds):
            for k, f in variants.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    ghz = clock_ghz()
    peak = args.peak_gflops or (32 * ghz if ghz else None)
    print(
        f"{cpu_name()}; torch {torch.__version__}; 1 thread; batch {args.batch} real LFW chips; "
        f"median of {args.rounds} rounds; {time.strftime('%Y-%m-%d')}"
    )
    base = None
    for k, ts in times.items():
        rate = args.batch / float(np.median(ts))
        base = base or (rate if k.startswith("dlib") else None)
        gflops = rate * GMAC * 2
        float_row = "fp32" in k  # int8 arithmetic has its own, higher peak: no float fraction for it
        print(
            f"  {k:<40} {rate:8.1f} images/s"
            + (f"   x{rate / base:5.1f} dlib-bin" if base else "")
            + (
                f"   {gflops:5.1f} GFLOP/s = {gflops / peak:.0%} of the {peak:.0f} GFLOP/s float peak"
                if peak and float_row
                else ""
            )
        )


def cmd_lfw(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    protocol = load_protocol(args.lfw, args.pairs)
    fp32 = load_model(f"{MODEL}@fp32")
    t0 = time.perf_counter()
    finder = Finder.of(fp32, "on", cache=False)
    faces, fallback = photo_faces(protocol.images, protocol.photos, finder, progress=not args.quiet)
    print(
        f"LFW {protocol.name}: {len(faces)} photos, {fallback} without a detected face (centre crop); "
        f"faces in {time.perf_counter() - t0:.0f} s; {cpu_name()}; {time.strftime('%Y-%m-%d')}"
    )
    variants = {
        "fp32": (f"{MODEL}@fp32", False),
        "fp32 + flip": (f"{MODEL}@fp32", True),
        "int8": (f"{MODEL}@int8", False),
        "int8 + flip": (f"{MODEL}@int8", True),
    }
    embeddings = {}
    for label, (ref, flip) in variants.items():
        e = load_model(ref)
        e.flip = flip
        t0 = time.perf_counter()
        embeddings[label] = embed_faces(e, faces)
        report(label, protocol, embeddings[label], time.perf_counter() - t0)
    for label in ("int8", "fp32 + flip"):
        cos = (embeddings[label] * embeddings["fp32"]).sum(1)
        print(f"  {label} vs fp32: cosine mean {cos.mean():.5f}, min {cos.min():.5f}")
    dlib_chips(args, protocol, faces, embeddings["fp32"], fp32)


def report(label: str, protocol, emb: np.ndarray, seconds: float) -> None:
    m, _ = score(protocol, emb)
    w = m.get("without_pubfig83_people", {})

    def acc(f):
        a = f.get("accuracy_10fold")
        return (
            f"{100 * a['mean']:.2f} +- {100 * a['se']:.2f}"
            if a
            else f"{100 * f['accuracy_dev_threshold']['accuracy']:.2f}"
        )

    print(
        f"  {label:<12} accuracy {acc(m)}   AUC {m['roc_auc']:.5f}   TAR@FAR=1e-3 {m['tar_at_far_0.001']:.4f}"
        + (f"   | without PubFig83 people: {acc(w)}, AUC {w['roc_auc']:.5f}" if w else "")
        + f"   ({len(emb) / seconds:.0f} photos/s with {torch.get_num_threads()} threads)"
    )


def dlib_chips(args, protocol, faces, ours: np.ndarray, fp32) -> None:
    """The same landmarks through dlib's get_face_chip: the embedding distance to our aligner's chip,
    LFW on those chips, and dlib-bin's descriptors of them against the port's."""
    try:
        import dlib

        from facegallery.detectors.dlib import dlib_model_file
        from facegallery.images import load_image
    except ImportError:
        print("dlib-bin not installed: no dlib chip comparison")
        return
    chips, rows = [], []
    for i, (rel, face) in enumerate(zip(protocol.photos, faces)):
        if not face.detected:
            continue
        pixels = load_image(protocol.images / rel)
        parts = [dlib.point(int(round(x - 0.5)), int(round(y - 0.5))) for x, y in face.landmarks]
        x0, y0, x1, y1 = face.box
        shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1) - 1, int(y1) - 1), parts)
        chips.append(np.asarray(dlib.get_face_chip(pixels, shape, 150, 0.25)))
        rows.append(i)
    rows = np.array(rows)
    theirs = fp32.embed(chips)
    d = ((theirs - ours[rows]) ** 2).sum(1)
    print(
        f"  our aligner vs dlib's get_face_chip ({len(rows)} detected photos, same landmarks): squared distance "
        f"between the embeddings median {np.median(d):.5f}, 95th percentile {np.percentile(d, 95):.5f}, "
        f"max {d.max():.5f}"
    )
    mixed = ours.copy()
    mixed[rows] = theirs
    report("dlib chips", protocol, mixed, 1.0)
    net = dlib.face_recognition_model_v1(str(dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")))
    sub = np.random.default_rng(0).permutation(len(chips))[: args.parity]
    ref = np.asarray(net.compute_face_descriptor([np.ascontiguousarray(chips[i]) for i in sub]))
    from facegallery.models.dlib_resnet import from_dat

    port = from_dat(dlib_model_file("dlib_face_recognition_resnet_model_v1.dat"))
    with torch.inference_mode():
        raw = port.features(to_tensor(np.stack([chips[i] for i in sub]))).numpy()
    same_ref = np.linalg.norm(ref[:, None] - ref[None], axis=2) < 0.6
    same_port = np.linalg.norm(raw[:, None] - raw[None], axis=2) < 0.6
    print(
        f"  parity with dlib-bin on {len(sub)} dlib chips: max abs difference {np.abs(raw - ref).max():.2e}; "
        f"{int((same_ref != same_port).sum()) // 2} of {len(sub) * (len(sub) - 1) // 2} pair decisions at 0.6 differ"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lfw", type=Path, default=Path(os.environ.get("FACEGALLERY_LFW", "../shared/data/lfw")))
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--batch", type=int, default=64)
    s.add_argument("--rounds", type=int, default=5)
    s.add_argument("--peak-gflops", type=float)
    s = sub.add_parser("lfw")
    s.add_argument("--pairs", default="view2", choices=["view2", "devtest"])
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--parity", type=int, default=300)
    s.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    {"speed": cmd_speed, "lfw": cmd_lfw}[args.cmd](args)


if __name__ == "__main__":
    main()
