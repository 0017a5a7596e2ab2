"""A million people in a PostgreSQL gallery (issue 28, item 7): import, a replica's start, one probe.

Synthetic 128-d identities of ``bench_scale.py`` (the shape of real embeddings) are imported by ``COPY``
(``Gallery.enroll_embeddings``) into a private PostgreSQL server (:mod:`facegallery.gallery.pgserver`);
then, in a fresh process as a replica starting would:

- it opens the gallery and answers a first probe (it streams the centroids out of the database and
  trains its compressed index): its start time;
- single probes timed one by one (the search, and ``identify_embeddings`` with the name lookup and the
  change check), and recall@1 of 1,000 probes against exact search.

    python benchmarks/bench_postgres_scale.py --n 1000000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from bench_scale import SyntheticModel, exact_nearest, noisy_probes, synthetic_gallery

from facegallery.gallery import Gallery
from facegallery.gallery.pgserver import new_database, private_server


def replica(url: str, n: int, probes: int) -> None:
    """Child process: open, first probe, then timings and recall; prints JSON."""
    t = time.perf_counter()
    g = Gallery.open(url, model=SyntheticModel())
    opened = time.perf_counter() - t
    gal = synthetic_gallery(n)
    q, _ = noisy_probes(gal, probes)
    t = time.perf_counter()
    g.search(q[:1], 1)
    first = time.perf_counter() - t
    out = {"open_s": opened, "first_probe_s": first, "start_s": opened + first, "index": g.searcher.index.kind}
    truth = exact_nearest(gal, q)
    ids, _ = g.search(q, 1)
    out["recall@1"] = float((ids[:, 0] - 1 == truth).mean())  # ids are 1-based in insertion order

    def median_ms(fn) -> float:
        times = []
        for p in q:
            s = time.perf_counter()
            fn(p[None])
            times.append(time.perf_counter() - s)
        return 1e3 * statistics.median(times)

    out["probe_ms"] = median_ms(lambda p: g.search(p, 5))
    out["identify_ms"] = median_ms(lambda p: g.identify_embeddings(p, 5))
    t = time.perf_counter()
    g.close()
    out["close_s"] = time.perf_counter() - t
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--replica", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.replica:
        return replica(args.replica[0], int(args.replica[1]), args.probes)
    import psycopg

    with private_server() as pg:
        url = new_database(pg.url)
        gal = synthetic_gallery(args.n)
        names = [f"p{i:07d}" for i in range(args.n)]
        with Gallery.open(url, model=SyntheticModel(), create=True) as g:
            t = time.perf_counter()
            g.enroll_embeddings(names, gal)
            imported = time.perf_counter() - t
        del gal
        with psycopg.connect(url) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        print(f"imported {args.n} people in {imported:.1f} s; database {size / 2**20:.0f} MB")
        out = subprocess.run(
            [sys.executable, __file__, "--replica", url, str(args.n), "--probes", str(args.probes)],
            capture_output=True,
            text=True,
        )
        print("a replica starting:", out.stdout.strip().splitlines()[-1] if out.returncode == 0 else out.stderr)
        cpu = next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
        )
        print(f"CPU {cpu}")


if __name__ == "__main__":
    main()
