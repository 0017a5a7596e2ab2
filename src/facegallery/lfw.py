"""LFW face verification, the field's standard benchmark, as the field reports it.

- ``pairs.txt`` (View 2): 10 folds of 300 same-person and 300 different-person pairs, no person in two
  folds. Each fold's threshold is the best one on the other nine folds; the headline is the mean of the
  ten fold accuracies with its standard error. ROC AUC and TAR at FAR 1e-3 are over all 6,000 pairs.
- ``pairsDevTest.txt`` (View 1, quick): its 1,000 pairs at the threshold best on ``pairsDevTrain.txt``.
- Every figure is also given without the pairs that show one of the 55 PubFig83 people who are in LFW
  (``pubfig83_people_in_lfw.txt``), for models that trained on PubFig83.

Faces are found and aligned by the project's own pipeline, as a user's photos would be: every face of
the photo is detected and the one nearest the centre is taken (LFW photos may hold several). A photo in
which no face is found is read as LFW deep-funneled frames it, its centre 150x150 taken as a
PubFig83-framed crop; how many photos that happened to is reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from facegallery.detectors import Detector, describe
from facegallery.embedder import Embedder, embed_faces
from facegallery.errors import UserError
from facegallery.facecache import FaceCache
from facegallery.faces import Face, whole_image
from facegallery.images import load_image, photo_bytes, upright_size
from facegallery.pipeline import Finder, ReadPhoto, embed_photos, read_photos

PAIRS = {"view2": "pairs.txt", "devtest": "pairsDevTest.txt"}
DEV_TRAIN = "pairsDevTrain.txt"
IMAGES = "lfw-deepfunneled"
PUBFIG83_PEOPLE = "pubfig83_people_in_lfw.txt"
#: The centre of a deep-funneled 250x250 photo that frames the face as PubFig83's crops do.
CENTRE_CROP = 150
FAR = 1e-3


@dataclass
class Pairs:
    """Pairs of photos (paths relative to the images folder), whether each shows one person, its fold."""

    left: list[str]
    right: list[str]
    same: np.ndarray
    fold: np.ndarray

    def people(self, i: int) -> tuple[str, str]:
        return self.left[i].split("/")[0], self.right[i].split("/")[0]


def _photo(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(path: Path) -> Pairs:
    """An LFW pair list: header "folds n" (or "n" for View 1), then per fold n same-person lines
    (name i j) and n different-person lines (name1 i name2 j)."""
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        folds, per = (int(lines[0][0]), int(lines[0][1])) if len(lines[0]) == 2 else (1, int(lines[0][0]))
        left, right, same, fold = [], [], [], []
        for k in range(folds):
            for j in range(2 * per):
                row = lines[1 + k * 2 * per + j]
                a, b = (
                    (_photo(row[0], row[1]), _photo(row[0], row[2]))
                    if j < per
                    else (_photo(row[0], row[1]), _photo(row[2], row[3]))
                )
                left.append(a)
                right.append(b)
                same.append(j < per)
                fold.append(k)
    except (IndexError, ValueError):
        raise UserError(
            f"{path}: not an LFW pair list (header 'folds pairs' or 'pairs', then name/number rows)"
        ) from None
    if len(lines) != 1 + len(left):
        raise UserError(f"{path}: {len(lines) - 1} pair lines, the header announces {len(left)}")
    return Pairs(left, right, np.array(same), np.array(fold))


def nearest_centre(faces: list[Face], shape: tuple[int, ...]) -> Face | None:
    """The detected face whose box centre is nearest the photo's centre."""
    found = [f for f in faces if f.detected]
    if not found:
        return None
    cy, cx = shape[0] / 2, shape[1] / 2
    return min(found, key=lambda f: ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2)


def centre_crop(pixels: np.ndarray, side: int = CENTRE_CROP) -> np.ndarray:
    """The central ``side`` x ``side`` window (the whole photo if it is smaller)."""
    h, w = pixels.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return pixels[top : top + side, left : left + side]


