"""Closed-set top-1/top-6 of several models on one checkpoint's held-out training photos, and few-shot
top-1 on its held-out identities: comparisons that read no test data.

    .venv/bin/python benchmarks/bench_holdout.py --split runs/all63/resface64-pubfig83 \\
        --models runs/all63/resface64-pubfig83 runs/ddp/resface64-pubfig83

Gallery = centroids of the split's training part (every identity of the train folder that the split does
not hold out as an impostor), probes = the split's held-out photos. A model that never trained on some of
those identities is judged on them all the same, as the test protocol judges known identities.

When the split holds identities out of training (``--val-impostors N``), they play the test protocol's
new people (`evaluation.new_identities`): each is enrolled from its 1, 5 and 10 lowest-numbered photos
and the rest of its photos, with the held-out photos of the known identities, are identified among all
centroids. This is the recipe-selection proxy for ``new_identities`` that never looks at the test folder.
They are also the unknown photos of an open-set figure (held-out photos of known identities vs every
photo of the held-out ones), at the threshold balanced on those very photos: a comparison of models on
equal terms, not a calibrated figure (the test protocol's open set calibrates on training photos).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from facegallery import checkpoints
from facegallery.datasets import Split, discover
from facegallery.embedder import checkpoint_folder, load_model
from facegallery.evaluation import Embedded, embed_folder, new_identities, open_set
from facegallery.recognition import Centroids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("FACEGALLERY_TRAIN", "../shared/data/pubfig83/train"))
    )
    ap.add_argument("--split", required=True, help="Checkpoint whose recorded split to use.")
    ap.add_argument("--models", nargs="+", required=True)
    args = ap.parse_args()
    tree = discover(args.data)
    split = Split.from_json(checkpoints.read_config(checkpoint_folder(args.split))["split"])
    part, hold, imp = split.parts(tree)
    print(
        f"{len(hold)} held-out photos of {len(part.names)} identities; {len(imp.names)} held-out identities "
        f"({len(imp.paths)} photos) as new people"
    )
    print(
        "| model | top-1 | top-6 | open set, best threshold | new people 1 / 5 / 10-shot | 5-shot known / new probes |"
    )
    print("|---|---|---|---|---|---|")
    for ref in args.models:
        e = load_model(ref)
        f = proxy_figures(embed_folder(e, tree), split)
        print(f"| {ref} ({e.name}) | {row(f)} |", flush=True)


HEADER = (
    "| model | top-1 | top-6 | open set, best threshold | new people 1 / 5 / 10-shot | 5-shot known / new probes |\n"
    "|---|---|---|---|---|---|"
)


def proxy_figures(emb: Embedded, split: Split) -> dict:
    """The proxy's figures from embeddings of the whole train folder: closed top-1/top-6 of the split's
    held-out photos, and with held-out identities the open set (best threshold) and new people."""
    part, hold, imp = split.parts(emb.folder)
    row = {p: i for i, p in enumerate(emb.folder.paths)}

    def emb_of(folder):
        return emb.emb[[row[p] for p in folder.paths]]

    cents = Centroids.of(emb_of(part), part.labels, len(part.names))
    hold_emb = emb_of(hold)
    order = np.argsort(cents.distances(hold_emb), axis=1)
    out = {
        "top1": float((order[:, 0] == hold.labels).mean()),
        "top6": float((order[:, :6] == hold.labels[:, None]).any(1).mean()),
    }
    if imp.names:
        o = open_set(cents, hold_emb, hold.labels, emb_of(imp), 0.0)
        out |= {"open_best": o["best_accuracy"], "open_best_threshold": o["best_threshold"]}
        out |= new_identities(cents, hold_emb, hold.labels, Embedded(imp, emb_of(imp)))
    return out


def row(f: dict) -> str:
    """The proxy's figures as the cells of one markdown row (model column excluded)."""
    if "open_best" not in f:
        return f"{f['top1']:.3f} | {f['top6']:.3f} | - | - | -"
    shots = " / ".join(f"{f[f'top1_{n}shot']:.3f}" for n in (1, 5, 10))
    return (
        f"{f['top1']:.3f} | {f['top6']:.3f} | {f['open_best']:.3f} at {f['open_best_threshold']:.3f} | {shots} "
        f"| {f['top1_5shot_known']:.3f} / {f['top1_5shot_new']:.3f}"
    )


if __name__ == "__main__":
    main()
