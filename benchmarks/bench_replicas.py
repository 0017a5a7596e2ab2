"""Two service replicas on one PostgreSQL gallery, over loopback (issue 28, items 2, 5 and 6).

Starts a private PostgreSQL server (:mod:`facegallery.gallery.pgserver`: Debian's binaries, a Unix
socket) and two ``facegallery serve --gallery postgresql://...`` replicas (the shipped default model);
enrols ``--people`` PubFig83 people (3 photos each) through the first, then:

1. how long an enrolment through one replica takes to be answered by the other (5 new people, the
   other replica polled every 20 ms with a photo of the new person);
2. load: ``--requests`` from ``--clients`` clients spread over both replicas, one in ten an enrolment of
   a new photo: req/s, p50/p99, errors, and afterwards whether the database holds exactly what was
   acknowledged;
3. with ``--restart``: the same load while the PostgreSQL server is restarted once (stopped, 2 s down,
   started): answers during the outage must be 503 with a one-line JSON error, the replicas must log
   their reconnection, and no acknowledged write may be lost.

    python benchmarks/bench_replicas.py --requests 1000 --clients 16
    python benchmarks/bench_replicas.py --requests 1000 --clients 16 --restart
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from bench_service import PUBFIG, free_port

from facegallery.gallery.pgserver import new_database, private_server
from facegallery.gallery.store import open_store


def start_replica(gallery: str, keyfile: Path, log: Path, create: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "facegallery", "serve", "--gallery", gallery, "--port", str(port),
           "--api-key-file", str(keyfile), "--max-photos", "16"] + (["--create"] if create else [])  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"replica did not start: {log.read_text()[-500:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pubfig83", type=Path, default=PUBFIG)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--restart", action="store_true", help="restart PostgreSQL once during the load")
    args = ap.parse_args()

    people = sorted(p for p in (args.pubfig83 / "train").iterdir() if p.is_dir())
    tmp = Path(tempfile.mkdtemp(prefix="fg-replicas-"))
    keyfile = tmp / "keys.txt"
    key = subprocess.run(
        [sys.executable, "-m", "facegallery", "key", "--file", str(keyfile)], capture_output=True, text=True, check=True
    ).stdout.strip()
    headers = {"X-API-Key": key}
    with private_server() as pg:
        gallery = new_database(pg.url)
        a, url_a = start_replica(gallery, keyfile, tmp / "a.log", create=True)
        b, url_b = start_replica(gallery, keyfile, tmp / "b.log", create=False)
        urls = [url_a, url_b]
        try:
            for person in people[: args.people]:
                shots = sorted(person.glob("*.jpg"))[:3]
                files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in shots]
                httpx.post(f"{url_a}/v1/people/{person.name}/photos", files=files, headers=headers, timeout=120)
            # 1. an enrolment through A, answered by B
            delays = []
            for person in people[args.people : args.people + 5]:
                shots = sorted(person.glob("*.jpg"))
                probe = [("photos", ("probe.jpg", shots[5].read_bytes(), "image/jpeg"))]
                files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in shots[:3]]
                r = httpx.post(f"{url_a}/v1/people/{person.name}/photos", files=files, headers=headers, timeout=120)
                r.raise_for_status()
                t = time.perf_counter()
                while True:
                    ans = httpx.post(f"{url_b}/v1/identify", files=probe, headers=headers, timeout=120).json()
                    if ans["photos"][0]["faces"][0]["name"] == person.name:
                        break
                    time.sleep(0.02)
                delays.append(time.perf_counter() - t)
            print(
                f"enrolled through one replica, answered by the other after (includes one identify request): "
                f"{', '.join(f'{d * 1000:.0f} ms' for d in delays)}"
            )
            # 2./3. load over both replicas
            probe_person = people[0]
            probe = sorted(probe_person.glob("*.jpg"))[5].read_bytes()
            newcomers = people[args.people + 5 :]
            lock = threading.Lock()
            counter = iter(range(args.requests))
            lat, errors, outage, acked, refused, not_one_line = [], [], [], [], [], []

            def client(n: int) -> None:
                with httpx.Client(base_url=urls[n % 2], headers=headers, timeout=120) as c:
                    while True:
                        with lock:
                            i = next(counter, None)
                        if i is None:
                            return
                        t = time.perf_counter()
                        try:
                            if i % 10 == 9:
                                k = i // 10
                                person = newcomers[k % len(newcomers)]
                                photo = sorted(person.glob("*.jpg"))[k // len(newcomers)]
                                files = [("photos", (photo.name, photo.read_bytes(), "image/jpeg"))]
                                r = c.post(f"/v1/people/{person.name}/photos", files=files)
                            else:
                                r = c.post("/v1/identify", files=[("photos", ("probe.jpg", probe, "image/jpeg"))])
                        except httpx.TransportError as e:  # counted, and the next request goes on
                            with lock:
                                errors.append(("transport", repr(e)))
                            continue
                        with lock:
                            lat.append(time.perf_counter() - t)
                            if r.status_code == 503:
                                outage.append(r.json())
                                if set(r.json()) != {"error"} or "\n" in r.json()["error"]:
                                    not_one_line.append(r.text)
                            elif i % 10 == 9 and r.status_code in (200, 201):
                                acked.append((person.name, r.json()["added"]))
                            elif i % 10 == 9 and r.status_code == 422:
                                refused.append(person.name)
                            elif r.status_code != 200:
                                errors.append((r.status_code, r.text[:200]))

            def restart() -> None:
                while len(lat) < args.requests // 3:
                    time.sleep(0.05)
                pg.stop("fast")
                time.sleep(2)
                pg.start()

            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
            if args.restart:
                threads.append(threading.Thread(target=restart))
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            store = open_store(gallery)
            listed = {p.name: p.photos for p in store.people()}
            store.close()
            expected = {p.name: 3 for p in people[: args.people + 5]}
            for name, added in acked:
                expected[name] = expected.get(name, 0) + added
            expected = {k: v for k, v in expected.items() if v}
            ms = np.array(lat) * 1000
            cpu = next(
                (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
            )
            print(f"CPU {cpu}, {os.cpu_count()} cores; 2 replicas, {args.clients} clients, one in ten enrols")
            print(
                f"{len(lat)} requests in {wall:.1f} s: {len(lat) / wall:.1f} req/s; latency p50 "
                f"{np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms; errors other than 503: "
                f"{len(errors)} {errors[:2]}; 503 during the outage: {len(outage)} (not one line: {len(not_one_line)})"
            )
            print(
                f"enrolments acknowledged {len(acked)}, refused (not one face) {len(refused)}; "
                f"the database holds exactly what was acknowledged: {listed == expected}"
            )
            if args.restart:
                logs = (tmp / "a.log").read_text() + (tmp / "b.log").read_text()
                print(f"replicas logged their reconnection: {'reconnected' in logs}")
                print([line for line in logs.splitlines() if "reconnect" in line][:2])
        finally:
            for p in (a, b):
                p.terminate()
                p.wait(timeout=30)


if __name__ == "__main__":
    main()
