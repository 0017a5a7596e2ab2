"""Enrolment in two steps: :func:`prepare` (read each photo, find its one face, embed it, make its
thumbnail; no lock held, as slow as photos are) and :func:`commit` (one write transaction per person
that re-reads what it depends on: the gallery's model, the person, the photos already stored).

The CLI, the Python API and the HTTP service all enrol through these two steps, so an enrolment racing
another process's (or a re-embedding) can neither store photos twice nor mix two models' vectors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facegallery.answers import Skipped
from facegallery.errors import Conflict, InvalidInput, UserError
from facegallery.faces import Face
from facegallery.gallery.binding import ModelBinding
from facegallery.gallery.store import GalleryStore, check_name
from facegallery.images import MAX_PIXELS
from facegallery.pipeline import Embed, Finder, Photo, Progress, ReadPhoto, embed_photos
from facegallery.recognition import count_factor

if TYPE_CHECKING:
    from facegallery.embedder import Embedder

#: Picks the face to enrol from a photo's faces, or None with why (e.g. the face at a given box).
Choose = Callable[[list[Face]], tuple[Face | None, str]]


@dataclass
class EnrollResult:
    """What one person's enrolment did: photos added, already there (same bytes), or rejected (each
    rejected photo in ``problems``, with why)."""

    name: str
    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    problems: list[Skipped] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return self.duplicates + self.rejected


@dataclass
class Prepared:
    """One person's new faces, embedded, ready for :func:`commit`: a row ``(source, sha256, detect)``,
    an embedding and a thumbnail (or None) per face; the model (``fingerprint``) and the detector
    (name and settings, None for crops) that made them; and the result so far (duplicates, rejects)."""

    name: str
    rows: list[tuple[str | None, str, str]]
    vectors: np.ndarray
    thumbnails: list[bytes | None]
    fingerprint: str
    detector: dict | None
    result: EnrollResult
    metadata: dict | None = None


def photo_source(photo: Photo) -> str | None:
    """What a gallery records as a photo's source: its absolute path, or None (bytes, files, arrays)."""
    return str(Path(photo).resolve()) if isinstance(photo, (str, os.PathLike)) else None


def detectors(store: GalleryStore) -> list[dict]:
    """The detectors (name and settings) the gallery's photos were found with, first used first."""
    try:
        found = json.loads(store.meta("detectors") or "[]")
    except ValueError:
        return []
    if not isinstance(found, list):
        return []
    return [d for d in found if isinstance(d, dict) and isinstance(d.get("name"), str)]


def prepare(
    store: GalleryStore,
    people: Sequence[tuple[str, Sequence[Photo]]],
    finder: Finder,
    embed: Embed,
    detector: dict | None,
    metadata: dict[str, dict] | None = None,
    max_pixels: int = MAX_PIXELS,
    progress: Progress | None = None,
    choose: Choose | None = None,
    skip_known: bool = True,
) -> Iterator[Prepared]:
    """Each person's photos read and embedded through :func:`~facegallery.pipeline.embed_photos` (one
    face per photo, else rejected; or the face ``choose`` picks from each photo's faces, with why
    when none; photos of several people share batches), in order. With ``skip_known`` a photo whose
    bytes are stored for that person already is a duplicate, not decoded (without, :func:`commit`
    still counts it a duplicate). Holds no lock; reads the store only for ``skip_known``."""
    people = [(check_name(name), list(photos)) for name, photos in people]
    known = {name: _known(store, name) if skip_known else set() for name, _ in people}
    one_face = "only" if choose is None else None
    flat = [(name, photo) for name, photos in people for photo in photos]
    photos = [p for _, p in flat]
    read = partial(embed_photos, finder=finder, embed=embed, one_face=one_face, with_hash=True, max_pixels=max_pixels)
    got = list(read(photos, known=set().union(*known.values()), progress=progress))
    # a photo stored for someone else in this batch came back unread: read it now
    again = [i for i, (name, _) in enumerate(flat) if _unread(got[i]) and got[i].sha256 not in known[name]]
    for i, r in zip(again, read([photos[i] for i in again])):
        got[i] = r
    by_person: dict[str, list[ReadPhoto | Skipped]] = {name: [] for name, _ in people}
    for (name, _), r in zip(flat, got):
        by_person[name].append(r)
    for name, _ in people:
        res, rows, faces, seen = EnrollResult(name), [], [], set(known[name])
        for r in by_person[name]:
            if isinstance(r, Skipped):
                res.rejected += 1
                res.problems.append(r)
            elif r.sha256 in seen:
                res.duplicates += 1
            else:
                face, why = choose(r.faces or []) if choose is not None else (r.faces[0], "")
                if face is None:
                    res.rejected += 1
                    res.problems.append(Skipped(r.path, InvalidInput(f"{r.path}: {why}")))
                    continue
                seen.add(r.sha256)
                rows.append((photo_source(r.photo), r.sha256, finder.detect))
                faces.append(face)
        vectors = np.stack([f.embedding for f in faces]).astype(np.float32) if faces else np.zeros((0, 0), np.float32)
        thumbs = [f.thumbnail() for f in faces]
        yield Prepared(name, rows, vectors, thumbs, finder.fingerprint, detector, res, (metadata or {}).get(name))


