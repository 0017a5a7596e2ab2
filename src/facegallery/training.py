"""The training loop: FaceNet-style metric learning with online mining, checkpoints and resume.

Two recipes share the loop:
- ``original``: the student project exactly (random triplets, summed triplet loss, Adam 1e-3,
  batch 128 triplets, no augmentation, no schedule);
- ``facenet``: P x K batches with online mining (batch-hard or semi-hard) plus an optional CosFace
  term, augmentation, warm-up + cosine schedule, weight decay, validation and best-model selection.

The facenet recipe also fine-tunes a trained model (``init``) instead of an untrained one: the
model it starts from decides the architecture, how photos are prepared (its alignment template, crop and
flip averaging), its normalisation statistics stay as they were, ``train_layers`` chooses what the
optimiser moves (all, the last stage and the head, the head alone), and it is validated before the first
step so that training must beat it to be kept. Several data roots pool their people by name; people with
one photo ride along for the classifier (and teacher) terms only. With a ``teacher`` the network also
learns from that model's embeddings of the same photos (computed once and cached, then centred): their
positions (``distill_weight``) or how alike it finds each pair of the batch (``relation_weight``).

The network, its head and each batch live on ``device`` (a CUDA GPU when there is one); batches are drawn
and augmented on the CPU, so a seed gives the same photos on any device.

Data-parallel over processes (torchrun or ``--procs``): every process draws the same P x K batch and
takes its share of the identities; mining and the losses are local to that share, DDP averages the
gradients; rank 0 validates and writes checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.proxy import TraceError

from facegallery import checkpoints, distributed, int8, quantization
from facegallery.alignment import PUBFIG83, TEMPLATES, Template
from facegallery.calibration import ACCEPT_RATE, Calibration, calibrate
from facegallery.datasets import (
    FaceFolder,
    PKSampler,
    Split,
    discover_roots,
    make_split,
    random_triplet_batch,
    require_pairs,
)
from facegallery.embedder import center_crop, checkpoint_folder, load_model, load_size, split_precision, to_tensor
from facegallery.errors import UserError
from facegallery.images import PixelCache
from facegallery.losses import CosFaceHead, relation_loss, spread_out_loss, triplet_loss
from facegallery.mining import MINERS
from facegallery.models import create_model


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored in the checkpoint."""

    data: str | list[str]  # one folder-per-person root, or several (pooled by person name)
    out: str
    arch: str = "resface64"
    init: str | None = None  # start from this model (shipped name or checkpoint folder): fine-tuning
    train_layers: str = "all"  # all | last (last stage + head) | head: what the optimiser updates
    teacher: str | None = None  # distil this model's embeddings (computed once, cached) into the network
    distill_weight: float = 0.0  # weight of the squared distance to the teacher's embedding; 0 = off
    relation_weight: float = 0.0  # weight of matching the teacher's in-batch cosine similarities; 0 = off
    recipe: str = "facenet"  # facenet | original
    steps: int | None = None  # fixed length; or derived from ``budget_s`` after a warm-up
    budget_s: float | None = None
    seed: int = 0
    miner: str = "batch-hard"  # batch-hard | semi-hard | random
    p: int = 32
    k: int = 4
    margin: float = 0.2
    reduction: str = "mean"  # mean | sum
    triplet_weight: float = 1.0  # 0 switches the triplet term off (CosFace alone, for ablation)
    cosface_weight: float = 1.0  # 0 switches the CosFace term off
    cosface_scale: float = 30.0
    cosface_margin: float = 0.35
    spread_weight: float = 0.0  # weight of the spread-out (GOR) term; 0 = off
    lr: float = 2e-3
    weight_decay: float = 5e-2
    warmup: int = 200
    schedule: str = "cosine"  # cosine | constant
    augment: bool = True
    strong_augment: bool = True  # measured: +3 top-1, +6 new-people 5-shot at 2,500 steps (RESULTS.md 3a)
    holdout: str = "last"  # which photos validate: each identity's last-numbered, or random
    crop: float = 0.75  # central fraction of each photo fed to the network (+3 top-1 vs 1.0)
    tta_flip: bool = True
    val_impostors: int = 8  # 0: train on every identity; the threshold then accepts ``accept_rate``
    accept_rate: float = ACCEPT_RATE  # of the held-out genuine photos (calibration.py)
    val_fraction: float = 0.1
    eval_every: int = 250
    patience: int = 0  # evaluations without improvement before stopping; 0 = never
    checkpoint_every: int = 100
    bf16: bool = False  # bfloat16 autocast of the network's forward pass, on the CPU or the GPU
    device: str = "auto"  # auto (a CUDA GPU when PyTorch sees one) | cpu | cuda
    threads: int = 0  # 0 = all cores
    cache: str | None = None
    arch_kwargs: dict = field(default_factory=dict)

    @classmethod
    def original(cls, data: str, out: str, **kw) -> TrainConfig:
        """The student project's recipe, as faithful as the registry allows."""
        base = dict(
            arch="seed-cnn",
            recipe="original",
            miner="random",
            reduction="sum",
            cosface_weight=0.0,
            lr=1e-3,
            weight_decay=0.0,
            warmup=0,
            schedule="constant",
            augment=False,
            strong_augment=False,
            crop=1.0,
            tta_flip=False,
        )
        base.update(kw)
        return cls(data=data, out=out, **base)

    @classmethod
    def fine_tune(cls, data: str | list[str], out: str, init: str, **kw) -> TrainConfig:
        """Defaults for starting from a trained model: FaceNet's triplet loss with semi-hard mining
        alone (a new classifier head would first pull a good embedding towards random proxies), a
        learning rate a twentieth of training from scratch for the whole network (larger when only the
        last stage or the head trains), a short warm-up and light weight decay."""
        layers = kw.get("train_layers", "all")
        # the fewer layers train, the less there is to forget: larger steps for the last stage and the head
        lr = {"all": 1e-4, "last": 3e-4, "head": 1e-3}.get(layers, 1e-4)
        base = dict(init=init, miner="semi-hard", cosface_weight=0.0, lr=lr, warmup=50, weight_decay=5e-4)
        base.update(kw)
        return cls(data=data, out=out, **base)


