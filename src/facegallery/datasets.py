"""Folder-per-identity trees (``ROOT/<Person Name>/<image>``), label maps, splits and P x K batches."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegallery.alignment import PUBFIG83, Template
from facegallery.errors import UserError
from facegallery.images import (
    ImageReadError,
    PixelCache,
    centre_square,
    is_candidate,
    load_batch,
    load_image,
    photo_bytes,
    resize,
    warn_skip,
)


@dataclass
class FaceFolder:
    """The photos of a folder-per-identity tree: ``paths[i]`` shows ``names[labels[i]]``."""

    root: Path
    names: list[str]
    paths: list[Path]
    labels: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: np.ndarray | list[int], names: list[str] | None = None) -> FaceFolder:
        """The photos at ``index``; with ``names`` the labels are re-indexed onto that name list."""
        index = np.asarray(index, dtype=np.int64)
        paths = [self.paths[i] for i in index]
        labels = self.labels[index]
        if names is None:
            return FaceFolder(self.root, list(self.names), paths, labels)
        remap = {n: i for i, n in enumerate(names)}
        return FaceFolder(
            self.root, list(names), paths, np.array([remap[self.names[l]] for l in labels], dtype=np.int64)
        )

    def only(self, names: list[str]) -> FaceFolder:
        """The photos of the identities in ``names``, labelled by position in ``names``."""
        wanted = set(names)
        idx = [i for i, l in enumerate(self.labels) if self.names[l] in wanted]
        return self.subset(idx, names=list(names))

    def fingerprint(self) -> str:
        """A short hash of the relative paths and labels (what the data looked like, cheaply)."""
        h = hashlib.sha1()
        for p, l in zip(self.paths, self.labels):
            h.update(f"{p.relative_to(self.root)}\t{self.names[l]}\n".encode())
        return h.hexdigest()[:16]

    def load_pixels(
        self, size: int, cache: PixelCache | None = None, template: Template | None = None
    ) -> tuple[np.ndarray, FaceFolder]:
        """Decode every photo at ``size``; unreadable ones are skipped (warned) and dropped.

        With a ``template`` the photos are prepared as a network of that template reads them in
        training: each photo's centred square (:func:`centre_square`), resized to ``size`` for
        PubFig83's framing, or aligned into any other template by the landmarks found where that
        framing holds the face (as the embedder does with whole crops)."""
        if template is None:
            pixels, kept = load_batch(self.paths, size, cache)
        elif template.name == PUBFIG83.name:
            pixels, kept = _load_prepared(
                self.paths, f"square-{size}", lambda crops: [resize(c, size) for c in crops], size, cache
            )
        else:
            from facegallery.landmarks import align_crops

            pixels, kept = _load_prepared(
                self.paths, template.name, lambda crops: align_crops(crops, template), template.size, cache
            )
        return pixels, self.subset(kept)


def _load_prepared(
    paths: list[Path],
    kind: str,
    prepare: Callable[[list[np.ndarray]], list[np.ndarray]],
    side: int,
    cache: PixelCache | None,
) -> tuple[np.ndarray, list[int]]:
    """Photos' centred squares through ``prepare`` (in batches: landmarks are cheaper that way),
    cached per photo under ``kind``; unreadable photos skipped with a warning."""
    out: dict[int, np.ndarray] = {}
    todo: list[tuple[int, Path, Path | None]] = []
    for i, path in enumerate(paths):
        try:
            entry = cache.entry(photo_bytes(Path(path)), kind) if cache is not None else None
        except ImageReadError as e:
            warn_skip(Path(path), str(e).split(": ", 1)[-1])
            continue
        pixels = cache.read(entry) if entry is not None else None
        if pixels is None:
            todo.append((i, Path(path), entry))
        else:
            out[i] = pixels
    for start in range(0, len(todo), 256):
        crops, done = [], []
        for i, path, entry in todo[start : start + 256]:
            try:
                crops.append(centre_square(load_image(path)))
                done.append((i, entry))
            except ImageReadError as e:
                warn_skip(path, str(e).split(": ", 1)[-1])
        for (i, entry), pixels in zip(done, prepare(crops)):
            out[i] = pixels
            if entry is not None:
                PixelCache.write(entry, pixels)
    kept = sorted(out)
    return (np.stack([out[i] for i in kept]) if kept else np.zeros((0, side, side, 3), np.uint8)), kept


def discover(root: str | Path, min_photos: int = 1) -> FaceFolder:
    """Scan ``root`` for one subfolder per person. Junk files are skipped with a warning.

    Raises :class:`UserError` when the folder is missing or holds no person with a photo.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: no such folder")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    names, paths, labels = [], [], []
    for person in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        photos = []
        for f in sorted(person.rglob("*")):
            if not f.is_file():
                continue
            if is_candidate(f):
                photos.append(f)
            else:
                warn_skip(f, "not an image file")
        if len(photos) < min_photos:
            continue
        label = len(names)
        names.append(person.name)
        paths += photos
        labels += [label] * len(photos)
    for f in sorted(root.iterdir()):
        if f.is_file():
            warn_skip(f, "a file at the top of a folder-per-person tree")
    if not names:
        raise UserError(f"{root}: no person folders with photos in it (expected ROOT/<Person Name>/<photo>)")
    return FaceFolder(root, names, paths, np.array(labels, dtype=np.int64))


