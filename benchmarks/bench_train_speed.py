"""Training speed on this machine's cores: one process with all threads vs data-parallel processes.

    .venv/bin/python benchmarks/bench_train_speed.py --data ../shared/data/pubfig83/train --steps 200

Runs ``facegallery train`` for a fixed number of steps with each layout, one after the other, and
reads the training loop's own clock from the checkpoint (data loading and the final validation
excluded). Same recipe, same global batch (P x K = 32 x 4) in every layout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

LAYOUTS = {"1 process x 2 threads": ["--threads", "2"], "2 processes x 1 thread": ["--procs", "2", "--threads", "1"]}


def run(data: str, steps: int, flags: list[str]) -> float:
    """Steps per second of one short training run with ``flags``."""
    out = Path(tempfile.mkdtemp()) / "m"
    cmd = [
        sys.executable,
        "-m",
        "facegallery",
        "train",
        "--data",
        data,
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--eval-every",
        str(10 * steps),
        *flags,
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = json.loads((out / "config.json").read_text())
    return steps / cfg["train_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FACEGALLERY_TRAIN", "../shared/data/pubfig83/train"))
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print("| layout | steps/s | photos/s |")
    print("|---|---|---|")
    for name, flags in LAYOUTS.items():
        rate = run(args.data, args.steps, flags)
        print(f"| {name} | {rate:.2f} | {128 * rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