#: What ``train_layers`` may say: which of the network's stages (``model.stages()``) train.
TRAIN_LAYERS = ("all", "last", "head")


#: What ``TrainConfig.device`` may say.
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """The device a run trains on: ``auto`` takes a CUDA GPU when this PyTorch sees one."""
    if name not in DEVICES:
        raise UserError(f"unknown --device {name!r} ({' | '.join(DEVICES)})")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: this PyTorch sees no CUDA GPU (a CPU build, or no driver); use --device cpu")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def _clock() -> float:
    """Seconds for the training clock (a function so that tests can drive it)."""
    return time.time()


def parse_duration(text: str) -> float:
    """'45m', '90s', '1.5h' or plain seconds -> seconds."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except (ValueError, IndexError):
        raise UserError(f"{text!r}: not a duration (use e.g. 45m, 90s, 1.5h)") from None


def augment_batch(x: torch.Tensor, gen: torch.Generator, strong: bool = False) -> torch.Tensor:
    """Random flip, scale 0.9-1.1, shift +-6%, rotation +-10 degrees, brightness/contrast +-20%.

    ``strong`` widens scale to 0.8-1.2 and adds per-channel colour gains (+-10%), grey (10%) and
    random erasing of one rectangle (50%, 2-20% of the area): photos of a person taken at other
    times differ in exactly these ways (lighting, colour, occlusion by glasses, hands, hair)."""
    n = x.shape[0]
    u = lambda lo, hi: torch.rand(n, generator=gen) * (hi - lo) + lo  # noqa: E731
    ang = u(-10, 10) * math.pi / 180
    s = u(0.8, 1.2) if strong else u(0.9, 1.1)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.cos(ang) / s * flip
    theta[:, 0, 1] = -torch.sin(ang) / s
    theta[:, 1, 0] = torch.sin(ang) / s * flip
    theta[:, 1, 1] = torch.cos(ang) / s
    theta[:, 0, 2] = u(-0.06, 0.06)
    theta[:, 1, 2] = u(-0.06, 0.06)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.8, 1.2)[:, None, None, None] + mean * u(0.8, 1.2)[:, None, None, None]
    if strong:
        x = x * (torch.rand(n, 3, 1, 1, generator=gen) * 0.2 + 0.9)
        grey = torch.rand(n, generator=gen) < 0.1
        x[grey] = x[grey].mean(1, keepdim=True).expand(-1, 3, -1, -1)
        h, w = x.shape[2:]
        area, aspect = u(0.02, 0.2), torch.exp(u(math.log(0.3), math.log(3.3)))
        eh = (torch.sqrt(area * aspect) * h).clamp(1, h).long()
        ew = (torch.sqrt(area / aspect) * w).clamp(1, w).long()
        erase = torch.rand(n, generator=gen) < 0.5
        for i in torch.nonzero(erase).flatten().tolist():
            top = int(torch.randint(0, h - int(eh[i]) + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - int(ew[i]) + 1, (1,), generator=gen))
            x[i, :, top : top + eh[i], left : left + ew[i]] = torch.rand(3, 1, 1, generator=gen)
    return x.clamp_(0, 1)


def validation_set(
    train_pixels: np.ndarray,
    train_labels: np.ndarray,
    hold: FaceFolder,
    imp: FaceFolder,
    size: int,
    cache: PixelCache,
    seed: int,
    template: Template | None = None,
) -> dict | None:
    """A fixed, modest validation set: up to 20 training photos per identity as the gallery, every
    held-out photo as a genuine probe, up to 40 photos per impostor identity (photos at side ``size``)."""
    if len(hold) == 0:
        return None
    rng = np.random.default_rng(seed + 3)
    gal = np.concatenate(
        [rng.permutation(np.flatnonzero(train_labels == l))[:20] for l in range(int(train_labels.max()) + 1)]
    )
    imp_idx = (
        np.concatenate([rng.permutation(np.flatnonzero(imp.labels == l))[:40] for l in range(len(imp.names))])
        if len(imp)
        else np.zeros(0, int)
    )
    hp, hold = hold.load_pixels(size, cache, template)
    ip, _ = (
        imp.subset(imp_idx).load_pixels(size, cache, template)
        if len(imp_idx)
        else (np.zeros((0, size, size, 3), np.uint8), None)
    )
    return {
        "gallery": train_pixels[gal],
        "gallery_labels": train_labels[gal],
        "genuine": hp,
        "genuine_labels": hold.labels,
        "impostors": ip,
    }


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 1% (or constant)."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant" or total <= cfg.warmup:
        return cfg.lr
    t = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def command_line() -> str | None:
    """This process's command as a user would type it (``python -m facegallery`` and torchrun's
    ``-m facegallery`` show as ``facegallery``)."""
    if not sys.argv or not sys.argv[0]:
        return None
    prog = "facegallery" if sys.argv[0].endswith("__main__.py") else sys.argv[0]
    return " ".join(shlex.quote(a) for a in [prog, *sys.argv[1:]])


def initial_model(cfg: TrainConfig) -> tuple[nn.Module, dict | None]:
    """The network to train: the registry's untrained ``cfg.arch``, or the model ``cfg.init`` names
    (a shipped name or a checkpoint folder) with its weights, and that model's config."""
    if not cfg.init:
        return create_model(cfg.arch, **cfg.arch_kwargs), None
    folder = checkpoint_folder(split_precision(cfg.init)[0])
    config = checkpoints.read_config(folder)
    arch = config.get("arch", "")
    model = create_model(arch, **config.get("arch_kwargs", {}))
    side = config.get("input_size", model.input_size)
    if int(side) != int(model.input_size):
        raise UserError(f"{cfg.init}: a checkpoint for {side}x{side} input, but {arch} reads {model.input_size}")
    try:
        model.load_state_dict(checkpoints.load_weights(folder))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"{folder}: weights do not fit architecture {arch!r} ({first})") from None
    return model, config


