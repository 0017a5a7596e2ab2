"""Which search index for large galleries: recall against exact search, latency and batch speed.

Same synthetic centroids and probes as bench_scale.py (shaped like real resface64 embeddings). For each
FAISS factory string and search setting: recall@1 against exact search, how often the ANSWER agrees with
exact search at the model's unknown threshold (a miss only changes the answer when the exact nearest
centroid is within the threshold), median time of one probe (k=5), and probes/s for a batch of 1000.

    .venv/bin/python benchmarks/bench_ann.py --n 100000
    .venv/bin/python benchmarks/bench_ann.py --n 1000000 --only PQ64x4fs,RFlat IVF4000,Flat
    .venv/bin/python benchmarks/bench_ann.py --n 1000000 --probes 4000 \
        --only IVF256,PQ64x4fs,RFlat IVF1024,PQ64x4fs,RFlat
"""

from __future__ import annotations

import argparse
import statistics
import time

import faiss
import numpy as np
from bench_scale import exact_nearest, noisy_probes, synthetic_gallery

#: factory string -> search settings to sweep ("name=value" for faiss's ParameterSpace, or k_factor=).
CANDIDATES = {
    "IVF{nlist},Flat": ["nprobe=16", "nprobe=64", "nprobe=256"],
    "HNSW32": ["efSearch=64", "efSearch=256", "efSearch=512"],
    "PQ32x4fs,RFlat": ["k_factor=16", "k_factor=64"],
    "PQ64x4fs,RFlat": ["k_factor=4", "k_factor=16", "k_factor=64"],
    "PQ16x4fs,RFlat": ["k_factor=32", "k_factor=128", "k_factor=512"],
    # partitions + fast scan inside the visited lists: the batch-speed candidates
    "IVF256,PQ64x4fs,RFlat": ["nprobe=32,k_factor=16", "nprobe=64,k_factor=16"],
    "IVF1024,PQ64x4fs,RFlat": ["nprobe=128,k_factor=16", "nprobe=256,k_factor=16"],
}
THRESHOLD = 0.613  # squared distance: the shipped model's calibrated unknown threshold


def set_param(index, setting: str) -> None:
    """Apply "name=value[,name=value...]"."""
    for item in setting.split(","):
        name, value = item.split("=")
        if name == "k_factor":
            faiss.downcast_index(index).k_factor = float(value)
        else:
            faiss.ParameterSpace().set_index_parameters(index, item)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--only", nargs="*", help="Factory strings to run (as listed in CANDIDATES, {nlist} filled).")
    ap.add_argument("--train-sample", type=int, default=65_536)
    args = ap.parse_args()
    gal = synthetic_gallery(args.n)
    probes, src = noisy_probes(gal, args.probes)
    truth = exact_nearest(gal, probes)
    inside = ((probes - gal[truth]) ** 2).sum(1) <= THRESHOLD
    print(
        f"n={args.n} cores={faiss.omp_get_max_threads()} exact==source {np.mean(truth == src):.3f} "
        f"exact nearest within threshold {inside.mean():.3f}",
        flush=True,
    )
    print(
        f"{'index':>22} {'setting':>22} {'build s':>8} {'recall@1':>9} {'answers agree':>14} {'median ms':>10} "
        f"{'batch/s':>8}",
        flush=True,
    )
    nlist = int(4 * np.sqrt(args.n))
    for spec, settings in CANDIDATES.items():
        spec = spec.format(nlist=nlist)
        if args.only and spec not in args.only:
            continue
        index = faiss.index_factory(gal.shape[1], spec)
        t = time.perf_counter()
        rng = np.random.default_rng(0)
        index.train(gal[np.sort(rng.choice(args.n, min(args.n, max(args.train_sample, 39 * nlist)), replace=False))])
        index.add(gal)
        build = time.perf_counter() - t
        for setting in settings:
            set_param(index, setting)
            _, got = index.search(probes, 1)
            recall = float(np.mean(got[:, 0] == truth))
            agree = float(np.mean(np.where(inside, got[:, 0] == truth, True)))
            times = []
            for p in probes[:300]:
                t = time.perf_counter()
                index.search(p[None], 5)
                times.append(time.perf_counter() - t)
            t = time.perf_counter()
            index.search(probes, 5)
            batch = len(probes) / (time.perf_counter() - t)
            print(
                f"{spec:>22} {setting:>22} {build:>8.1f} {recall:>9.3f} {agree:>14.3f} "
                f"{1e3 * statistics.median(times):>10.3f} {batch:>8.0f}",
                flush=True,
            )
        del index


if __name__ == "__main__":
    main()
