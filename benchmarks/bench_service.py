"""Load on the HTTP service over loopback: throughput, latency percentiles, errors and the server's peak RSS.

Starts ``facegallery serve`` (the shipped default model) on a fresh gallery of PubFig83 people enrolled
through the API, then sends identify requests of one 100x100 PubFig83 crop from concurrent clients;
``--mixed`` makes every tenth request an enrolment of a new photo of a person not enrolled yet, and checks afterwards
that the gallery holds exactly what was acknowledged.

    python benchmarks/bench_service.py --requests 2000 --clients 16 --batch 64
    python benchmarks/bench_service.py --requests 2000 --clients 16 --batch 0      # no cross-request batching
    python benchmarks/bench_service.py --requests 1000 --clients 16 --mixed
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

PUBFIG = Path(os.environ.get("FACEGALLERY_PUBFIG83", Path(__file__).resolve().parents[2] / "shared/data/pubfig83"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pubfig83", type=Path, default=PUBFIG)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64, help="the server's --batch")
    ap.add_argument("--people", type=int, default=20, help="people enrolled before the run (3 photos each)")
    ap.add_argument("--mixed", action="store_true", help="every tenth request enrols a new photo")
    args = ap.parse_args()

    people = sorted(p for p in (args.pubfig83 / "train").iterdir() if p.is_dir())
    tmp = Path(tempfile.mkdtemp(prefix="fg-load-"))
    keyfile = tmp / "keys.txt"
    key = subprocess.run(
        [sys.executable, "-m", "facegallery", "key", "--file", str(keyfile)], capture_output=True, text=True, check=True
    ).stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "facegallery", "serve", "--gallery", str(tmp / "g.db"), "--create", "--port", str(port),
         "--api-key-file", str(keyfile), "--batch", str(args.batch), "--max-photos", "16"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    headers = {"X-API-Key": key}
    try:
        for _ in range(1200):
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        for person in people[: args.people]:
            shots = sorted(person.glob("*.jpg"))[:3]
            r = httpx.post(
                f"{url}/v1/people/{person.name}/photos",
                files=[("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in shots],
                headers=headers,
                timeout=120,
            )
            r.raise_for_status()
        probe = sorted(people[0].glob("*.jpg"))[5].read_bytes()
        # enrolments: the people not enrolled yet, in turn, each under their own name (one new photo each time)
        newcomers = people[args.people :]
        lock = threading.Lock()
        counter = iter(range(args.requests))
        lat, errors, wrong, acked, refused = [], [], [], [], []

        def client() -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    t = time.perf_counter()
                    if args.mixed and i % 10 == 9:
                        k = i // 10
                        person = newcomers[k % len(newcomers)]
                        photo, name = sorted(person.glob("*.jpg"))[k // len(newcomers)], person.name
                        r = c.post(
                            f"/v1/people/{name}/photos",
                            files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))],
                        )
                        if r.status_code in (200, 201):
                            with lock:
                                acked.append((name, r.json()["added"]))
                        elif r.status_code == 422:  # a photo without exactly one face: refused, nothing stored
                            with lock:
                                refused.append(name)
                        else:
                            errors.append(r.status_code)
                    else:
                        r = c.post("/v1/identify", files=[("photos", ("probe.jpg", probe, "image/jpeg"))])
                        if r.status_code != 200:
                            errors.append(r.status_code)
                        elif r.json()["photos"][0]["faces"][0]["name"] != people[0].name:
                            wrong.append(r.json()["photos"][0]["faces"][0])
                    with lock:
                        lat.append(time.perf_counter() - t)

        start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        rss = peak_rss_mb(server.pid)
        listed = {p["name"]: p["photos"] for p in httpx.get(f"{url}/v1/people", headers=headers).json()["people"]}
        expected = {p.name: 3 for p in people[: args.people]}
        for name, added in acked:
            if added:
                expected[name] = expected.get(name, 0) + added
        exact = listed == expected
        ms = np.array(lat) * 1000
        cpu = next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
        )
        print(f"CPU {cpu}, {os.cpu_count()} cores; server --batch {args.batch}; {args.clients} clients")
        print(
            f"{len(lat)} requests{' (mixed: 1 in 10 enrols)' if args.mixed else ''} in {wall:.1f} s: "
            f"{len(lat) / wall:.1f} req/s; latency p50 {np.percentile(ms, 50):.0f} ms, "
            f"p95 {np.percentile(ms, 95):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms; errors {len(errors)} "
            f"{sorted(set(errors))}; answers not naming the probe's person {len(wrong)}; "
            f"server peak RSS {rss:.0f} MB"
        )
        if args.mixed:
            print(
                f"enrolments acknowledged {len(acked)}, refused (not one face) {len(refused)}; "
                f"gallery holds exactly what was acknowledged: {exact}"
            )
        if wrong:
            print("first wrong answer:", wrong[0])
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
