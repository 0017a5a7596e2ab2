"""``facegallery train``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from facegallery.cli import main
from facegallery.errors import UserError


@main.command("train")
@click.option(
    "--data",
    required=True,
    multiple=True,
    type=click.Path(file_okay=False),
    help="Folder per identity; repeat to pool several (the same folder name is the same person).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Checkpoint folder to write.")
@click.option("--model", "arch", help="Architecture from the registry, trained from scratch (default resface64).")
@click.option(
    "--init",
    help="Fine-tune this model (shipped name, e.g. dlib-resnet29-v1, or checkpoint folder) instead of "
    "training from scratch; it keeps its input template, crop and flip averaging.",
)
@click.option(
    "--train-layers",
    type=click.Choice(["all", "last", "head"]),
    default="all",
    show_default=True,
    help="What trains: every layer, the last stage and the head, or the head alone.",
)
@click.option("--teacher", help="Distil this model's embeddings into the network (computed once, cached).")
@click.option(
    "--distill-weight",
    type=float,
    help="Weight of the distance to the teacher's embedding (1 with --teacher, unless --relation-weight).",
)
@click.option(
    "--relation-weight",
    type=float,
    help="Weight of matching the teacher's cosine similarities between the batch's photos (relational "
    "distillation; needs --teacher).",
)
@click.option(
    "--recipe",
    type=click.Choice(["facenet", "original"]),
    default="facenet",
    show_default=True,
    help="'original' = the student project's recipe (random triplets, summed loss, Adam 1e-3).",
)
@click.option("--steps", type=click.IntRange(1), help="Train exactly this many steps.")
@click.option(
    "--budget",
    help="Or a time budget (45m, 1.5h): the step count is fixed by timing steps 10-30 "
    "and re-fixed at validations when the pace changes.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--miner", type=click.Choice(["batch-hard", "semi-hard", "random"]), help="Triplet mining.")
@click.option("--p", "p", type=int, help="Identities per batch.")
@click.option("--k", "k", type=int, help="Photos per identity per batch.")
@click.option("--margin", type=float, help="Triplet margin (0.2).")
@click.option("--cosface-weight", type=float, help="Weight of the CosFace term; 0 = triplet loss alone.")
@click.option("--triplet-weight", type=float, help="Weight of the triplet term; 0 = CosFace alone.")
@click.option("--cosface-margin", type=float, help="Additive cosine margin of the CosFace term (0.35).")
@click.option("--cosface-scale", type=float, help="Scale (inverse temperature) of the CosFace term (30).")
@click.option("--spread-weight", type=float, help="Weight of the spread-out (GOR) regulariser; 0 = off.")
@click.option("--lr", type=float)
@click.option("--weight-decay", type=float)
@click.option("--no-augment", is_flag=True, help="Switch augmentation off.")
@click.option(
    "--strong-augment/--basic-augment",
    default=None,
    help="Strong (default): colour, grey, wider scale and random erasing on top of the basic flips, "
    "shifts, rotations and brightness.",
)
@click.option("--crop", type=float, help="Central fraction of each photo fed to the network (default 0.75; 1.0 = all).")
@click.option("--bf16", is_flag=True, help="bfloat16 autocast for the forward pass (CPU or GPU).")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to train: auto takes a CUDA GPU when PyTorch sees one (with --procs or torchrun, one GPU a process).",
)
@click.option("--threads", type=int, default=0, help="CPU threads per process (0 = all cores, shared out).")
@click.option(
    "--procs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Data-parallel training processes on this machine (DDP over gloo); P must divide evenly. "
    "For several machines use torchrun.",
)
@click.option(
    "--val-impostors",
    type=click.IntRange(0),
    help="Identities held out entirely to calibrate the unknown threshold (8, or a fifth of the "
    "identities when fewer than 40); 0 trains on every identity and calibrates from the "
    "held-out photos alone (a genuine acceptance rate).",
)
@click.option(
    "--accept-rate",
    type=click.FloatRange(0, 1, min_open=True),
    help="With --val-impostors 0: the fraction of held-out genuine photos the unknown threshold accepts (0.8).",
)
@click.option("--eval-every", type=int, help="Validate every N steps.")
@click.option("--patience", type=int, help="Stop after N validations without improvement.")
@click.option("--resume", is_flag=True, help="Continue OUT/last where it stopped.")
@click.option("--force", is_flag=True, help="Replace a model already trained in OUT.")
@click.option("--cache", type=click.Path(file_okay=False), help="Pixel cache folder (default: user cache).")
def train_cmd(
    data,
    out,
    arch,
    init,
    train_layers,
    teacher,
    distill_weight,
    relation_weight,
    recipe,
    steps,
    budget,
    seed,
    miner,
    p,
    k,
    margin,
    cosface_weight,
    triplet_weight,
    cosface_margin,
    cosface_scale,
    spread_weight,
    lr,
    weight_decay,
    no_augment,
    strong_augment,
    crop,
    bf16,
    device,
    threads,
    procs,
    val_impostors,
    accept_rate,
    eval_every,
    patience,
    resume,
    force,
    cache,
) -> None:
    """Train an embedding network with the triplet loss; writes OUT (best model) and OUT/last."""
    from facegallery.checkpoints import CONFIG
    from facegallery.training import TrainConfig, parse_duration, train_processes

    if steps is not None and budget:
        raise UserError("give --steps or --budget, not both")
    if init and recipe == "original":
        raise UserError("--init fine-tunes with the facenet recipe; the original recipe trains seed-cnn from scratch")
    if init and crop is not None:
        raise UserError("--crop: a fine-tuned model reads photos as the model it starts from (drop --crop)")
    if init and arch:
        _check_init_arch(init, arch)
    data = list(data)
    if not resume and not force and (Path(out) / CONFIG).is_file():
        raise UserError(f"{out}: holds a trained model already; --resume continues it, --force replaces it")
    given = {
        "miner": miner,
        "p": p,
        "k": k,
        "margin": margin,
        "cosface_weight": cosface_weight,
        "triplet_weight": triplet_weight,
        "cosface_margin": cosface_margin,
        "cosface_scale": cosface_scale,
        "spread_weight": spread_weight,
        "lr": lr,
        "weight_decay": weight_decay,
        "crop": crop,
        "val_impostors": val_impostors,
        "accept_rate": accept_rate,
        "eval_every": eval_every,
        "patience": patience,
        "teacher": teacher,
        "distill_weight": distill_weight
        if distill_weight is not None
        else (1.0 if teacher and relation_weight is None else None),
        "relation_weight": relation_weight,
    }
    kw = {key: v for key, v in given.items() if v is not None}
    if val_impostors is None and not resume:  # the default 8 would leave a small folder few people to train on
        from facegallery.datasets import discover_roots

        people = len(discover_roots(data).names)
        if people < 40:
            kw["val_impostors"] = max(1, people // 5)
            click.echo(
                f"facegallery: {people} identities: holding out {kw['val_impostors']} to calibrate "
                "the unknown threshold (--val-impostors)",
                err=True,
            )
    if no_augment:
        kw["augment"] = False
    if strong_augment is not None:
        kw["strong_augment"] = strong_augment
    budget_s = parse_duration(budget) if budget else None
    common = dict(
        steps=steps,
        budget_s=budget_s,
        seed=seed,
        bf16=bf16,
        device=device,
        threads=threads,
        cache=cache,
        train_layers=train_layers,
        **kw,
    )
    if len(data) == 1:
        data = data[0]  # one root is recorded as before
    if init:
        cfg = TrainConfig.fine_tune(data, out, init, **common)
    elif recipe == "original":
        cfg = TrainConfig.original(data, out, **({"arch": arch} if arch else {}), **common)
    else:
        cfg = TrainConfig(data=data, out=out, **({"arch": arch} if arch else {}), **common)
    path = train_processes(cfg, procs, resume=resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every process gets here
        click.echo(f"wrote {path}")


def _check_init_arch(init: str, arch: str) -> None:
    """``--model`` beside ``--init`` must name the starting model's own architecture and input size."""
    from facegallery.checkpoints import read_config
    from facegallery.embedder import checkpoint_folder, split_precision
    from facegallery.models import create_model

    config = read_config(checkpoint_folder(split_precision(init)[0]))
    want = create_model(arch)
    if config.get("arch") != arch:
        side = config.get("input_size", "?")
        raise UserError(
            f"--init {init}: a {config.get('arch')} network ({side}x{side} input), not --model {arch} "
            f"({want.input_size}x{want.input_size}); drop --model to fine-tune it"
        )


