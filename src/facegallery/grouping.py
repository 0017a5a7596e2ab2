"""Who are all these faces? Find and embed every face of a pile of photos, group them into people, and
write the grouping (clusters.json, a contact sheet per group, an overview) for a person to name.

Faces and embeddings come through the face cache (:mod:`facegallery.facecache`: keyed by the file's
content hash, the detector and its settings and the model's fingerprint), so running again on the same
photos only groups. A
gallery, when given, labels the faces that match someone enrolled; only the rest are grouped.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facegallery.clustering import DEFAULT_ALGORITHM, group, pair_cut
from facegallery.detectors import Detector, describe, load_detector
from facegallery.errors import UserError
from facegallery.facecache import FaceCache
from facegallery.images import ImageReadError, load_image, warn_skip

if TYPE_CHECKING:
    from facegallery.embedder import Embedder
    from facegallery.gallery import Gallery

#: What clusters.json says it is (a file of another kind or version is refused by ``load``).
FORMAT = "facegallery-clusters-1"
THUMB = 96


@dataclass
class FoundFace:
    """One face of one photo: where it is, and (after grouping) its group or the person it matched."""

    path: str
    box: list[float]
    index: int  # row in the embeddings file
    sha256: str = ""  # of the photo's file: what a gallery keys its photos by
    detected: bool = True
    person: str | None = None  # a gallery's person it matched, when clustering against a gallery
    distance: float | None = None


@dataclass
class Cluster:
    """A group of faces believed to be one person."""

    id: int
    faces: list[FoundFace]
    representative: int  # index in ``faces`` of the face nearest the group's centroid
    cohesion: float  # mean squared distance of the faces to their centroid (0: identical)
    sheet: str | None = None


@dataclass
class Clustering:
    """The whole answer: groups, faces in no group, faces a gallery already knows."""

    model: str
    fingerprint: str
    algorithm: str
    cut: float
    detect: str
    clusters: list[Cluster]
    unassigned: list[FoundFace]
    known: list[FoundFace] = field(default_factory=list)
    embeddings: np.ndarray | None = None  # (faces, D) unit rows, indexed by FoundFace.index
    detector: dict | None = None  # name and settings of the detector that found the faces (None: off)

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "embeddings"}
        return {"format": FORMAT, **d}


def find_faces(
    paths: Sequence[Path],
    embedder: Embedder,
    detect: str = "auto",
    cache: FaceCache | bool = True,
    progress: bool = False,
    detector: str | Detector | None = None,
) -> tuple[list[FoundFace], np.ndarray]:
    """Every face of ``paths`` (unreadable files skipped with a warning) and its embedding, through the
    face cache (``cache``: True for the user's, False for none)."""
    from tqdm import tqdm

    from facegallery.embedder import embed_faces
    from facegallery.pipeline import Finder, ReadPhoto, embed_photos

    finder = Finder.of(embedder, detect, detector, cache)
    faces: list[FoundFace] = []
    vectors: list[np.ndarray] = []
    with tqdm(total=len(paths), unit="photo", desc="faces", disable=not progress, dynamic_ncols=True) as bar:
        for got in embed_photos(list(map(str, paths)), finder, partial(embed_faces, embedder), progress=bar.update):
            if not isinstance(got, ReadPhoto):
                warn_skip(Path(got.path), got.reason)
                continue
            for f in got.faces or []:
                box = [round(float(v), 2) for v in f.box]
                faces.append(FoundFace(got.path, box, len(faces), got.sha256 or "", f.detected))
                vectors.append(f.embedding)
    return faces, np.stack(vectors).astype(np.float32) if faces else np.zeros((0, _dim(embedder)), np.float32)


def _dim(embedder: Embedder) -> int:
    return int(embedder.spec["embedding_dim"])


def cluster_faces(
    faces: list[FoundFace],
    emb: np.ndarray,
    embedder: Embedder,
    detect: str = "auto",
    algorithm: str = DEFAULT_ALGORITHM,
    gallery: Gallery | None = None,
    detector: str | Detector | None = None,
) -> Clustering:
    """Group found faces; with a gallery, faces it recognises are labelled instead of grouped.
    ``detect`` and ``detector`` are recorded as what found them."""
    if embedder.threshold is None:
        raise UserError(f"model {embedder.name} has no calibrated threshold to derive the grouping cut from")
    cut = pair_cut(embedder.threshold)
    rest = np.arange(len(faces))
    known: list[FoundFace] = []
    if gallery is not None and len(faces):
        answers = gallery.identify_embeddings(emb, top_k=1)
        for f, a in zip(faces, answers):
            if a.name is not None:
                f.person, f.distance = a.name, round(float(a.distance), 4)
                known.append(f)
        rest = np.array([i for i, f in enumerate(faces) if f.person is None], int)
    labels = group(emb[rest], cut, algorithm) if len(rest) else np.zeros(0, int)
    clusters = []
    for k in range(int(labels.max(initial=-1)) + 1):
        members = rest[labels == k]
        centre = emb[members].mean(0)
        d = ((emb[members] - centre) ** 2).sum(1)
        clusters.append(Cluster(k, [faces[i] for i in members], int(d.argmin()), round(float(d.mean()), 4)))
    unassigned = [faces[i] for i in rest[labels < 0]]
    found_by = None if detect == "off" else describe(load_detector(detector))
    return Clustering(
        embedder.name,
        embedder.fingerprint,
        algorithm,
        round(cut, 4),
        detect,
        clusters,
        unassigned,
        known,
        emb,
        found_by,
    )


def cluster(
    photos: Sequence[str | os.PathLike],
    model: str | os.PathLike | Embedder | None = None,
    detect: str = "auto",
    algorithm: str = DEFAULT_ALGORITHM,
    gallery: Gallery | None = None,
    progress: bool = False,
    detector: str | Detector | None = None,
) -> Clustering:
    """Group the faces of ``photos`` (files or folders) into people: the Python face of ``facegallery
    cluster``. ``model``: a name, folder or embedder (default: the gallery's, else the shipped default);
    ``detector``: a name or a detector (default: the gallery's, else the default)."""
    from facegallery.embedder import load_model
    from facegallery.images import iter_images

    paths = list(iter_images(photos))
    if hasattr(model, "embed"):
        embedder = model
    else:
        embedder = gallery.embedder if gallery is not None and model is None else load_model(model)
    if detector is None and gallery is not None and detect != "off":
        detector = gallery.detector
    faces, emb = find_faces(paths, embedder, detect, progress=progress, detector=detector)
    return cluster_faces(faces, emb, embedder, detect, algorithm, gallery, detector)


def evaluate_grouping(
    embedder: Embedder,
    root: str | os.PathLike,
    algorithms: Sequence[str],
    detect: str = "auto",
    progress: bool = False,
    detector: str | Detector | None = None,
) -> dict:
    """Group the photos of a labelled tree (``root/<person>/<photos>``, the largest face of each photo)
    with each algorithm and score the groupings against the folders (:func:`grouping_figures`)."""
    import time

    from facegallery.clustering import ALGORITHMS, grouping_figures
    from facegallery.datasets import discover

    unknown = [name for name in algorithms if name not in ALGORITHMS]
    if unknown:  # before the embedding, which is the slow part
        raise UserError(f"unknown clustering algorithm {unknown[0]!r}; known: {', '.join(ALGORITHMS)}")
    tree = discover(root)
    faces, emb = find_faces(list(tree.paths), embedder, detect, progress=progress, detector=detector)
    best: dict[str, tuple[int, float]] = {}
    for f in faces:  # one face per photo: its largest
        area = (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])
        if f.path not in best or area > best[f.path][1]:
            best[f.path] = (f.index, area)
    label_of = {str(p): int(lab) for p, lab in zip(tree.paths, tree.labels)}
    rows = [best[str(p)][0] for p in tree.paths if str(p) in best]
    truth = np.array([label_of[faces[i].path] for i in rows])
    cut = pair_cut(embedder.threshold)
    out: dict = {
        "model": {"name": embedder.name, "fingerprint": embedder.fingerprint},
        "data": str(root),
        "photos": len(tree.paths),
        "photos_without_face": len(tree.paths) - len(rows),
        "cut": round(cut, 4),
        "algorithms": {},
    }
    for name in algorithms:
        t0 = time.perf_counter()
        labels = group(emb[rows], cut, name)
        out["algorithms"][name] = {**grouping_figures(truth, labels), "seconds": round(time.perf_counter() - t0, 2)}
    return out


