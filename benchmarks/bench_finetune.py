"""Issue 17's figures for many trained models side by side: LFW and the full PubFig83 protocol.

    .venv/bin/python benchmarks/bench_finetune.py lfw --models dlib-resnet29-v1 runs/ft/all ...
    .venv/bin/python benchmarks/bench_finetune.py pubfig83 --models dlib-resnet29-v1 runs/ft/all ...

``lfw``: pairs.txt (10 folds), as ``facegallery evaluate --protocol lfw`` scores it; faces are found
and aligned once per alignment template (the project's pipeline: detection, landmarks, the face nearest
the centre) and kept in ``--cache``, so a second model of the same template costs only its embedding.
``pubfig83``: the whole protocol of ``facegallery evaluate`` (closed set, open set at the threshold
calibrated on the train folder, new people 1/5/10-shot), one model after another.

Every model runs as it ships (int8 where it has an int8 network, flip averaging as its config says).
One markdown row per model; ``--json`` appends each model's figures as one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from bench_holdout import HEADER, proxy_figures, row

from facegallery import checkpoints
from facegallery.alignment import align
from facegallery.datasets import Split
from facegallery.detectors import DEFAULT_DETECTOR
from facegallery.embedder import checkpoint_folder, embed_faces, load_model
from facegallery.evaluation import evaluate
from facegallery.faces import Face, whole_image
from facegallery.images import load_image
from facegallery.lfw import centre_crop, load_protocol, photo_faces, score
from facegallery.pipeline import Finder

DATA = Path(os.environ.get("FACEGALLERY_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))


def lfw_faces(protocol, template, cache: Path) -> tuple[list[Face], int]:
    """The protocol's faces aligned into ``template``. Faces are found once (detection is most of the
    cost) and their landmarks kept in ``cache``: any other template is then aligned from the same
    landmarks, as the pipeline would have done for it. Photos without a face take their centre."""
    key = hashlib.sha1("\n".join(protocol.photos).encode()).hexdigest()[:16]
    path = cache / f"lfw-landmarks-{key}-{DEFAULT_DETECTOR}.npz"
    if not path.is_file():
        finder = Finder(template=template, fingerprint="landmarks only", detect="on")
        faces, _ = photo_faces(protocol.images, protocol.photos, finder, progress=False)
        marks = np.array([f.landmarks if f.detected else np.full((5, 2), np.nan) for f in faces], np.float64)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, landmarks=marks, schemes=np.array([f.scheme or "" for f in faces]))
    with np.load(path) as z:
        marks, schemes = z["landmarks"], z["schemes"]
    faces = []
    for rel, m, scheme in zip(protocol.photos, marks, schemes):
        pixels = load_image(protocol.images / rel)
        if np.isnan(m).any():
            faces.append(whole_image(centre_crop(pixels), template))
        else:
            crop = align(pixels, m, template, str(scheme))
            faces.append(Face(crop, [0, 0, 0, 0], True, m.tolist(), template=template.name, scheme=str(scheme)))
    return faces, int(np.isnan(marks).any((1, 2)).sum())


def cmd_lfw(args: argparse.Namespace) -> None:
    protocol = load_protocol(args.lfw, "view2")
    threads = torch.get_num_threads()
    print(
        f"| model | LFW 10-fold | without PubFig83 people | TAR at FAR 1e-3 | photos/s (embedding, {threads} threads) |"
    )
    print("|---|---|---|---|---|")
    for ref in args.models:
        e = load_model(ref)
        t0 = time.perf_counter()
        faces, fallback = lfw_faces(protocol, e.template, args.cache)
        t1 = time.perf_counter()
        emb = embed_faces(e, faces)
        t2 = time.perf_counter()
        m, _ = score(protocol, emb)
        w = m["without_pubfig83_people"]
        acc = lambda f: f"{100 * f['accuracy_10fold']['mean']:.2f} +- {100 * f['accuracy_10fold']['se']:.2f}"  # noqa: E731
        print(
            f"| {ref} ({e.name}) | {acc(m)} | {acc(w)} | {m['tar_at_far_0.001']:.3f} | {len(faces) / (t2 - t1):.0f} |",
            flush=True,
        )
        if args.json:
            with open(args.json, "a") as f:
                row = {"model": ref, "name": e.name, "fingerprint": e.fingerprint, "protocol": "lfw"}
                row |= {"fallback": fallback, "faces_s": round(t1 - t0, 1), "embed_s": round(t2 - t1, 1), **m}
                f.write(json.dumps(row) + "\n")


def cmd_pubfig83(args: argparse.Namespace) -> None:
    print(
        "| model | closed top-1 | top-6 | open 1260+1260 calibrated (hindsight) | new people 1 / 5 / 10-shot "
        "| 5-shot known / new probes |"
    )
    print("|---|---|---|---|---|---|")
    split = Split.from_json(checkpoints.read_config(checkpoint_folder(args.proxy))["split"]) if args.proxy else None
    proxy_rows: list[str] = []
    for ref in args.models:
        e = load_model(ref)
        m, data = evaluate(e, args.pubfig83 / "train", args.pubfig83 / "test")
        if split is not None:  # the same train embeddings also give the proxy's figures
            m["proxy"] = proxy_figures(data.train, split)
            proxy_rows.append(f"| {ref} ({e.name}) | {row(m['proxy'])} |")
        c, o, n = m["closed_set"], m["open_set"], m["new_identities"]
        print(
            f"| {ref} ({e.name}) | {c['top1']:.3f} | {c['top6']:.3f} | {o['calibrated_accuracy']:.3f} "
            f"({o['best_accuracy']:.3f}) | {n['top1_1shot']:.3f} / {n['top1_5shot']:.3f} / {n['top1_10shot']:.3f} "
            f"| {n['top1_5shot_known']:.3f} / {n['top1_5shot_new']:.3f} |",
            flush=True,
        )
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"model": ref, "name": e.name, **m}, default=str) + "\n")
    if proxy_rows:
        print(f"\nproxy ({args.proxy}'s split of the train folder; no test photo):")
        print(HEADER)
        print("\n".join(proxy_rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="Append each model's figures here as a JSON line.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("lfw")
    s.add_argument("--lfw", type=Path, default=Path(os.environ.get("FACEGALLERY_LFW", DATA / "lfw")))
    s.add_argument("--cache", type=Path, default=Path("/tmp/facegallery-bench"))
    s.add_argument("--models", nargs="+", required=True)
    s = sub.add_parser("pubfig83")
    s.add_argument("--proxy", help="Also the proxy figures of this checkpoint's split (bench_holdout.py).")
    s.add_argument("--pubfig83", type=Path, default=Path(os.environ.get("FACEGALLERY_PUBFIG83", DATA / "pubfig83")))
    s.add_argument("--models", nargs="+", required=True)
    args = ap.parse_args()
    {"lfw": cmd_lfw, "pubfig83": cmd_pubfig83}[args.cmd](args)


if __name__ == "__main__":
    main()