def photo_faces(
    root: Path, photos: list[str], finder: Finder, embedder: Embedder | None = None, progress: bool = True
) -> tuple[list[Face], int]:
    """One face per photo of ``photos`` (relative to ``root``) found by ``finder`` (see the module
    docstring), and how many of them fell back to the centre crop. With ``embedder`` every face of every
    photo is embedded and kept in the finder's face cache, and each face returned carries its embedding
    (faces read back from the cache have no crop)."""
    from tqdm import tqdm

    faces: list[Face] = []
    fallback: list[int] = []
    paths = [root / rel for rel in photos]
    with tqdm(
        total=len(paths), unit="photo", disable=not progress, dynamic_ncols=True, desc="lfw", mininterval=2
    ) as bar:
        found = (
            embed_photos(paths, finder, partial(embed_faces, embedder), progress=bar.update)
            if embedder is not None
            else read_photos(paths, finder)
        )
        for path, got in zip(paths, found):
            if embedder is None:
                bar.update(1)
            if not isinstance(got, ReadPhoto):
                raise UserError(f"{got.reason} ({path}: LFW needs every photo of its pair list)")
            size = upright_size(photo_bytes(path)) or (0, 0, False)
            face = nearest_centre(got.faces or [], (size[1], size[0])) if finder.detect != "off" else None
            if face is None:
                fallback.append(len(faces))
                face = whole_image(centre_crop(load_image(path)), finder.template)
            faces.append(face)
    if embedder is not None:
        embed_faces(embedder, [faces[i] for i in fallback])
    return faces, len(fallback)


def best_threshold(dist: np.ndarray, same: np.ndarray) -> float:
    """The distance threshold (same person when ``dist <= t``) of best accuracy on these pairs: the
    midpoint between neighbouring sorted distances, over every candidate."""
    order = np.argsort(dist)
    d, s = dist[order], same[order]
    # accepting the first i pairs: correct = same among them + different among the rest
    correct = np.concatenate([[0], np.cumsum(s)]) + (~s).sum() - np.concatenate([[0], np.cumsum(~s)])
    i = int(np.argmax(correct))
    if i == 0:
        return float(d[0]) - 1e-6
    if i == len(d):
        return float(d[-1]) + 1e-6
    return float((d[i - 1] + d[i]) / 2)


def accuracy(dist: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((dist <= threshold) == same).mean())


def tar_at_far(dist: np.ndarray, same: np.ndarray, far: float = FAR) -> float:
    """The largest fraction of same-person pairs accepted while at most ``far`` of the others are."""
    fpr, tpr, _ = roc_curve(same, -dist)
    return float(tpr[fpr <= far].max())


def verification_figures(
    dist: np.ndarray, same: np.ndarray, fold: np.ndarray | None, dev: tuple[np.ndarray, np.ndarray] | None = None
) -> dict:
    """Accuracy (10-fold, or at the dev set's threshold), ROC AUC and TAR at FAR 1e-3 of some pairs."""
    out: dict = {"pairs": int(len(dist)), "same_pairs": int(same.sum())}
    if dev is None:
        accs, thrs = [], []
        for k in np.unique(fold):
            test = fold == k
            thr = best_threshold(dist[~test], same[~test])
            accs.append(accuracy(dist[test], same[test], thr))
            thrs.append(round(thr, 6))
        out["accuracy_10fold"] = {
            "mean": float(np.mean(accs)),
            "se": float(np.std(accs, ddof=1) / np.sqrt(len(accs))),
            "folds": [round(a, 6) for a in accs],
            "thresholds": thrs,
        }
    else:
        thr = best_threshold(*dev)
        out["accuracy_dev_threshold"] = {"accuracy": accuracy(dist, same, thr), "threshold": round(thr, 6)}
    out["roc_auc"] = float(roc_auc_score(same, -dist))
    out[f"tar_at_far_{FAR:g}"] = tar_at_far(dist, same)
    return out


@dataclass
class Protocol:
    """A pair list (plus View 1's development list), its photos, and the PubFig83 people to leave out."""

    images: Path
    pairs: Pairs
    dev: Pairs | None
    photos: list[str]
    excluded: set[str] | None
    name: str


def load_protocol(root: str | Path, pairs: str = "view2") -> Protocol:
    """LFW's files under ``root``, checked (every photo of the lists present)."""
    root = Path(root)
    if pairs not in PAIRS:
        raise UserError(f"unknown LFW pair list {pairs!r} (one of {', '.join(PAIRS)})")
    images = root / IMAGES
    if not images.is_dir():
        raise UserError(f"{root}: no {IMAGES}/ folder (expected LFW deep-funneled and its pair lists)")
    main = read_pairs(root / PAIRS[pairs])
    dev = read_pairs(root / DEV_TRAIN) if pairs == "devtest" else None
    photos = sorted({p for lst in (main, dev) if lst is not None for p in lst.left + lst.right})
    missing = [p for p in photos if not (images / p).is_file()]
    if missing:
        raise UserError(f"{images / missing[0]}: missing ({len(missing)} photos of the pair lists are)")
    pubfig = root / PUBFIG83_PEOPLE
    excluded = set(pubfig.read_text().split()) if pubfig.is_file() else None
    return Protocol(images, main, dev, photos, excluded, PAIRS[pairs])


