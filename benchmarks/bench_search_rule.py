"""Nearest centroid (the original method, the gallery's default) against per-photo nearest neighbours.

Issue 4 asks for per-photo search "if it measurably helps". Scores a probe against each person by:
``centroid`` (squared distance to the mean embedding), ``1nn`` (to the nearest enrolled photo) and
``knn`` (mean of the k nearest photos). Same PubFig83 protocol as `facegallery evaluate`: closed-set
top-1/top-6 of the 1,260 known test photos against all training photos, AUC of known vs unknown test
photos by the distance to the best person, and new people enrolled from their 1/5/10 lowest-numbered
photos (top-1 over known + new probes, and new probes alone).

    .venv/bin/python benchmarks/bench_search_rule.py --data ../shared/data/pubfig83
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from facegallery.embedder import load_model
from facegallery.evaluation import SHOTS, enrolment, prepare
from facegallery.recognition import squared_distances

RULES = ("centroid", "1nn", "3nn", "5nn")


def person_scores(probes: np.ndarray, photos: np.ndarray, owners: np.ndarray, people: int, rule: str) -> np.ndarray:
    """(probes, people) distances under ``rule``; lower = more alike."""
    out = np.empty((len(probes), people), np.float32)
    d = squared_distances(probes, photos) if rule != "centroid" else None
    for c in range(people):
        mine = owners == c
        if rule == "centroid":
            out[:, c] = squared_distances(probes, photos[mine].mean(0, keepdims=True))[:, 0]
        else:
            k = min(int(rule[:-2]), int(mine.sum()))
            out[:, c] = np.partition(d[:, mine], k - 1, axis=1)[:, :k].mean(1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FACEGALLERY_PUBFIG", "../shared/data/pubfig83"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    emb = load_model(args.model)
    data, _ = prepare(emb, f"{args.data}/train", f"{args.data}/test")
    tr, kn, un = data.train, data.known, data.unknown
    people = len(tr.folder.names)
    print(
        f"# {emb.name}, {time.strftime('%Y-%m-%d')}; {len(tr.emb)} enrolled photos of {people} people, "
        f"{len(kn.emb)} known and {len(un.emb)} unknown test photos"
    )
    print(
        "| rule | closed top-1 | closed top-6 | known-vs-unknown AUC | "
        + " | ".join(f"new people {n}-shot top-1 (new probes)" for n in SHOTS)
        + " |"
    )
    print("|---" * (4 + len(SHOTS)) + "|")
    for rule in RULES:
        s = person_scores(kn.emb, tr.emb, tr.folder.labels, people, rule)
        order = np.argsort(s, 1)
        top1 = float((order[:, 0] == kn.folder.labels).mean())
        top6 = float((order[:, :6] == kn.folder.labels[:, None]).any(1).mean())
        su = person_scores(un.emb, tr.emb, tr.folder.labels, people, rule)
        auc = roc_auc_score(np.r_[np.ones(len(s)), np.zeros(len(su))], -np.r_[s.min(1), su.min(1)])
        cells = []
        for n in SHOTS:
            enrol_rows, probe_rows, probe_labels = [], [], []
            for label in range(len(un.folder.names)):
                enrol, probe = enrolment(un.folder, label, n)
                if len(probe):
                    enrol_rows.append(enrol)
                    probe_rows.append(probe)
                    probe_labels += [people + len(enrol_rows) - 1] * len(probe)
            photos = np.concatenate([tr.emb] + [un.emb[r] for r in enrol_rows])
            owners = np.concatenate(
                [tr.folder.labels] + [np.full(len(r), people + i) for i, r in enumerate(enrol_rows)]
            )
            probes = np.concatenate([kn.emb, un.emb[np.concatenate(probe_rows)]])
            truth = np.concatenate([kn.folder.labels, probe_labels])
            hit = person_scores(probes, photos, owners, people + len(enrol_rows), rule).argmin(1) == truth
            cells.append(f"{hit.mean():.3f} ({hit[len(kn.emb) :].mean():.3f})")
        print(f"| {rule} | {top1:.3f} | {top6:.3f} | {auc:.3f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