def freeze(model: nn.Module, layers: str) -> list[nn.Parameter]:
    """Leave only the ``layers`` (all | last | head) of ``model.stages()`` trainable; returns their
    parameters. Frozen parameters get no gradient, so their backward pass is never computed."""
    if layers not in TRAIN_LAYERS:
        raise UserError(f"unknown --train-layers {layers!r} ({' | '.join(TRAIN_LAYERS)})")
    if layers == "all":
        return list(model.parameters())
    if not hasattr(model, "stages"):
        raise UserError(f"--train-layers {layers}: {type(model).__name__} has no stages to choose from; use all")
    stages = model.stages()
    model.requires_grad_(False)
    chosen = stages[-1:] if layers == "head" else stages[-2:]
    for part in chosen:
        part.requires_grad_(True)
    return [q for part in chosen for q in part.parameters()]


def teacher_embeddings(teacher: str, train: FaceFolder, cache: PixelCache, log: Callable[[str], None]) -> np.ndarray:
    """The ``teacher`` model's embeddings of every training photo, in row order: computed once (photos
    prepared for the teacher's own template, flip averaging as it ships) and kept in the cache folder,
    keyed by the teacher's fingerprint and the photos."""
    embedder = load_model(teacher)
    h = hashlib.sha1(embedder.fingerprint.encode())
    for path in train.paths:
        h.update(str(path).encode() + b"\0")
    entry = cache.root / "teacher" / f"{h.hexdigest()[:24]}.npy"  # inside the cache folder given
    cached = PixelCache.read(entry)
    if cached is not None and cached.shape[0] == len(train):
        log(f"teacher: {embedder.name} embeddings of {len(train)} photos read from {entry}")
        return cached
    t0 = time.time()
    out = np.zeros((len(train), int(embedder.spec["embedding_dim"])), np.float32)
    size = embedder.input_size
    for start in range(0, len(train), 1024):
        part = train.subset(np.arange(start, min(start + 1024, len(train))))
        pixels, kept = part.load_pixels(size, cache, embedder.template)
        if len(kept) != len(part):
            raise UserError(f"{train.root}: a training photo became unreadable while the teacher embedded it")
        out[start : start + len(part)] = embedder.embed(pixels)
    PixelCache.write(entry, out)
    log(f"teacher: {embedder.name} embedded {len(train)} photos in {time.time() - t0:.0f}s (cached at {entry})")
    return out