def score(protocol: Protocol, emb: np.ndarray) -> tuple[dict, dict]:
    """The figures of embeddings of ``protocol.photos`` (row i: photo i), with and without PubFig83
    people; and the distances and labels for the ROC figure."""
    row = {p: i for i, p in enumerate(protocol.photos)}

    def distances(lst: Pairs) -> np.ndarray:
        a, b = emb[[row[p] for p in lst.left]], emb[[row[p] for p in lst.right]]
        return ((a - b) ** 2).sum(1)

    def kept(lst: Pairs) -> np.ndarray:
        return np.array([not (set(lst.people(i)) & protocol.excluded) for i in range(len(lst.same))])

    main, dev = protocol.pairs, protocol.dev
    dist = distances(main)
    dev_dist = distances(dev) if dev is not None else None
    metrics = verification_figures(dist, main.same, main.fold, None if dev is None else (dev_dist, dev.same))
    if protocol.excluded is not None:
        keep = kept(main)
        dev_kept = None
        if dev is not None:
            k = kept(dev)
            dev_kept = (dev_dist[k], dev.same[k])
        metrics["without_pubfig83_people"] = {
            "people_excluded": len(protocol.excluded),
            **verification_figures(dist[keep], main.same[keep], main.fold[keep], dev_kept),
        }
    return metrics, {"distance": dist, "same": main.same}


def evaluate_lfw(
    embedder: Embedder,
    root: str | Path,
    pairs: str = "view2",
    detect: str = "on",
    progress: bool = True,
    detector: str | Detector | None = None,
    cache: FaceCache | bool = True,
) -> tuple[dict, dict]:
    """The LFW protocol for one embedder: (metrics, the distances and labels for the ROC figure). Faces
    are found by ``detector`` (default: the default) through the face cache (``cache``: True for the
    user's, False for none)."""
    protocol = load_protocol(root, pairs)
    finder = Finder.of(embedder, detect, detector, cache)
    t0 = time.perf_counter()
    faces, fallback = photo_faces(protocol.images, protocol.photos, finder, embedder, progress)
    emb = embed_faces(embedder, faces)
    t2 = time.perf_counter()
    figures, curves = score(protocol, emb)
    metrics = {
        "protocol": "lfw",
        "pair_list": protocol.name,
        "detect": detect,
        "detector": describe(finder.detector) if detect != "off" else None,
        "model": {"name": embedder.name, "fingerprint": embedder.fingerprint},
        "photos": len(protocol.photos),
        "centre_crop_fallback": fallback,
        "distance": "squared Euclidean between unit embeddings",
        **figures,
        "timing": {"faces_and_embeddings_s": round(t2 - t0, 2)},
    }
    return metrics, curves


def headline(m: dict) -> str:
    """The LFW figures as a short table."""

    def line(label: str, f: dict) -> str:
        acc = f.get("accuracy_10fold")
        a = (
            f"10-fold accuracy {100 * acc['mean']:.2f}% +- {100 * acc['se']:.2f}"
            if acc
            else f"accuracy {100 * f['accuracy_dev_threshold']['accuracy']:.2f}% (threshold from {DEV_TRAIN})"
        )
        return (
            f"{label:<28} {f['pairs']:5d} pairs   {a}   AUC {f['roc_auc']:.4f}   "
            f"TAR@FAR={FAR:g} {100 * f[f'tar_at_far_{FAR:g}']:.1f}%"
        )

    lines = [
        f"model {m['model']['name']} ({m['model']['fingerprint']}), LFW {m['pair_list']}, {m['photos']} photos "
        f"({m['centre_crop_fallback']} without a detected face: centre crop)",
        line("all pairs", m),
    ]
    if "without_pubfig83_people" in m:
        lines.append(line("without PubFig83 people", m["without_pubfig83_people"]))
    return "\n".join(lines)
