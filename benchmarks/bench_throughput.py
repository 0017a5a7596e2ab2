"""Embedding throughput (images/s) on a fixed number of CPU threads, inference, batch 256.

    .venv/bin/python benchmarks/bench_throughput.py --threads 1 --models resface64-pubfig83 seed-cnn dlib
    .venv/bin/python benchmarks/bench_throughput.py --threads 1 --unfolded --repeats 20   # fp32 unfolded/folded, int8
    .venv/bin/python benchmarks/bench_throughput.py --threads 2 --train-step   # fp32 vs bf16 autocast

Times only the embedder on decoded, resized pixels (decoding is cached separately by PixelCache).
'seed-cnn' means an untrained seed-cnn (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np
import torch

from facegallery import checkpoints, embedder
from facegallery.embedder import load_model
from facegallery.models import create_model


def _embedder(name: str):
    if name in ("seed-cnn", "resface64"):  # untrained architecture: same speed as trained
        folder = tempfile.mkdtemp()
        checkpoints.save_checkpoint(folder, create_model(name), {"arch": name})
        return load_model(folder)
    return load_model(name)


def measure(name: str, batch: int, repeats: int, flip: bool | None, fold: bool = True) -> tuple[float, int]:
    """Median images/s over ``repeats`` batches after one warm-up batch; ``fold=False`` times the network
    with its BatchNorm layers left unfolded (as before folding was added), for a side-by-side figure."""
    keep = embedder.fold_batchnorm
    if not fold:
        embedder.fold_batchnorm = lambda model: model.eval()
    try:
        e = _embedder(name)
    finally:
        embedder.fold_batchnorm = keep
    if flip is not None and hasattr(e, "flip"):
        e.flip = flip
    size = 150 if name == "dlib" else e.input_size
    pixels = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    e.embed(pixels, batch_size=batch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        e.embed(pixels, batch_size=batch)
        times.append(time.perf_counter() - t)
    return batch / float(np.median(times)), e.input_size


def train_step_s(arch: str, batch: int, bf16: bool, repeats: int) -> float:
    """Median seconds of one forward + backward + AdamW step of ``arch`` on a random batch."""
    net = create_model(arch).train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, net.input_size, net.input_size).contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(repeats + 2):  # two warm-up steps
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = net(x).float().square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models",
        nargs="+",
        default=["resface64-pubfig83@fp32", "resface64-pubfig83@int8", "seed-cnn"],
        help="Shipped names (NAME@fp32 / NAME@int8 for one precision), 'seed-cnn', 'resface64', 'dlib'.",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--unfolded", action="store_true", help="Also time the networks without BatchNorm folding.")
    ap.add_argument("--train-step", action="store_true", help="Time resface64 training steps, fp32 vs bf16.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s), batch {args.batch}, {time.strftime('%Y-%m-%d')}"
    )
    if args.train_step:
        print("| arch | batch | autocast | s/step |\n|---|---|---|---|")
        for bf16 in (False, True):
            sec = train_step_s("resface64", args.batch, bf16, args.repeats)
            print(f"| resface64 | {args.batch} | {'bf16' if bf16 else 'fp32'} | {sec:.3f} |")
        return
    print("| model | input | network | flip TTA | images/s |")
    print("|---|---|---|---|---|")
    for name in args.models:
        precision = getattr(_embedder(name), "precision", None)  # None: not a PyTorch network (dlib)
        for fold in [False, True] if precision == "fp32" and args.unfolded else [True]:
            for flip in [None] if name in ("dlib", "seed-cnn") else [False, True]:
                rate, size = measure(name, args.batch, args.repeats, flip, fold)
                network = (
                    "-"
                    if precision is None
                    else "int8"
                    if precision == "int8"
                    else f"fp32, BatchNorm {'folded' if fold else 'unfolded'}"
                )
                print(
                    f"| {name} | {size} | {network} | {'-' if flip is None else ('on' if flip else 'off')} | "
                    f"{rate:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