def centred(emb: np.ndarray) -> np.ndarray:
    """Unit embeddings less their mean, renormalised: the teacher's targets. dlib's embeddings of
    strangers lie in a narrow cone (cosine 0.84 +- 0.04 over PubFig83 + CelebA10k), so matching them
    as they are mostly teaches the cone; centred, strangers are near-orthogonal (0.00 +- 0.20) while one
    person's photos stay alike (~0.6), and what the student must learn is who is who."""
    out = emb - emb.mean(0, keepdims=True)
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class FaceNetRecipe:
    """P x K batches of whole identities, online mining (``cfg.miner``), AdamW with no decay on biases and
    norms."""

    name = "facenet"

    def optimizer(self, params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
        decay = [p for p in params if p.ndim > 1]
        rest = [p for p in params if p.ndim <= 1]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=cfg.lr
        )

    def check(self, sampler: PKSampler, processes: int) -> None:
        if processes > 1 and sampler.p % processes:
            raise UserError(f"P = {sampler.p} identities per batch do not split evenly over {processes} processes")

    def rows(self, trainer: Trainer) -> tuple[np.ndarray, int]:
        """This process's rows of a batch every process draws alike, and how many of the first rows
        the triplets are mined among: whole identities (P groups of 2-K photos) shared out in
        contiguous runs, then its share of the one-photo people (classifier and teacher terms only)."""
        groups, singles = trainer.sampler.groups()
        mine = np.concatenate(trainer.share(groups))
        return np.concatenate([mine, trainer.share(singles)]), len(mine)

    def triplets(self, emb: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, ...]:
        ia, ip, ineg = MINERS[cfg.miner](emb, y, cfg.margin)
        return emb[ia], emb[ip], emb[ineg]


class OriginalRecipe(FaceNetRecipe):
    """The student project's: random (anchor, positive, negative) rows, Adam."""

    name = "original"

    def optimizer(self, params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=cfg.lr)

    def check(self, sampler: PKSampler, processes: int) -> None:
        pass  # triplets split over processes whatever P is

    def rows(self, trainer: Trainer) -> tuple[np.ndarray, int]:
        cfg = trainer.cfg
        rows = trainer.share(random_triplet_batch(trainer.labels, cfg.p * cfg.k, trainer.rng)).reshape(-1)
        return rows, len(rows)  # triplets stay together: rows a, p, n

    def triplets(self, emb: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, ...]:
        e = emb.view(-1, 3, emb.shape[1])
        return e[:, 0], e[:, 1], e[:, 2]


#: The training recipes by name (``TrainConfig.recipe``).
RECIPES: dict[str, FaceNetRecipe] = {r.name: r for r in (FaceNetRecipe(), OriginalRecipe())}


class Objective(nn.Module):
    """The embedding network and the CosFace head as one module (so DDP keeps both in step):
    ``(photos, labels) -> (unit embeddings, CosFace loss or 0)``."""

    def __init__(self, model: nn.Module, head: CosFaceHead | None, bf16: bool = False):
        super().__init__()
        self.model, self.head, self.bf16 = model, head, bf16

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            emb = self.model(x)
        emb = emb.float()
        return emb, (self.head(emb, y) if self.head is not None else emb.new_zeros(()))


