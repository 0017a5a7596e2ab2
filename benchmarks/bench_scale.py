"""Gallery scale benchmark: enrol, search and identify at 1k .. 1M identities (dimension 128).

Synthetic identities follow the shape measured on real embeddings (resface64 on PubFig83: between-person
and within-person scatter both spread over ~35 effective dimensions, and aligned with each other):
centroids are Gaussian with eigenvalues ~ (i+1)^-0.8 (35 effective dims), scaled to the lengths real
centroids have (0.80..0.95); probes are noisy copies of a gallery member (unit photo direction plus noise
of the same spectrum), at a noise level where exact search still finds the true person for most but not
all probes at 1M (see the 'exact==truth' column). Recall@1 is measured against exact search;
'answers_agree' counts probes whose answer (a name, or unknown at the shipped threshold) is the one exact
search gives.

    .venv/bin/python benchmarks/bench_scale.py --sizes 1000,100000,1000000
    .venv/bin/python benchmarks/bench_scale.py --crossover          # exact vs compressed index, one probe, by size
    .venv/bin/python benchmarks/bench_scale.py --real runs/resface64-pubfig83  # real photos, small gallery
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facegallery.gallery import Gallery
from facegallery.gallery import index as ix
from facegallery.recognition import count_factor, searchable_queries

DIM = 128
SPECTRUM = 0.8  # eigenvalue decay of between- and within-person scatter (35 effective dims)
NOISE = 0.8  # within-person noise scale (expected squared norm of the noise vector)
THRESHOLD = 0.613  # identification distance: a calibrated unknown threshold of the shipped model


def _search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The index's own search of unit queries (what the gallery's LiveIndex does, without the store)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return index.search(searchable_queries(q), k)


def _basis_scales(dim: int) -> np.ndarray:
    s = (np.arange(dim) + 1.0) ** (-SPECTRUM / 2)  # standard deviations
    return (s / np.sqrt((s**2).sum())).astype(np.float32)  # total variance 1


def synthetic_gallery(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """``n`` centroid-like vectors (not unit: lengths 0.80..0.95, as real centroids of a few photos)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x *= _basis_scales(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x *= rng.uniform(0.80, 0.95, (n, 1)).astype(np.float32)
    return x


def noisy_probes(gallery: np.ndarray, m: int, noise: float = NOISE, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(unit probes, index of the gallery member each copies)."""
    rng = np.random.default_rng(seed)
    src = rng.choice(len(gallery), m, replace=len(gallery) < m)
    base = gallery[src] / np.linalg.norm(gallery[src], axis=1, keepdims=True)
    p = base + np.sqrt(noise) * rng.standard_normal(base.shape, dtype=np.float32) * _basis_scales(base.shape[1])
    return (p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32), src


def exact_nearest(gallery: np.ndarray, probes: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Ground truth: index of the nearest gallery vector by squared distance, per probe."""
    norms = (gallery * gallery).sum(1)
    out = np.empty(len(probes), np.int64)
    for s in range(0, len(probes), chunk):
        out[s : s + chunk] = (norms[None, :] - 2.0 * probes[s : s + chunk] @ gallery.T).argmin(1)
    return out


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or at its highest (VmHWM: per process image, unlike ru_maxrss, which
    Linux carries over from the parent through fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class SyntheticModel:
    """Stands in for an embedder so synthetic vectors can be stored (fingerprint only)."""

    name, input_size, fingerprint, threshold = "synthetic", 0, "synthetic:128", None

    def embed(self, images, batch_size: int = 256) -> np.ndarray:  # noqa: ARG002
        raise RuntimeError("synthetic galleries hold precomputed vectors only")


def _median_ms(fn, probes: np.ndarray) -> float:
    times = []
    for p in probes:
        t = time.perf_counter()
        fn(p[None])
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def memory_probe(db: str) -> None:
    """Child process: RSS of an opened gallery with its index loaded, printed as JSON."""
    base = rss_mb()
    t = time.perf_counter()
    with Gallery.open(db, model=SyntheticModel()) as g:
        g.search(np.zeros((1, DIM), np.float32), 1)
        load = time.perf_counter() - t
        print(
            json.dumps(
                {
                    "rss_delta_mb": rss_mb() - base,
                    "kind": g.searcher.index.kind,
                    "open_s": load,
                    "peak_mb": rss_mb("VmHWM") - base,
                }
            )
        )


def bench_size(n: int, args: argparse.Namespace, workdir: Path) -> dict:
    gal = synthetic_gallery(n)
    probes, src = noisy_probes(gal, args.probes)
    truth = exact_nearest(gal, probes)
    names = [f"p{i:07d}" for i in range(n)]
    db = workdir / f"g{n}.db"
    row: dict = {"n": n, "exact==truth": float((truth == src).mean())}
    with Gallery.open(db, model=SyntheticModel(), create=True) as g:
        t = time.perf_counter()
        g.enroll_embeddings(names, gal)
        row["enrol_s"] = time.perf_counter() - t
        t = time.perf_counter()
        g.search(probes[:1], 1)
        row["index_build_s"] = time.perf_counter() - t
        index = g.searcher.index
        row["index"] = index.kind
        ids, _ = _search(index, probes, 1)
        hit = ids[:, 0] - 1 == truth  # ids are 1-based in insertion order
        row["recall@1"] = float(hit.mean())
        # an ANN miss changes the answer only where the exact nearest centroid is within the threshold
        inside = ((probes - gal[truth]) ** 2).sum(1) / count_factor(np.ones(1))[0] <= THRESHOLD  # 1 photo each
        row["answers_agree"] = float(np.where(inside, hit, True).mean())
        row["probe_ms"] = _median_ms(lambda q: _search(index, q, 5), probes[: args.latency_probes])
        row["identify_ms"] = _median_ms(lambda q: g.identify_embeddings(q, 5), probes[: args.latency_probes // 4])
        batch, _ = noisy_probes(gal, args.batch, seed=2)
        t = time.perf_counter()
        _search(index, batch, 5)
        row["batch_probes_per_s"] = args.batch / (time.perf_counter() - t)
        t = time.perf_counter()
    row["close_s"] = time.perf_counter() - t  # includes writing the index side file when large
    del gal
    out = subprocess.run(
        [sys.executable, __file__, "--memory-probe", str(db)], capture_output=True, text=True, check=True
    ).stdout
    mem = json.loads(out.strip().splitlines()[-1])
    row["reopen_s"] = mem["open_s"]
    row["rss_mb"] = mem["rss_delta_mb"]
    row["peak_mb"] = mem["peak_mb"]
    row["raw_mb"] = n * DIM * 4 / 2**20
    row["db_mb"] = db.stat().st_size / 2**20
    return row


def crossover(args: argparse.Namespace) -> None:
    """One probe: exact (NumPy) vs compressed index time by gallery size, to place ``index.EXACT_MAX``."""
    print(f"{'n':>8} {'exact ms':>9} {'pq ms':>8} {'pq recall@1':>13} {'pq build s':>12}")
    for n in [int(s) for s in args.crossover_sizes.split(",")]:
        gal = synthetic_gallery(n)
        probes, _ = noisy_probes(gal, args.latency_probes)
        ids = np.arange(n, dtype=np.int64)
        exact = ix.ExactIndex(ids, gal)
        t = time.perf_counter()
        ann = ix.CompressedIndex.build(ids, gal)
        build = time.perf_counter() - t
        e_ms = _median_ms(lambda q, exact=exact: exact.search(q, 5), probes)
        i_ms = _median_ms(lambda q, ann=ann: ann.search(q, 5), probes)
        rec = float((ann.search(probes, 1)[0][:, 0] == exact.search(probes, 1)[0][:, 0]).mean())
        print(f"{n:>8} {e_ms:>9.3f} {i_ms:>8.3f} {rec:>13.3f} {build:>12.1f}", flush=True)


def real(args: argparse.Namespace, workdir: Path) -> None:
    """Enrol the PubFig83 training photos and identify its test photos with a real model."""
    from facegallery.images import iter_images

    root = Path(args.data)
    with Gallery.open(workdir / "real.db", model=args.real, create=True) as g:
        t = time.perf_counter()
        res = g.enroll_folder(root / "train", detect="off")
        enrol = time.perf_counter() - t
        photos = sum(r.added for r in res)
        probes = list(iter_images([root / "test"]))
        t = time.perf_counter()
        answers = g.recognize(probes).answers
        ident = time.perf_counter() - t
        cal = g.calibration()
    print(
        f"real gallery: {len(res)} people, {photos} photos enrolled in {enrol:.1f} s "
        f"({photos / enrol:.0f} photos/s, decode + embed + write)"
    )
    print(f"identified {len(answers)} photos in {ident:.1f} s ({len(answers) / ident:.0f} photos/s)")
    print(
        f"calibration: {cal.source} {cal.method}: threshold {cal.identify.threshold:.4f}, expected FAR "
        f"{cal.identify.far}, FRR {cal.identify.frr}; score 0.5 at {cal.identify.midpoint:.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--probes", type=int, default=1000, help="Probes for recall@1.")
    ap.add_argument("--latency-probes", type=int, default=1000, help="Single probes timed one by one.")
    ap.add_argument("--batch", type=int, default=10000, help="Probes in the batch throughput test.")
    ap.add_argument("--threads", type=int, default=0, help="FAISS/BLAS threads (0: all cores).")
    ap.add_argument("--crossover", action="store_true", help="Only the exact-vs-compressed crossover table.")
    ap.add_argument("--crossover-sizes", default="1000,2000,5000,10000,20000,50000,100000")
    ap.add_argument("--real", metavar="MODEL", help="Also time a real gallery with this model.")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/pubfig83"))
    ap.add_argument("--memory-probe", metavar="DB", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_probe:
        return memory_probe(args.memory_probe)
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    print(
        f"machine: {os.cpu_count()} cores; faiss threads {args.threads or 'all'}; EXACT_MAX {ix.EXACT_MAX}", flush=True
    )
    if args.crossover:
        return crossover(args)
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        if args.real:
            real(args, Path(tmp))
        cols = [
            "n",
            "index",
            "exact==truth",
            "recall@1",
            "answers_agree",
            "probe_ms",
            "identify_ms",
            "batch_probes_per_s",
            "enrol_s",
            "index_build_s",
            "close_s",
            "reopen_s",
            "raw_mb",
            "rss_mb",
            "peak_mb",
            "db_mb",
        ]
        print(" ".join(f"{c:>12}" for c in cols), flush=True)
        for n in [int(s) for s in args.sizes.split(",") if s]:
            row = bench_size(n, args, Path(tmp))
            print(
                " ".join(f"{row[c]:>12.3f}" if isinstance(row[c], float) else f"{row[c]:>12}" for c in cols), flush=True
            )


if __name__ == "__main__":
    main()