# ----- writing and reading the grouping -------------------------------------------------------


def _thumb(path: str, box: list[float], size: int = THUMB) -> Image.Image:
    """The face in ``box`` with a margin, as a square thumbnail (grey if the photo is gone)."""
    try:
        im = Image.fromarray(load_image(path))
    except ImageReadError:
        return Image.new("RGB", (size, size), (128, 128, 128))
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * 1.25
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return im.crop((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)).resize((size, size))


def contact_sheet(
    faces: list[FoundFace], title: str, columns: int = 8, limit: int = 64, labels: Sequence[str] | None = None
) -> Image.Image:
    """Thumbnails of ``faces`` (up to ``limit``) in a grid under the line ``title``; ``labels``, one per
    face, are drawn on their thumbnails' top left corners."""
    shown = faces[:limit]
    rows = max(1, math.ceil(len(shown) / columns))
    font = ImageFont.load_default(size=16)
    sheet = Image.new("RGB", (columns * (THUMB + 4) + 4, rows * (THUMB + 4) + 30), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    more = f" (first {limit} shown)" if len(faces) > limit else ""
    draw.text((6, 6), title + more, fill=(0, 0, 0), font=font)
    for i, f in enumerate(shown):
        r, c = divmod(i, columns)
        x, y = 4 + c * (THUMB + 4), 30 + r * (THUMB + 4)
        sheet.paste(_thumb(f.path, f.box), (x, y))
        if labels is not None:
            box = draw.textbbox((x + 4, y + 2), labels[i], font=font)
            draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
            draw.text((x + 4, y + 2), labels[i], fill=(255, 255, 255), font=font)
    return sheet


def _faces(n: int) -> str:
    return f"{n} face{'' if n == 1 else 's'}"


def overview(result: Clustering) -> Image.Image:
    """One face of each cluster (the nearest its centroid), numbered with the cluster's id: the number
    ``enroll --from-clusters ... --name N=NAME`` takes."""
    reps = [c.faces[c.representative] for c in result.clusters]
    title = (
        f"{len(reps)} cluster{'' if len(reps) == 1 else 's'}, numbered for --name N=NAME; "
        f"{_faces(len(result.unassigned))} in no cluster"
    )
    return contact_sheet(reps, title, limit=256, labels=[str(c.id) for c in result.clusters])


def write(result: Clustering, out: str | os.PathLike) -> Path:
    """``out/clusters.json``, ``out/embeddings.npy``, ``out/cluster-NNN.png`` per group, ``out/overview.png``."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out}: cannot create the output folder ({e.strerror})") from None
    for stale in out.glob("cluster-*.png"):  # an earlier run's sheets would pass for this run's
        stale.unlink()
    for c in result.clusters:
        c.sheet = f"cluster-{c.id:03d}.png"
        contact_sheet(c.faces, f"cluster {c.id}: {_faces(len(c.faces))}").save(out / c.sheet)
    overview(result).save(out / "overview.png")
    np.save(
        out / "embeddings.npy", result.embeddings if result.embeddings is not None else np.zeros((0, 0), np.float32)
    )
    path = out / "clusters.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.as_dict(), indent=1))
    tmp.replace(path)
    return path


def chosen_faces(doc: dict, emb: np.ndarray, names: dict[int, str], where: Path) -> list[tuple[str, np.ndarray, list]]:
    """(name, embeddings, [(path, sha256)]) of each named cluster (clusters given one name are one
    person); a number that is no cluster is a one-line error before anything is enrolled."""
    by_id = {c["id"]: c for c in doc.get("clusters", [])}
    missing = sorted(set(names) - set(by_id))
    if missing:
        raise UserError(f"{where}: no cluster {missing[0]} (it has {len(by_id)}: 0..{len(by_id) - 1})")
    merged: dict[str, list[dict]] = {}
    for k, name in names.items():
        merged.setdefault(name, []).extend(by_id[k]["faces"])
    out = []
    for name, faces in merged.items():
        idx = [int(f["index"]) for f in faces]
        if any(not 0 <= i < len(emb) for i in idx):
            raise UserError(f"{where}: cluster faces point past its embeddings.npy; run `facegallery cluster` again")
        out.append((name, emb[idx], [(f["path"], f["sha256"]) for f in faces]))
    return out


def load(path: str | os.PathLike) -> tuple[dict, np.ndarray]:
    """A written grouping and its embeddings; a one-line error for a file that is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable clusters.json ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path}: not a clusters.json written by `facegallery cluster`")
    try:
        emb = np.load(path.parent / "embeddings.npy", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path.parent / 'embeddings.npy'}: missing or unreadable ({e})") from None
    return doc, emb