class Trainer:
    """Holds the data, model, optimizer and RNGs of one run; ``run()`` trains, evaluates, saves."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = print):
        self.cfg, self.log = cfg, log
        if cfg.recipe not in RECIPES:
            raise UserError(f"unknown recipe {cfg.recipe!r} ({' or '.join(RECIPES)})")
        self.recipe = RECIPES[cfg.recipe]
        if cfg.miner not in MINERS:
            raise UserError(f"unknown miner {cfg.miner!r}; known: {', '.join(MINERS)}")
        if cfg.steps is None and cfg.budget_s is None:
            raise UserError("give --steps or --budget")
        if (cfg.distill_weight > 0 or cfg.relation_weight > 0) and not cfg.teacher:
            raise UserError("--distill-weight and --relation-weight need --teacher MODEL")
        device = resolve_device(cfg.device)
        self.world = distributed.join("nccl" if device.type == "cuda" else "gloo")
        # one GPU per process (torchrun's LOCAL_RANK); the CPU is one device for every process
        self.device = torch.device("cuda", self.world.local_rank) if device.type == "cuda" else device
        if not self.world.main:
            self.log = lambda s: None
        torch.manual_seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        elif self.world.size > 1:  # 0 = all cores, shared out between the processes
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.world.size))
        self.model, self.init_config = initial_model(cfg)
        self.model.to(self.device)  # before ``freeze`` lists the parameters the optimiser moves
        if self.init_config is not None:  # the network reads photos as the model it starts from did
            init = self.init_config
            cfg = self.cfg = replace(
                cfg,
                arch=init["arch"],
                arch_kwargs=init.get("arch_kwargs", {}),
                crop=float(init.get("crop", 1.0)),
                tta_flip=bool(init.get("tta_flip", False)),
            )
        self.template = TEMPLATES[(self.init_config or {}).get("template", PUBFIG83.name)]
        self.trainable = freeze(self.model, cfg.train_layers)
        self.net_size = int(self.model.input_size)
        self.size = load_size(self.net_size, cfg.crop)  # photos load at this side, then are cropped
        self.roots = [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)
        folder = discover_roots(self.roots)
        require_pairs(self.roots, folder)
        self.fingerprint = folder.fingerprint()
        if cfg.val_impostors > len(folder.names) // 4 and self.world.main:
            warnings.warn(
                f"{', '.join(map(str, self.roots))}: --val-impostors {cfg.val_impostors} holds out "
                f"{cfg.val_impostors} of {len(folder.names)} identities: training on "
                f"{len(folder.names) - cfg.val_impostors}",
                stacklevel=2,
            )
        self.split = (
            make_split(folder, cfg.val_impostors, cfg.val_fraction, cfg.seed, cfg.holdout)
            if (cfg.val_impostors or cfg.val_fraction)
            else Split((), ())
        )
        train, hold, imp = self.split.parts(folder)
        self.names = train.names
        cache = PixelCache(cfg.cache) if cfg.cache else PixelCache()
        t0 = time.time()
        if not self.world.main:
            self.world.barrier()  # rank 0 decodes (and caches) the photos first
        self.pixels, self.train = train.load_pixels(self.size, cache, self.template)
        self.labels = self.train.labels
        self.teacher = centred(teacher_embeddings(cfg.teacher, self.train, cache, self.log)) if cfg.teacher else None
        self.val = self._val_data(hold, imp, cache) if self.world.main else None
        if self.world.main:
            self.world.barrier()
        self.log(
            f"data: {len(self.train)} photos of {len(self.names)} identities for training "
            f"({time.time() - t0:.0f}s to load); validation: {len(hold)} held-out photos, "
            f"{len(imp.names)} impostor identities"
        )
        self.head = (
            CosFaceHead(128, len(self.names), cfg.cosface_scale, cfg.cosface_margin) if cfg.cosface_weight > 0 else None
        )
        if self.head is not None:
            self.head.to(self.device)
        params = self.trainable + (list(self.head.parameters()) if self.head else [])
        self.opt = self.recipe.optimizer(params, cfg)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.objective: nn.Module = Objective(self.model, self.head, cfg.bf16)
        if self.world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.objective = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)
        self.rng = np.random.default_rng(cfg.seed)
        # one-photo people ride along for the terms that can use them, in proportion to their photos
        counts = np.bincount(self.labels, minlength=len(self.names))
        share = counts[counts == 1].sum() / max(1, len(self.labels))
        singles = int(round(cfg.p * cfg.k * share)) if (self.head is not None or self.teacher is not None) else 0
        self.sampler = PKSampler(self.labels, cfg.p, cfg.k, cfg.seed + 1, singles=min(singles, cfg.p * cfg.k // 2))
        self.recipe.check(self.sampler, self.world.size)
        # every rank draws the same batches (then takes its share) but augments its own photos
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 2 + 7919 * self.world.rank)
        self.step, self.total = 0, cfg.steps
        self.best: tuple[float, dict] | None = None
        self.history: list[dict] = []
        self.replans: list[list[int]] = []  # [step, new total] whenever a budget run re-fixed its length
        self.train_seconds = 0.0
        self.train_mode()
        if resume:
            self._resume()

    # ----- data -------------------------------------------------------------------------------
    def _val_data(self, hold: FaceFolder, imp: FaceFolder, cache: PixelCache) -> dict | None:
        return validation_set(self.pixels, self.labels, hold, imp, self.size, cache, self.cfg.seed, self.template)

    @torch.inference_mode()
    def _embed(self, pixels: np.ndarray) -> np.ndarray:
        self.model.eval()
        out = []
        for i in range(0, len(pixels), 256):
            x = center_crop(to_tensor(pixels[i : i + 256]), self.net_size)
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            e = self.model(x)
            if self.cfg.tta_flip:
                e = F.normalize(e + self.model(x.flip(3)), dim=1)
            out.append(e.float().cpu().numpy())
        self.train_mode()
        return np.concatenate(out) if out else np.zeros((0, 128), np.float32)

    def validate(self) -> Calibration | None:
        """Closed-set top-1 and calibrated open-set accuracy on the validation split."""
        if self.val is None:
            return None
        v = self.val
        return calibrate(
            self._embed(v["gallery"]),
            v["gallery_labels"],
            len(self.names),
            self._embed(v["genuine"]),
            v["genuine_labels"],
            self._embed(v["impostors"]),
            self.cfg.accept_rate,
        )

    def train_mode(self) -> None:
        """Training mode, except that a network started from a trained model keeps its normalisation
        statistics: batches of a few people would otherwise shift what the whole network was fitted to."""
        self.model.train()
        if self.init_config is not None:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    # ----- one step ---------------------------------------------------------------------------
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, int]:
        rows, mined = self.recipe.rows(self)
        x = to_tensor(self.pixels[rows])
        if self.cfg.augment:
            x = augment_batch(x, self.aug_gen, self.cfg.strong_augment)
        x = center_crop(x, self.net_size).to(
            self.device, non_blocking=True
        )  # augmented on the CPU: same draws anywhere
        y = torch.from_numpy(self.labels[rows]).to(self.device)
        return x.contiguous(memory_format=torch.channels_last), y, rows, mined

    def share(self, items: np.ndarray | list) -> np.ndarray | list:
        """This rank's contiguous share of a batch drawn identically on every rank."""
        n, w, r = len(items), self.world.size, self.world.rank
        return items[r * n // w : (r + 1) * n // w]

    def train_step(self) -> dict:
        cfg = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, self.total or 1, cfg)
        x, y, rows, mined = self._batch()
        emb, c_loss = self.objective(x, y)
        a, p, n = self.recipe.triplets(emb[:mined], y[:mined], cfg)
        t_loss = triplet_loss(a, p, n, cfg.margin, cfg.reduction)
        loss = cfg.triplet_weight * t_loss
        if self.head is not None:
            loss = loss + cfg.cosface_weight * c_loss
        d_loss = r_loss = emb.new_zeros(())
        if self.teacher is not None:
            target = torch.from_numpy(self.teacher[rows]).to(self.device)
            if cfg.distill_weight > 0:
                d_loss = ((emb - target) ** 2).sum(1).mean()
                loss = loss + cfg.distill_weight * d_loss
            if cfg.relation_weight > 0:
                r_loss = relation_loss(emb, target)
                loss = loss + cfg.relation_weight * r_loss
        s_loss = emb.new_zeros(())
        if cfg.spread_weight > 0:
            s_loss = spread_out_loss(emb, y)
            loss = loss + cfg.spread_weight * s_loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        with torch.no_grad():
            spread = float(torch.cdist(emb, emb).mean())
        return {
            "loss": loss.item(),
            "triplet": t_loss.item(),
            "cosface": c_loss.item(),
            "gor": s_loss.item(),
            "distill": d_loss.item(),
            "relation": r_loss.item(),
            "spread": spread,
        }

    # ----- checkpoints ------------------------------------------------------------------------
    def config_json(self, cal: Calibration | None) -> dict:
        cfg = self.cfg
        return {
            "name": Path(cfg.out).name,
            "arch": cfg.arch,
            "template": self.template.name,
            "init": self.init_summary(),
            "arch_kwargs": cfg.arch_kwargs,
            "input_size": self.net_size,
            "crop": cfg.crop,
            "embedding_dim": 128,
            "tta_flip": cfg.tta_flip,
            "label_map": self.names,
            "data_fingerprint": self.fingerprint,
            "steps": self.step,
            "total_steps": self.total,
            "train_seconds": round(self.train_seconds, 1),
            "train_config": asdict(cfg),
            "split": self.split.to_json(),
            "history": self.history,
            "threshold": cal.threshold if cal else None,
            "validation": asdict(cal) if cal else None,
            "command": command_line(),
            "replans": self.replans,
            "torch": torch.__version__,
            "processes": self.world.size,
            "device": self.device.type,
            # the model card: what it read and under whose terms (the data's own terms carry over)
            "training_data": f"{', '.join(map(str, self.roots))}: {len(self.names)} people, data fingerprint "
            f"{self.fingerprint}"
            + (f"; on top of {init['name']}: {init.get('training_data')}" if (init := self.init_config) else ""),
            "licence": "the training photos' terms apply"
            + (f"; the starting model's: {init.get('licence')}" if init else ""),
            "normalisation": (init or {}).get("normalisation", "RGB / 255"),
        }

    def init_summary(self) -> dict | None:
        """What a fine-tuned model started from (None when trained from scratch)."""
        if self.init_config is None:
            return None
        return {"model": self.cfg.init, "name": self.init_config.get("name"), "train_layers": self.cfg.train_layers}

    def _state(self, aug_states: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        st: dict[str, torch.Tensor] = {}
        for pid, s in self.opt.state_dict()["state"].items():
            for k, v in s.items():
                st[f"opt.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().clone()
        if self.head is not None:
            st["head.weight"] = self.head.weight.detach().cpu().clone()
        st["rng.torch"] = torch.get_rng_state()
        if len(aug_states) == 1:
            st["rng.aug"] = aug_states[0]
        else:
            st.update({f"rng.aug.{r}": a for r, a in enumerate(aug_states)})
        return st

    def save_last(self) -> None:
        """Write OUT/last to resume from (collective: every rank calls it, rank 0 writes)."""
        aug_states = self.world.gather(self.aug_gen.get_state())
        if not self.world.main:
            return
        extra = {
            "rng_numpy": self.rng.bit_generator.state,
            "rng_sampler": self.sampler.rng.bit_generator.state,
            "best_score": self.best[0] if self.best else None,
        }
        cfg = self.config_json(None)
        cfg["resume"] = json.loads(json.dumps(extra))
        checkpoints.save_checkpoint(Path(self.cfg.out) / "last", self.model, cfg, train_state=self._state(aug_states))

    def _resume(self) -> None:
        last = Path(self.cfg.out) / "last"
        cfg = checkpoints.read_config(last)
        if cfg.get("processes", 1) != self.world.size:
            raise UserError(
                f"{last}: trained by {cfg.get('processes', 1)} processes; resume it with as many "
                f"(not {self.world.size})"
            )
        self.model.load_state_dict(checkpoints.load_weights(last))
        st = checkpoints.load_train_state(last) or {}
        opt_sd = self.opt.state_dict()
        for key, v in st.items():
            if key.startswith("opt."):
                _, pid, k = key.split(".", 2)
                opt_sd["state"].setdefault(int(pid), {})[k] = v
        self.opt.load_state_dict(opt_sd)
        if self.head is not None and "head.weight" in st:
            self.head.weight.data.copy_(st["head.weight"])
        torch.set_rng_state(st["rng.torch"])
        self.aug_gen.set_state(st["rng.aug" if self.world.size == 1 else f"rng.aug.{self.world.rank}"])
        self.rng.bit_generator.state = cfg["resume"]["rng_numpy"]
        self.sampler.rng.bit_generator.state = cfg["resume"]["rng_sampler"]
        self.step, self.total = cfg["steps"], cfg["total_steps"]
        self.history, self.train_seconds = cfg["history"], cfg["train_seconds"]
        self.replans = cfg.get("replans", [])
        if (Path(self.cfg.out) / checkpoints.WEIGHTS).is_file() and cfg["resume"]["best_score"] is not None:
            self.best = (cfg["resume"]["best_score"], checkpoints.load_weights(self.cfg.out))
        self.log(f"resumed at step {self.step}/{self.total}")

    def save_best(self, cal: Calibration | None, score: float) -> None:
        self.best = (score, {k: v.detach().clone() for k, v in self.model.state_dict().items()})
        # a model trained from scratch fits in float16; a fine-tuned one keeps the starting model's float32
        checkpoints.save_checkpoint(self.cfg.out, self.model, self.config_json(cal), half=self.init_config is None)

    # ----- the loop ---------------------------------------------------------------------------
    def _validate_and_keep(self, m: dict, stale: int) -> int:
        """Validate (rank 0), record, keep the model when it is the best so far; returns how many
        validations in a row have not improved, the same on every rank."""
        if self.world.main:
            cal = self.validate()
            # without impostors the open-set accuracy is unknown: the closed-set top-1 alone decides
            score = (
                -m.get("loss", math.inf)  # the starting model (no loss yet) loses to any trained step
                if cal is None
                else cal.closed_top1
                if cal.accuracy is None
                else (cal.closed_top1 + cal.accuracy) / 2
            )
            self.history.append(
                {
                    "step": self.step,
                    "seconds": round(self.train_seconds),
                    **m,
                    **(
                        {"val_top1": cal.closed_top1, "val_open": cal.accuracy, "val_threshold": cal.threshold}
                        if cal
                        else {}
                    ),
                }
            )
            self.log(
                (f"step {self.step}: loss {m['loss']:.3f} spread {m['spread']:.3f}" if m else "the starting model:")
                + (
                    f" val top1 {cal.closed_top1:.3f}"
                    + (f" open {cal.accuracy:.3f}" if cal.accuracy is not None else "")
                    + f" thr {cal.threshold:.3f}"
                    if cal
                    else ""
                )
            )
            if self.best is None or score > self.best[0]:
                self.save_best(cal, score)
                stale = 0
            else:
                stale += 1
        return int(self.world.broadcast([stale])[0])

    def _replan(self, mark: tuple[float, int], now: float) -> None:
        """Budget runs: when the pace since the last validation (validation included) would end the run
        more than 3% of the budget early or late, re-fix the step count to end on time. Rank 0's clock
        decides; each change is logged and recorded (a fixed ``--steps`` run replays none of them)."""
        seconds, step = mark
        per = (now - seconds) / max(1, self.step - step)
        total = self.total
        if abs(now + (self.total - self.step) * per - self.cfg.budget_s) > 0.03 * self.cfg.budget_s:
            total = max(self.step + 1, self.step + int((self.cfg.budget_s - now) / per))
        total = int(self.world.broadcast([total])[0])
        if total != self.total:
            self.replans.append([self.step, total])
            self.log(f"budget: {per:.2f}s/step since step {step} -> {total} steps (was {self.total})")
            self.total = total

    def run(self, progress: bool = True) -> Path:
        """Train to the step count (fixed from the budget by timing early steps, re-fixed at validations
        when the pace changes), validating every ``eval_every`` steps and keeping the best model by
        validation score."""
        from tqdm import tqdm

        cfg = self.cfg
        self.train_mode()
        bar = tqdm(
            total=self.total,
            initial=self.step,
            disable=not (progress and self.world.main),
            unit="step",
            dynamic_ncols=True,
        )
        stale, t0, s0 = 0, 0.0, 0
        if self.init_config is not None and self.step == 0 and (cfg.val_fraction or cfg.val_impostors):
            # fine-tuning keeps the model it started from unless training beats it on validation
            stale = self._validate_and_keep({}, stale)
        t_start = _clock() - self.train_seconds
        mark = (self.train_seconds, self.step)  # the clock at the last validation, for re-planning
        while self.total is None or self.step < self.total:
            m = self.train_step()
            self.train_seconds = _clock() - t_start
            if self.total is None:
                spent = self.train_seconds >= 0.05 * cfg.budget_s
                # time steps 10-30 (the first steps are slow: allocator warm-up), or from step 2 for a
                # slow network once 5% of the budget is spent (at step 10 too: the window never empties);
                # rank 0's clock decides for every rank
                if self.step == 2 or (self.step == 10 and not spent):
                    t0, s0 = self.train_seconds, self.step
                ready = self.step == 30 or (self.step >= 4 and spent)
                per = total = 0.0
                if ready:
                    per = (self.train_seconds - t0) / (self.step - s0)
                    # validation costs about as much as a few dozen steps per evaluation
                    total = max(self.step + 1, int((cfg.budget_s - t0) / (per * 1.08)) + s0)
                ready, total, per = self.world.broadcast([float(ready), total, per])
                if ready:
                    self.total = int(total)
                    bar.total = self.total
                    self.log(f"budget {cfg.budget_s:.0f}s at {per:.2f}s/step -> {self.total} steps")
            bar.update(1)
            bar.set_postfix(
                loss=f"{m['loss']:.3f}", trip=f"{m['triplet']:.3f}", lr=f"{lr_at(self.step, self.total or 1, cfg):.1e}"
            )
            last = self.total is not None and self.step >= self.total
            if self.step % cfg.eval_every == 0 or last:
                stale = self._validate_and_keep(m, stale)
                if cfg.budget_s and self.total is not None and not last:
                    self._replan(mark, _clock() - t_start)
                    bar.total = self.total
                    mark = (_clock() - t_start, self.step)
                if cfg.patience and stale >= cfg.patience:
                    self.log(f"early stop at step {self.step}: no improvement in {stale} evaluations")
                    self.save_last()
                    break
            if self.step % cfg.checkpoint_every == 0 or last:
                self.save_last()
        bar.close()
        if self.world.main:
            # the exported model records the whole run's history and length, with its own validation
            final_cfg = checkpoints.read_config(cfg.out)
            checkpoints.update_config(
                cfg.out,
                history=self.history,
                total_steps=self.total,
                replans=self.replans,
                train_seconds=round(self.train_seconds, 1),
                selected_step=final_cfg["steps"],
            )
            self.quantize()
        return Path(cfg.out)

    def quantize(self) -> None:
        """Give the kept model its int8 network (as ``facegallery quantize`` would, same photos)."""
        if not quantization.available():
            self.log(f"int8: skipped, this PyTorch ({torch.__version__}) has no x86 quantised engine")
            return
        calib = self.pixels[np.random.default_rng(self.cfg.seed).permutation(len(self.pixels))[:512]]
        try:
            info = int8.quantize_checkpoint(self.cfg.out, calib, self.val, aligned=self.template.name != PUBFIG83.name)
        except (TraceError, TypeError, NotImplementedError, RuntimeError) as e:
            self.log(f"int8: skipped, the network cannot be quantised ({e.__class__.__name__}: {e})")
            return
        v = info.get("validation_int8") or {}
        self.log(
            f"int8: {quantization.INT8} written"
            + (f"; validation top-1 {v['top1']:.3f}" if v else "")
            + (f" open {v['open']:.3f}" if v.get("open") is not None else "")
        )


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train and write the checkpoint folder ``cfg.out`` (best model) and ``cfg.out/last`` (resume).
    Under torchrun (or :func:`train_processes`) each process calls this and they train as one."""
    trainer = Trainer(cfg, resume=resume, log=log)
    try:
        return trainer.run(progress=progress)
    finally:
        distributed.leave(trainer.world)


def _log_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def train_processes(cfg: TrainConfig, procs: int, resume: bool = False, progress: bool = True) -> Path:
    """``train`` in one process, or data-parallel over ``procs`` local processes (the cores shared out
    between them unless ``cfg.threads`` says otherwise); progress and log lines go to stderr."""
    if procs <= 1:
        return train(cfg, resume=resume, progress=progress, log=_log_stderr)
    try:
        distributed.spawn(procs, train, cfg, resume, progress, _log_stderr)
    except Exception as e:  # a worker's UserError arrives as text; show its one line
        text = str(e)
        if "UserError: " in text:
            raise UserError(text.rsplit("UserError: ", 1)[1].strip().splitlines()[0]) from None
        raise
    return Path(cfg.out)
