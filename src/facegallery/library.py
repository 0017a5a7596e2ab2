"""An in-memory library of people built from a folder-per-person tree: embed, average, answer.

This is the original method as a reusable object; the persistent, incremental version is
:mod:`facegallery.gallery`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from facegallery.answers import Candidate, Identification, Recognition, decide
from facegallery.datasets import discover
from facegallery.detectors import Detector
from facegallery.embedder import Embedder, embed_faces
from facegallery.errors import UserError
from facegallery.facecache import FaceCache
from facegallery.images import MAX_PIXELS, warn_skip
from facegallery.pipeline import Finder, Photo, ReadPhoto, embed_photos, expand, recognize
from facegallery.recognition import Centroids


def embed_paths(
    embedder: Embedder, paths: Sequence[Path], finder: Finder | None = None, progress: bool = False
) -> tuple[np.ndarray, list[int]]:
    """Embed the one face of each photo (default finder: none detected, each photo is a face crop, and
    the user's face cache), skipping with a warning photos that are unreadable or show no face or
    several. Returns (embeddings, indices of ``paths`` kept)."""
    from tqdm import tqdm

    finder = finder or Finder.of(embedder, detect="off")
    out, kept = [], []
    with tqdm(total=len(paths), unit="photo", disable=not progress, dynamic_ncols=True, desc="embed") as bar:
        photos = embed_photos(list(paths), finder, partial(embed_faces, embedder), "only", progress=bar.update)
        for i, got in enumerate(photos):
            if isinstance(got, ReadPhoto):
                out.append(got.faces[0].embedding)
                kept.append(i)
            else:
                warn_skip(Path(got.path), got.reason)
    dim = int(embedder.spec["embedding_dim"])
    return (np.stack(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)), kept


@dataclass
class Library:
    """Centroids of the people of a folder, and the threshold that says 'unknown'."""

    names: list[str]
    centroids: Centroids
    threshold: float | None
    embedder: Embedder
    detector: str | Detector | None = None
    cache: FaceCache | bool = True

    @classmethod
    def from_folder(
        cls,
        root: str | Path,
        embedder: Embedder,
        threshold: float | None = None,
        detect: str = "auto",
        progress: bool = False,
        detector: str | Detector | None = None,
        cache: FaceCache | bool = True,
    ) -> Library:
        """Embed every photo of ``root/<Person>/`` and average per person.

        ``detect="off"``: each photo is a face crop (the PubFig83 protocol); otherwise faces are found
        by ``detector`` (a name or a detector; None: the default) and aligned as they are in probes, and
        a photo without exactly one face is skipped (warned). Faces and embeddings are kept in the face
        cache (``cache``: True for the user's, False for none) so a second run decodes nothing."""
        folder = discover(root)
        finder = Finder.of(embedder, detect, detector, cache)
        emb, kept = embed_paths(embedder, folder.paths, finder, progress)
        if not kept:
            raise UserError(f"{root}: no readable photos in the library")
        labels = folder.labels[kept]
        present = np.unique(labels)
        every = Centroids.of(emb, labels, len(folder.names))
        cents = Centroids(every.vectors[present], every.counts[present])
        thr = threshold if threshold is not None else embedder.threshold
        return cls([folder.names[i] for i in present], cents, thr, embedder, finder.detector, cache)

    def match(self, embeddings: np.ndarray, top: int = 5) -> list[Identification]:
        """The ``top`` nearest people of each embedding; unknown above the threshold."""
        idx, dist = self.centroids.nearest(embeddings, top)
        out = []
        for row_i, row_d in zip(idx, dist):
            cands = [Candidate(self.names[int(i)], round(float(d), 6)) for i, d in zip(row_i, row_d)]
            out.append(decide(cands, self.threshold))
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
            Finder.of(self.embedder, detect, self.detector, self.cache),
            partial(embed_faces, self.embedder),
            lambda emb: self.match(emb, top),
            max_pixels,
            progress,
        )