def discover_roots(roots: str | Path | list[str | Path]) -> FaceFolder:
    """One tree or several (``train --data A --data B``) as one :class:`FaceFolder`.

    A folder name is a person: the same name under two roots is one person (their photos pooled), so a
    second folder of the same people adds photos rather than impostors. Paths are kept relative to the
    roots' common parent, so splits and fingerprints stay stable for the same roots."""
    if isinstance(roots, (str, Path)):
        return discover(roots)
    roots = [Path(r) for r in roots]
    if len(roots) == 1:
        return discover(roots[0])
    if len({r.resolve() for r in roots}) < len(roots):
        raise UserError(f"{', '.join(map(str, roots))}: a folder is given twice")
    trees = [discover(r) for r in roots]
    names = sorted({n for t in trees for n in t.names})
    index = {n: i for i, n in enumerate(names)}
    paths = [p for t in trees for p in t.paths]
    labels = np.array([index[t.names[l]] for t in trees for l in t.labels], dtype=np.int64)
    common = Path(os.path.commonpath([str(r.resolve()) for r in roots]))
    return FaceFolder(common, names, [p.resolve() for p in paths], labels)


def require_pairs(roots: list[str | Path], folder: FaceFolder) -> None:
    """Refuse a training root in which no person has two photos (no positive pair to learn from)."""
    for root in roots:
        root = Path(root).resolve()
        counts = np.bincount(
            [l for p, l in zip(folder.paths, folder.labels) if p.resolve().is_relative_to(root)],
            minlength=len(folder.names),
        )
        if counts.max(initial=0) < 2:
            raise UserError(
                f"{root}: no person with two or more photos (the triplet loss needs two photos of someone; "
                "put each person's photos in one folder)"
            )


def numbered_key(path: Path) -> tuple:
    """Sort key putting ``2.jpg`` before ``10.jpg`` (the protocol's 'lowest-numbered photos')."""
    stem = path.stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


@dataclass(frozen=True)
class Split:
    """A validation split of a training tree: whole identities held out as impostors, plus some photos
    of every other identity held out as genuine probes. Recorded in checkpoints so that evaluation can
    calibrate the unknown threshold on data the model never trained on."""

    impostor_names: tuple[str, ...]
    holdout_paths: tuple[str, ...]  # relative to the tree root

    def to_json(self) -> dict:
        return {"impostor_names": list(self.impostor_names), "holdout_paths": list(self.holdout_paths)}

    @classmethod
    def from_json(cls, d: dict) -> Split:
        return cls(tuple(d["impostor_names"]), tuple(d["holdout_paths"]))

    def parts(self, folder: FaceFolder) -> tuple[FaceFolder, FaceFolder, FaceFolder]:
        """(train, genuine holdout, impostors) of ``folder``; train and holdout share one label map."""
        imp = set(self.impostor_names)
        hold = set(self.holdout_paths)
        known = [n for n in folder.names if n not in imp]
        kf = folder.only(known)
        rel = [str(p.relative_to(folder.root)) for p in kf.paths]
        train_idx = [i for i, r in enumerate(rel) if r not in hold]
        hold_idx = [i for i, r in enumerate(rel) if r in hold]
        return kf.subset(train_idx), kf.subset(hold_idx), folder.only([n for n in folder.names if n in imp])