def _known(store: GalleryStore, name: str) -> set[str]:
    ident = store.identity_id(name)
    return store.photo_hashes(ident) if ident is not None else set()


def _unread(r: ReadPhoto | Skipped) -> bool:
    return isinstance(r, ReadPhoto) and r.faces is None


def faces_of(
    name: str,
    embeddings: np.ndarray,
    sources: Sequence[tuple[str | None, str]],
    fingerprint: str,
    detect: str,
    thumbnails: Sequence[bytes | None] | None,
    detector: dict | None,
) -> Prepared:
    """Already-embedded faces of one person as a :class:`Prepared` (a face given twice is one)."""
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(sources):
        raise UserError(f"enroll_faces: {len(sources)} sources for embeddings of shape {embeddings.shape}")
    if thumbnails is not None and len(thumbnails) != len(sources):
        raise UserError(f"enroll_faces: {len(thumbnails)} thumbnails for {len(sources)} sources")
    res = EnrollResult(check_name(name))
    rows, keep, seen = [], [], set()
    for i, (source, sha) in enumerate(sources):
        if sha in seen:
            res.duplicates += 1
            continue
        seen.add(sha)
        rows.append((source, sha, detect))
        keep.append(i)
    thumbs = [thumbnails[i] for i in keep] if thumbnails is not None else [None] * len(keep)
    return Prepared(res.name, rows, embeddings[keep], thumbs, fingerprint, detector, res)


def commit(
    store: GalleryStore,
    binding: ModelBinding,
    embedder: Embedder,
    prep: Prepared,
    near: float | None = None,
) -> tuple[EnrollResult, int, int | None]:
    """Write one :class:`Prepared` person in one transaction that re-checks the model (``embedder`` must
    be the one that embedded them and the gallery's), re-reads the person's stored photos (one stored
    meanwhile is a duplicate, not written twice), and writes identity, photos, embeddings, thumbnails
    and centroid. With ``near``, an existing person whose centroid lies farther than ``near`` from
    the new faces' mean (photo-vs-person distance) is refused: they look like someone else.
    Returns (result, the generation before the write, the person's id or None when nothing was written)."""
    res = prep.result
    if not prep.rows:
        return res, -1, None
    if prep.fingerprint != embedder.fingerprint:
        raise Conflict(
            f"these faces were embedded by another model ({prep.fingerprint}) than {store.name}'s "
            f"{embedder.name} ({embedder.fingerprint}); embed them again with --model {embedder.name}"
        )
    with store.transaction() as write:
        binding.record(embedder, prep.vectors.shape[1])
        if prep.detector is not None and prep.detector not in detectors(store):
            store.set_meta("detectors", json.dumps([*detectors(store), prep.detector]))
        ident = store.identity_id(prep.name)
        if ident is None:
            ident = store.add_identity(prep.name, prep.metadata)
        else:
            if near is not None:
                _refuse_if_far(store, ident, prep, near)
            if prep.metadata:
                store.set_metadata(ident, prep.metadata)
        stored = store.photo_hashes(ident)
        keep = [i for i, (_, sha, _) in enumerate(prep.rows) if sha not in stored]
        store.add_photos(ident, [prep.rows[i] for i in keep], prep.vectors[keep], [prep.thumbnails[i] for i in keep])
        store.update_centroid(ident)
    res.added = len(keep)
    res.duplicates += len(prep.rows) - len(keep)
    return res, write.before, ident


def _refuse_if_far(store: GalleryStore, ident: int, prep: Prepared, near: float) -> None:
    cents = store.centroids([ident])
    if not len(cents.ids):
        return
    mean = prep.vectors.astype(np.float64).mean(0)
    mean /= max(np.linalg.norm(mean), 1e-12)
    d = float(((cents.vectors[0] - mean) ** 2).sum() / count_factor(cents.counts[:1])[0])
    if d > near:
        raise Conflict(
            f"{prep.name!r}: these {len(prep.rows)} faces lie at distance {d:.3f} from the person's "
            f"{int(cents.counts[0])} stored photos, beyond the unknown threshold {near:.3f}: they look like "
            "someone else; nothing was added (pass --force to add them anyway)"
        )
