"""The detectors of issue 26 measured: YuNet (the default) against the MMOD port. Prints figures and writes
JSON beside them; nothing is timed in the tests.

    python benchmarks/bench_detectors.py template [--photos 1000]       # re-measure alignment.YUNET_IN_*
    python benchmarks/bench_detectors.py lfw-align [--pairs view2]       # align by YuNet's points or dlib's
    python benchmarks/bench_detectors.py composite [--photos 200]        # recall / precision by face size
    python benchmarks/bench_detectors.py speed [--photos 30]             # detection alone, identify end to end
    python benchmarks/bench_detectors.py folder [--photos 1000]          # 12 MP photos on 2 cores, RSS
    python benchmarks/bench_detectors.py rss --megapixels 12 24          # peak memory of one big photo

Data paths: ``--lfw`` / ``FACEGALLERY_LFW`` (default ../shared/data/lfw), ``--data`` / ``FACEGALLERY_DATA``
(default ../shared/data/pubfig83), ``--celeba`` / ``FACEGALLERY_CELEBA`` (default ../shared/data/celeba10k).
Results go to ``runs/bench/`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def cpu_name() -> str:
    """The CPU's model name and its widest vector extension (figures are only comparable on one CPU)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    isa = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name} ({isa}), {os.cpu_count()} cores"


def save(args, name: str, result: dict) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"cpu": cpu_name(), "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), **result}
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


# ----- alignment: where YuNet's points fall in the templates, and which alignment LFW prefers ---------


def cmd_template(args) -> None:
    """Where YuNet's five points fall in dlib's chip and in a PubFig83 crop, and how dlib's detectors
    frame a face YuNet boxes: on random CelebA *training* photos (whole heads with margin; PubFig83's
    tight crops cut YuNet's boxes), each upscaled 3x. Reference alignment: the MMOD port's box and dlib's
    shape predictor in it (the default model's validated pipeline); YuNet's points are carried through
    each photo's transform into the template; medians over photos where both detectors found one face."""
    from PIL import Image

    from facegallery.alignment import DLIB_CHIP, PUBFIG83, similarity_transform
    from facegallery.datasets import discover
    from facegallery.detectors import load_detector
    from facegallery.images import load_image
    from facegallery.landmarks import shipped

    yunet, mmod = load_detector("yunet"), load_detector("mmod")
    tree = discover(Path(args.celeba))
    idx = np.random.default_rng(0).choice(len(tree.paths), args.photos, replace=False)
    chip, crop, yb, mb = [], [], [], []
    for i in idx:
        px = load_image(tree.paths[i])
        px = np.asarray(Image.fromarray(px).resize((px.shape[1] * 3, px.shape[0] * 3), Image.Resampling.BICUBIC))
        y, m = yunet.detect(px), mmod.detect(px)
        if len(y) != 1 or len(m) != 1:
            continue
        marks = shipped().predict(px, m[0].box)
        for out, template in ((chip, DLIB_CHIP), (crop, PUBFIG83)):
            t = similarity_transform(marks, template.pixels())
            out.append(y[0].landmarks @ t[:, :2].T + t[:, 2])
        yb.append(y[0].box)
        mb.append(m[0].box)
    yb, mb = np.array(yb), np.array(mb)
    ys = yb[:, 2:] - yb[:, :2]
    shift = np.median(((mb[:, :2] + mb[:, 2:]) - (yb[:, :2] + yb[:, 2:])) / 2 / ys, 0)
    fit = np.concatenate([shift, np.median((mb[:, 2:] - mb[:, :2]) / ys, 0)])
    save(
        args,
        "template",
        {
            "photos": len(chip),
            "of": int(args.photos),
            "yunet_in_dlib_chip": np.round(np.median(chip, 0), 3).tolist(),
            "spread_in_dlib_chip_px": np.round(np.median(np.abs(np.array(chip) - np.median(chip, 0)), 0), 2).tolist(),
            "yunet_in_pubfig83": np.round(np.median(crop, 0), 3).tolist(),
            "dlib_box_fit": np.round(fit, 4).tolist(),
        },
    )


def cmd_lfw_align(args) -> None:
    """LFW 10-fold with the default model, faces found by YuNet, aligned two ways: by YuNet's own five
    points (similarity fit to the chip) and by dlib's shape predictor run in the YuNet box; and, as the
    reference, faces found by the MMOD port (variant ``mmod``, dlib's shape predictor in its box)."""
    from facegallery.embedder import embed_faces, load_model
    from facegallery.lfw import load_protocol, photo_faces, score
    from facegallery.pipeline import Finder

    embedder = load_model(args.model)
    protocol = load_protocol(Path(args.lfw), args.pairs)
    rows = {}
    for label in args.variants:
        finder = Finder.of(embedder, "on", "mmod" if label == "mmod" else "yunet")
        if label == "shape-predictor":  # the chip without YuNet's points: alignment falls back to dlib's
            finder = replace(finder, template=replace(finder.template, others=()))
            finder.fingerprint += ":shape-predictor-in-yunet-box"
        t0 = time.perf_counter()
        faces, fallback = photo_faces(protocol.images, protocol.photos, finder, embedder, progress=True)
        figures, _ = score(protocol, embed_faces(embedder, faces))

        def acc(f: dict) -> float:
            a = f.get("accuracy_10fold") or f["accuracy_dev_threshold"]
            return round(100 * a.get("mean", a.get("accuracy")), 2)

        rows[label] = {
            "accuracy": acc(figures),
            "se": round(100 * figures["accuracy_10fold"]["se"], 2) if "accuracy_10fold" in figures else None,
            "tar_at_far_1e-3": round(figures["tar_at_far_0.001"], 4),
            "without_pubfig83_people": acc(figures["without_pubfig83_people"]),
            "photos": len(faces),
            "no_face_found": fallback,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(label, rows[label], flush=True)
    save(args, "lfw-align", {"model": embedder.name, "pairs": protocol.name, "variants": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("FACEGALLERY_DATA") or str(SHARED / "pubfig83"))
    parser.add_argument("--celeba", default=os.environ.get("FACEGALLERY_CELEBA") or str(SHARED / "celeba10k"))
    parser.add_argument("--lfw", default=os.environ.get("FACEGALLERY_LFW") or str(SHARED / "lfw"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench"))
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("template")
    c.add_argument("--photos", type=int, default=1000)
    c.set_defaults(fn=cmd_template)
    c = sub.add_parser("lfw-align")
    c.add_argument("--model", default="dlib-resnet29-v1")
    c.add_argument("--pairs", default="view2", choices=["view2", "devtest"])
    c.add_argument("--variants", nargs="+", default=["yunet-points", "shape-predictor", "mmod"])
    c.set_defaults(fn=cmd_lfw_align)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