def make_split(folder: FaceFolder, impostors: int, holdout_fraction: float, seed: int, holdout: str = "last") -> Split:
    """Draw a :class:`Split` reproducibly from ``seed``.

    ``holdout="last"`` holds out each identity's highest-numbered photos (:func:`numbered_key`), as
    PubFig83's test set does: its photos are the highest-numbered of each person, taken later than
    the training ones, so a random holdout (``"random"``) would share events and near-duplicates with
    the training photos and overrate the model."""
    rng = np.random.default_rng(seed)
    if impostors >= len(folder.names):
        raise UserError(f"cannot hold out {impostors} impostor identities from {len(folder.names)}")
    imp = sorted(rng.choice(folder.names, size=impostors, replace=False).tolist()) if impostors else []
    hold = []
    for label, name in enumerate(folder.names):
        if name in imp:
            continue
        idx = np.flatnonzero(folder.labels == label)
        n = int(round(len(idx) * holdout_fraction))
        n = min(n, len(idx) - 2)  # keep at least two photos per identity to train on
        if n > 0:
            if holdout == "last":
                chosen = sorted(idx, key=lambda i: numbered_key(folder.paths[i]))[-n:]
            elif holdout == "random":
                chosen = rng.choice(idx, n, replace=False)
            else:
                raise UserError(f"unknown holdout {holdout!r} (last or random)")
            hold += [str(folder.paths[i].relative_to(folder.root)) for i in chosen]
    return Split(tuple(imp), tuple(sorted(hold)))


class PKSampler:
    """Batches of P identities x K photos each (FaceNet's online-mining batches), reproducible by seed.

    K adapts: an identity with fewer than K photos gives all of them (at least two: people with one
    photo cannot form a positive pair). With ``singles`` > 0 each batch also carries that many photos of
    one-photo people, drawn at random, for the classifier term alone (see :meth:`__call__`).
    """

    def __init__(self, labels: np.ndarray, p: int, k: int, seed: int, singles: int = 0):
        self.by_label = [np.flatnonzero(labels == l) for l in range(int(labels.max()) + 1)]
        self.usable = np.array([l for l, idx in enumerate(self.by_label) if len(idx) >= 2])
        if len(self.usable) < 2:
            raise UserError("P x K sampling needs at least two identities with two photos each")
        self.single_rows = np.concatenate([idx for idx in self.by_label if len(idx) == 1] or [np.zeros(0, np.int64)])
        self.p, self.k = min(p, len(self.usable)), k
        self.singles = min(singles, len(self.single_rows))
        self.rng = np.random.default_rng(seed)

    def groups(self) -> tuple[list[np.ndarray], np.ndarray]:
        """One batch: P row groups, one per identity (2 to K rows each), and the one-photo rows."""
        ids = self.rng.choice(self.usable, size=self.p, replace=False)
        groups = [
            self.rng.choice(self.by_label[l], size=min(self.k, len(self.by_label[l])), replace=False) for l in ids
        ]
        singles = (
            self.rng.choice(self.single_rows, size=self.singles, replace=False)
            if self.singles
            else np.zeros(0, np.int64)
        )
        return groups, singles

    def __call__(self) -> np.ndarray:
        """Row indices of one batch, grouped by identity (then the one-photo rows)."""
        groups, singles = self.groups()
        return np.concatenate([*groups, singles])


def random_triplet_batch(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The original recipe's triplets: a random identity, two different photos of it, and a photo of
    another identity. Returns (n, 3) row indices (anchor, positive, negative)."""
    by_label = [np.flatnonzero(labels == l) for l in range(int(labels.max()) + 1)]
    usable = [l for l, idx in enumerate(by_label) if len(idx) >= 2]
    out = np.empty((n, 3), dtype=np.int64)
    for t in range(n):
        a_lab = usable[rng.integers(len(usable))]
        a, p = rng.choice(by_label[a_lab], size=2, replace=False)
        n_lab = rng.integers(len(by_label) - 1)
        n_lab += n_lab >= a_lab
        while len(by_label[n_lab]) == 0:
            n_lab = rng.integers(len(by_label))
            if n_lab == a_lab:
                continue
        out[t] = (a, p, rng.choice(by_label[n_lab]))
    return out


def label_map_json(names: list[str]) -> str:
    """The label map as saved beside every model: index -> name."""
    return json.dumps(list(names))
