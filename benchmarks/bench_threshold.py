"""What a gallery's unknown threshold claims against what strangers meet (issue 27, item 4).

Small galleries are drawn from CelebA people with >= 4 photos (3 enrolled, the 4th held out as a
genuine probe); 1,000 other CelebA people (one photo each) are the strangers: people never enrolled.
For each gallery size, ``--draws`` random galleries are built from precomputed embeddings (the default
model, faces found by the default detector, through the face cache) and calibrated with the default
rule (target FAR 1%); reported per size: the threshold's source, the FAR it claims with its 95%
interval, the share of strangers given a name, and the share of held-out photos named right.

    .venv/bin/python benchmarks/bench_threshold.py --out runs/bench/threshold.json

CelebA is training data here (never used to report LFW or PubFig83 figures), so choosing a rule from
these numbers chooses nothing on test data.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from facegallery.embedder import load_model
from facegallery.gallery import Gallery
from facegallery.library import embed_paths
from facegallery.pipeline import Finder

DATA = Path(os.environ.get("FACEGALLERY_CELEBA", Path(__file__).resolve().parents[2] / "shared/data/celeba10k"))


def pools(root: Path, strangers: int, seed: int) -> tuple[list[list[Path]], list[Path]]:
    """(people with >= 4 photos: their first four, strangers: one photo of as many people with one)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    photos = {f: sorted(f.glob("*.jpg")) for f in folders}
    people = [photos[f][:4] for f in folders if len(photos[f]) >= 4]
    singles = [photos[f][0] for f in folders if len(photos[f]) == 1]
    rng = np.random.default_rng(seed)
    return people, [singles[i] for i in rng.permutation(len(singles))[:strangers]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default="dlib-resnet29-v1")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 10, 20, 50, 100])
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--strangers", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    embedder = load_model(args.model)
    people, strangers = pools(args.data, args.strangers, args.seed)
    paths = [p for four in people for p in four] + strangers
    t0 = time.perf_counter()
    emb, kept = embed_paths(embedder, paths, Finder.of(embedder, "auto"), progress=True)
    print(f"embedded {len(kept)} of {len(paths)} photos in {time.perf_counter() - t0:.0f} s")
    vec = {paths[i]: emb[j] for j, i in enumerate(kept)}
    people = [four for four in people if all(p in vec for p in four)]
    stranger_vecs = np.stack([vec[p] for p in strangers if p in vec])
    rng = np.random.default_rng(args.seed)
    rows = []
    for size in args.sizes:
        per = []
        for _ in range(args.draws):
            chosen = [people[i] for i in rng.choice(len(people), size, replace=False)]
            names = [f"p{k}" for k, four in enumerate(chosen) for _ in four[:3]]
            with tempfile.TemporaryDirectory() as tmp, Gallery.open(Path(tmp) / "g.db", embedder, create=True) as g:
                g.enroll_embeddings(names, np.stack([vec[p] for four in chosen for p in four[:3]]))
                cal = g.calibration()
                fit = cal.identify
                named = [a.name is not None for a in g.identify_embeddings(stranger_vecs, 1)]
                probes = g.identify_embeddings(np.stack([vec[four[3]] for four in chosen]), 1)
                right = [a.name == f"p{k}" for k, a in enumerate(probes)]
            accept = float(np.mean(named))
            covered = None if fit.far is None else bool(fit.far_low <= accept <= fit.far_high)
            per.append((cal.source, fit.threshold, fit.far, fit.far_high, accept, float(np.mean(right)), covered))
        src, thr, far, high, acc, gen, cov = zip(*per)
        claimed = [f for f in far if f is not None]
        row = {
            "people": size,
            "draws": args.draws,
            "source": {s: src.count(s) for s in set(src)},
            "threshold_median": float(np.median(thr)),
            "far_claimed_mean": float(np.mean(claimed)) if claimed else None,
            "far_high_mean": float(np.mean([h for h in high if h is not None])) if claimed else None,
            "strangers_named_mean": float(np.mean(acc)),
            "strangers_named_max": float(np.max(acc)),
            "held_out_named_right": float(np.mean(gen)),
            "interval_covers": float(np.mean([c for c in cov if c is not None])) if claimed else None,
        }
        rows.append(row)
        print(json.dumps(row))
    result = {
        "model": embedder.name,
        "strangers": len(stranger_vecs),
        "people_pool": len(people),
        "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": "),
        "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
