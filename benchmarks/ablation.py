"""Ablation of the resface64 recipe: each ingredient switched off or swapped, same steps and seed.

    .venv/bin/python benchmarks/ablation.py --steps 800 --data ../shared/data/pubfig83 \
        --base=""   # the default recipe (crop 0.75, strong augmentation)

Trains each variant with `facegallery train --steps N` (runs/ablation/<variant>), then reports the
validation figures recorded in the checkpoint (held out of the train folder: used for model selection)
and, for reference only, closed-set top-1 on the known test photos (centroids from all train photos).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

VARIANTS = {
    "full recipe": [],
    "semi-hard instead of batch-hard": ["--miner", "semi-hard"],
    "random negatives (no mining)": ["--miner", "random"],
    "no CosFace (triplet alone)": ["--cosface-weight", "0"],
    "no triplet (CosFace alone)": ["--triplet-weight", "0"],
    "no augmentation": ["--no-augment"],
}


def test_top1(model: Path, data: Path) -> float:
    """Closed-set top-1 of the known test photos by nearest centroid of all train photos."""
    from facegallery.datasets import discover
    from facegallery.embedder import load_model
    from facegallery.library import embed_paths
    from facegallery.recognition import Centroids

    e = load_model(model)
    train, test = discover(data / "train"), discover(data / "test")
    test = test.only(train.names)
    tr, kt = embed_paths(e, train.paths)
    te, ks = embed_paths(e, test.paths)
    c = Centroids.of(tr, train.labels[kt], len(train.names))
    return float((c.distances(te).argmin(1) == test.labels[ks]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/pubfig83"))
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--only", nargs="*", help="Variant names (prefixes) to run.")
    ap.add_argument("--base", default="", help="Flags of the recipe every variant starts from.")
    args = ap.parse_args()
    rows = []
    for i, (name, extra) in enumerate(VARIANTS.items()):
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        out = args.out / f"v{i}"
        if (
            not (out / "config.json").is_file()
            or json.loads((out / "config.json").read_text())["total_steps"] != args.steps
        ):
            cmd = [
                str(Path(sys.executable).parent / "facegallery"),
                "train",
                "--data",
                str(args.data / "train"),
                "--out",
                str(out),
                "--steps",
                str(args.steps),
                "--eval-every",
                str(args.steps // 4),
                *shlex.split(args.base),
                *extra,
            ]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        cfg = json.loads((out / "config.json").read_text())
        v = cfg["validation"]
        rows.append((name, v["closed_top1"], v["accuracy"], test_top1(out, args.data), cfg["train_seconds"]))
        print(f"| {name} | {rows[-1][1]:.3f} | {rows[-1][2]:.3f} | {rows[-1][3]:.3f} | {rows[-1][4]:.0f} |", flush=True)
    print(f"\n{args.steps} steps each, seed 0, base recipe: {args.base or 'defaults'}")
    print("| variant | val top-1 | val open-set (calibrated) | test closed top-1 | train s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.0f} |")


if __name__ == "__main__":
    main()
