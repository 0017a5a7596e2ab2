"""``facegallery train``."""
from __future__ import annotations

import os

import click

from facegallery.cli import main
from facegallery.training import TrainConfig, parse_duration, train_processes


@main.command("train")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Folder per identity.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Checkpoint folder to write.")
@click.option("--model", "arch", default="resface64", show_default=True, help="Architecture from the registry.")
@click.option("--recipe", type=click.Choice(["facenet", "original"]), default="facenet", show_default=True,
              help="'original' = the student project's recipe (random triplets, summed loss, Adam 1e-3).")
@click.option("--steps", type=int, help="Train exactly this many steps.")
@click.option("--budget", help="Or a time budget (45m, 1.5h): the step count is fixed by timing steps 10-30.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--miner", type=click.Choice(["batch-hard", "semi-hard", "random"]), help="Triplet mining.")
@click.option("--p", "p", type=int, help="Identities per batch.")
@click.option("--k", "k", type=int, help="Photos per identity per batch.")
@click.option("--margin", type=float, help="Triplet margin (0.2).")
@click.option("--cosface-weight", type=float, help="Weight of the CosFace term; 0 = triplet loss alone.")
@click.option("--triplet-weight", type=float, help="Weight of the triplet term; 0 = CosFace alone.")
@click.option("--spread-weight", type=float, help="Weight of the spread-out (GOR) regulariser; 0 = off.")
@click.option("--lr", type=float)
@click.option("--weight-decay", type=float)
@click.option("--no-augment", is_flag=True, help="Switch augmentation off.")
@click.option("--strong-augment/--basic-augment", default=None,
              help="Strong (default): colour, grey, wider scale and random erasing on top of the basic flips, "
                   "shifts, rotations and brightness.")
@click.option("--crop", type=float, help="Central fraction of each photo fed to the network (default 0.75; 1.0 = all).")
@click.option("--bf16", is_flag=True, help="bfloat16 autocast for the forward pass.")
@click.option("--threads", type=int, default=0, help="CPU threads per process (0 = all cores, shared out).")
@click.option("--procs", type=click.IntRange(1), default=1, show_default=True,
              help="Data-parallel training processes on this machine (DDP over gloo); P must divide evenly. "
                   "For several machines use torchrun.")
@click.option("--eval-every", type=int, help="Validate every N steps.")
@click.option("--patience", type=int, help="Stop after N validations without improvement.")
@click.option("--resume", is_flag=True, help="Continue OUT/last where it stopped.")
@click.option("--cache", type=click.Path(file_okay=False), help="Pixel cache folder (default: user cache).")
def train_cmd(data, out, arch, recipe, steps, budget, seed, miner, p, k, margin, cosface_weight, triplet_weight,
              spread_weight, lr, weight_decay, no_augment, strong_augment, crop, bf16, threads, procs, eval_every, patience, resume, cache) -> None:
    """Train an embedding network with the triplet loss; writes OUT (best model) and OUT/last."""
    given = {"miner": miner, "p": p, "k": k, "margin": margin, "cosface_weight": cosface_weight,
             "triplet_weight": triplet_weight, "spread_weight": spread_weight, "lr": lr,
             "weight_decay": weight_decay, "crop": crop, "eval_every": eval_every, "patience": patience}
    kw = {key: v for key, v in given.items() if v is not None}
    if no_augment:
        kw["augment"] = False
    if strong_augment is not None:
        kw["strong_augment"] = strong_augment
    budget_s = parse_duration(budget) if budget else None
    common = dict(steps=steps, budget_s=budget_s, seed=seed, bf16=bf16, threads=threads, cache=cache, **kw)
    if recipe == "original":
        cfg = TrainConfig.original(data, out, **({"arch": arch} if arch != "resface64" else {}), **common)
    else:
        cfg = TrainConfig(data=data, out=out, arch=arch, **common)
    path = train_processes(cfg, procs, resume=resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every process gets here
        click.echo(f"wrote {path}")