@main.command("quantize")
@click.argument("model")
@click.option(
    "--data",
    required=True,
    type=click.Path(file_okay=False),
    help="The folder per identity the model was trained on (calibration uses its training part).",
)
@click.option("--photos", type=click.IntRange(1), default=512, show_default=True, help="Calibration photos.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cache", type=click.Path(file_okay=False), help="Pixel cache folder (default: user cache).")
def quantize_cmd(model, data, photos, seed, cache) -> None:
    """Make a trained MODEL (checkpoint folder or shipped name) run as an int8 network: calibrates it on
    training photos and writes MODEL/int8.safetensors, used from then on unless MODEL@fp32 is asked for."""
    import numpy as np

    from facegallery import checkpoints, int8, quantization
    from facegallery.alignment import PUBFIG83, TEMPLATES
    from facegallery.datasets import Split, discover
    from facegallery.embedder import checkpoint_folder, load_size
    from facegallery.images import PixelCache
    from facegallery.models import create_model
    from facegallery.training import validation_set

    folder = checkpoint_folder(model)
    config = checkpoints.read_config(folder)
    tree = discover(data)
    if config.get("data_fingerprint") not in (None, tree.fingerprint()):
        click.echo(
            f"facegallery: warning: {data} is not the tree {folder.name} was trained on; calibrating on it anyway",
            err=True,
        )
    split = Split.from_json(config["split"]) if config.get("split") else Split((), ())
    train_part, holdout, impostors = split.parts(tree)
    net_size = int(create_model(config["arch"], **config.get("arch_kwargs", {})).input_size)
    size = load_size(net_size, float(config.get("crop", 1.0)))
    pix_cache = PixelCache(cache) if cache else PixelCache()
    # a network of an aligned template is calibrated on photos aligned as it reads them in training
    template = TEMPLATES.get(config.get("template", PUBFIG83.name))
    template = None if template is None or template.name == PUBFIG83.name else template
    pixels, train_part = train_part.load_pixels(size, pix_cache, template)
    calib = pixels[np.random.default_rng(seed).permutation(len(pixels))[:photos]]
    val = validation_set(
        pixels,
        train_part.labels,
        holdout,
        impostors,
        size,
        pix_cache,
        int(config.get("train_config", {}).get("seed", 0)),
        template,
    )
    info = int8.quantize_checkpoint(folder, calib, val, refresh_float=True, aligned=template is not None)
    click.echo(f"wrote {folder / quantization.INT8} ({len(calib)} calibration photos)")
    if val is not None:
        v32, v8, agree = info["validation_fp32"], info["validation_int8"], info["cosine_to_fp32"]
        opn = lambda v: "" if v["open"] is None else f" / {v['open']:.3f}"  # noqa: E731  (None: no impostors)
        click.echo(
            f"validation top-1{'' if v8['open'] is None else ' / open set'}: float {v32['top1']:.3f}{opn(v32)}, "
            f"int8 {v8['top1']:.3f}{opn(v8)} (threshold {v8['threshold']:.3f}); "
            f"embeddings of {agree['photos']} held-out photos: cosine to float mean {agree['mean']:.4f}, "
            f"min {agree['min']:.4f}"
        )
