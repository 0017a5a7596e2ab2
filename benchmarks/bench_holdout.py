"""Closed-set top-1/top-6 of several models on one checkpoint's held-out training photos: a comparison
that reads no test data, for models whose own validation sets differ.

    .venv/bin/python benchmarks/bench_holdout.py --split runs/all63/resface64-pubfig83 \\
        --models runs/all63/resface64-pubfig83 runs/ddp/resface64-pubfig83

Gallery = centroids of the split's training part (every identity of the train folder that the split does
not hold out as an impostor), probes = the split's held-out photos. A model that never trained on some of
those identities is judged on them all the same, as the test protocol judges known identities.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from facegallery import checkpoints
from facegallery.datasets import Split, discover
from facegallery.embedder import checkpoint_folder, load_model
from facegallery.evaluation import embed_folder
from facegallery.recognition import centroids, squared_distances


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FACEGALLERY_TRAIN", "../shared/data/pubfig83/train")))
    ap.add_argument("--split", required=True, help="Checkpoint whose recorded split to use.")
    ap.add_argument("--models", nargs="+", required=True)
    args = ap.parse_args()
    tree = discover(args.data)
    split = Split.from_json(checkpoints.read_config(checkpoint_folder(args.split))["split"])
    part, hold, _ = split.parts(tree)
    print(f"| model | top-1 | top-6 |  ({len(hold)} held-out photos of {len(part.names)} identities)")
    print("|---|---|---|")
    for ref in args.models:
        e = load_model(ref)
        emb = embed_folder(e, tree)
        row = {p: i for i, p in enumerate(emb.folder.paths)}
        cents = centroids(emb.emb[[row[p] for p in part.paths]], part.labels, len(part.names))
        order = np.argsort(squared_distances(emb.emb[[row[p] for p in hold.paths]], cents), axis=1)
        top1 = float((order[:, 0] == hold.labels).mean())
        top6 = float((order[:, :6] == hold.labels[:, None]).any(1).mean())
        print(f"| {ref} ({e.name}) | {top1:.3f} | {top6:.3f} |", flush=True)


if __name__ == "__main__":
    main()
