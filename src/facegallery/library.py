"""An in-memory library of people built from a folder-per-person tree: embed, average, answer.

This is the original method as a reusable object; the persistent, incremental version is
:mod:`facegallery.gallery`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegallery.answers import Candidate, Identification, Recognition
from facegallery.datasets import discover
from facegallery.detection import read_faces
from facegallery.embedder import Embedder, embed_faces
from facegallery.errors import UserError
from facegallery.faces import only_face
from facegallery.images import MAX_PIXELS, ImageReadError, PixelCache, load_batch, warn_skip
from facegallery.landmarks import to_template
from facegallery.pipeline import Photo, expand, recognize
from facegallery.recognition import Centroids


def embed_paths(
    embedder: Embedder, paths: list[Path], cache: PixelCache | None = None, batch: int = 512, progress: bool = False
) -> tuple[np.ndarray, list[int]]:
    """Embed face-crop photos (whole images), skipping unreadable ones with a warning.
    Returns (embeddings, indices of ``paths`` kept)."""
    from tqdm import tqdm

    cache = cache or PixelCache()
    out, kept = [], []
    bar = tqdm(total=len(paths), unit="photo", disable=not progress, dynamic_ncols=True, desc="embed")
    for i in range(0, len(paths), batch):
        pixels, k = load_batch(paths[i : i + batch], embedder.input_size, cache)
        if len(k):
            out.append(embedder.embed(to_template(list(pixels), embedder.template)))
            kept += [i + j for j in k]
        bar.update(min(batch, len(paths) - i))
    bar.close()
    dim = out[0].shape[1] if out else 128
    return (np.concatenate(out) if out else np.zeros((0, dim), np.float32)), kept


def embed_detected(
    embedder: Embedder, paths: list[Path], detect: str, progress: bool = False
) -> tuple[np.ndarray, list[int]]:
    """Embed the one face of each photo found by detection (``auto`` / ``on``); unreadable photos and
    photos with no face or several are skipped with a warning. Returns (embeddings, indices kept)."""
    from tqdm import tqdm

    out, faces, kept = [], [], []
    for i, path in enumerate(tqdm(paths, unit="photo", disable=not progress, dynamic_ncols=True, desc="library")):
        try:
            face = only_face(read_faces(path, detect, embedder.template), path)
        except ImageReadError as e:
            warn_skip(path, str(e).split(": ", 1)[-1])
            continue
        if face is not None:
            faces.append(face)
            kept.append(i)
        if len(faces) == 256:  # embedded as they come: the bar counts the whole work, memory stays flat
            out.append(embed_faces(embedder, faces))
            faces = []
    out.append(embed_faces(embedder, faces))  # the embedder returns (0, D) for no faces
    return np.concatenate(out), kept


@dataclass
class Library:
    """Centroids of the people of a folder, and the threshold that says 'unknown'."""

    names: list[str]
    centroids: Centroids
    threshold: float | None
    embedder: Embedder

    @classmethod
    def from_folder(
        cls,
        root: str | Path,
        embedder: Embedder,
        threshold: float | None = None,
        cache: PixelCache | None = None,
        detect: str = "auto",
        progress: bool = False,
    ) -> Library:
        """Embed every photo of ``root/<Person>/`` and average per person.

        ``detect="off"``: each photo is a face crop (the PubFig83 protocol); otherwise faces are found
        and aligned as they are in probes, and a photo without exactly one face is skipped (warned)."""
        folder = discover(root)
        if detect == "off":
            emb, kept = embed_paths(embedder, folder.paths, cache, progress=progress)
        else:
            emb, kept = embed_detected(embedder, folder.paths, detect, progress)
        if not kept:
            raise UserError(f"{root}: no readable photos in the library")
        labels = folder.labels[kept]
        present = np.unique(labels)
        every = Centroids.of(emb, labels, len(folder.names))
        cents = Centroids(every.vectors[present], every.counts[present])
        thr = threshold if threshold is not None else embedder.threshold
        return cls([folder.names[i] for i in present], cents, thr, embedder)

    def match(self, embeddings: np.ndarray, top: int = 5) -> list[Identification]:
        """The ``top`` nearest people of each embedding; unknown above the threshold."""
        idx, dist = self.centroids.nearest(embeddings, top)
        out = []
        for row_i, row_d in zip(idx, dist):
            cands = [Candidate(self.names[int(i)], round(float(d), 6)) for i, d in zip(row_i, row_d)]
            known = bool(cands) and (self.threshold is None or cands[0].distance <= self.threshold)
            out.append(Identification(cands[0].name if known else None, cands[0].distance, None, cands))
        return out

    def identify(
        self,
        photos: Sequence[Photo],
        top: int = 5,
        detect: str = "auto",
        progress: bool = False,
        max_pixels: int = MAX_PIXELS,
    ) -> Recognition:
        """Every face of each photo (files, folders, bytes, binary files, arrays), answered; iterating the
        result gives one answer per photo read, ``.skipped`` the others with why."""
        return recognize(
            expand(photos),
            self.embedder.template,
            lambda faces: embed_faces(self.embedder, faces),
            lambda emb: self.match(emb, top),
            detect,
            max_pixels,
            progress,
        )
