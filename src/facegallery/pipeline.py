"""The one recognition pipeline behind the CLI, the Python API and the HTTP service.

Photos come in as paths, bytes (named with :class:`~facegallery.images.PhotoBytes` or not), open binary
files or RGB arrays; they are decoded on a thread pool, their faces found and aligned, embedded in
shared batches and matched; what comes out is a typed :class:`~facegallery.answers.Recognition`: the
stable answer per photo, and each photo skipped with its reason and error kind. Nothing here prints or
warns: each interface reports the skipped photos its own way (warnings on the CLI, JSON over HTTP).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from facegallery.alignment import Template
from facegallery.answers import Identification, Recognition, Skipped, face_answer
from facegallery.detection import faces_in, read_faces
from facegallery.detectors import Detector, detector_key, load_detector
from facegallery.errors import InvalidInput, UserError
from facegallery.facecache import CacheKey, FaceCache
from facegallery.faces import Face, not_one_face
from facegallery.images import MAX_PIXELS, PhotoBytes, PhotoFile, photo_bytes, photo_name, sha256_of

#: Anything the pipeline reads a photo from.
Photo = PhotoFile | np.ndarray
#: Photos decoded together (and embedded together) at a time.
BATCH = 256

Embed = Callable[[list[Face]], np.ndarray]
Match = Callable[[np.ndarray], list[Identification]]
#: Told how many more photos were read (a progress bar's ``update``).
Progress = Callable[[int], None]
#: What a photo must show: every face (None), its largest one ("largest": identify, verify), or exactly
#: one ("only": enrolment, libraries), else it is skipped.
OneFace = Literal["largest", "only"] | None


def default_workers() -> int:
    """Photos decoded and detected at once: one per core (``FACEGALLERY_WORKERS`` overrides)."""
    raw = os.environ.get("FACEGALLERY_WORKERS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else (os.cpu_count() or 1)


@dataclass
class Finder:
    """How the faces of photos are found for one embedder: the detection mode (auto / on / off), the
    detector (a name or a detector; None: the default), the embedder's template and fingerprint, the
    face cache (None: none), and how many photos are decoded and detected at once."""

    template: Template
    fingerprint: str
    detect: str = "auto"
    detector: str | Detector | None = None
    cache: FaceCache | None = None
    workers: int = field(default_factory=default_workers)
    #: a pool shared by several callers (the service's bounded detection pool); None: one per call
    pool: Executor | None = None

    @classmethod
    def of(
        cls,
        embedder,
        detect: str = "auto",
        detector: str | Detector | None = None,
        cache: FaceCache | None | bool = True,
        workers: int | None = None,
    ) -> Finder:
        """The finder for ``embedder``; ``cache=True``: the user's face cache, ``False``/None: none.
        ``workers`` left out: one per core to find faces, one for face crops (``detect="off"``: a crop's
        landmarks cost less than the threads' contention with the embedder, 124 vs 103 photos/s on 2
        cores, RESULTS 14f)."""
        store = FaceCache() if cache is True else (cache or None)
        workers = workers or (1 if detect == "off" else default_workers())
        return cls(embedder.template, embedder.fingerprint, detect, detector, store, workers)

    def __post_init__(self) -> None:
        if self.detect != "off":
            self.detector = load_detector(self.detector)  # an unknown name fails here, before any work

    @cached_property
    def key(self) -> CacheKey:
        """The face cache's key for this finder (computed once: it is read for every photo)."""
        det = "" if self.detect == "off" else detector_key(self.detector)
        alignment = hashlib.sha1(repr(self.template).encode()).hexdigest()[:16]
        return CacheKey(self.detect, det, self.fingerprint, alignment)

    def faces(self, photo: Photo, max_pixels: int = MAX_PIXELS) -> list[Face]:
        """The faces of one photo (decoded, detected, aligned; not embedded)."""
        if isinstance(photo, np.ndarray):
            return faces_in(photo, self.detect, self.template, self.detector)
        return read_faces(photo, self.detect, self.template, self.detector, max_pixels)

    def remember(self, photos: Sequence[ReadPhoto]) -> None:
        """Keep the embedded faces of photos that were not read from the cache."""
        if self.cache is not None:
            fresh = [
                r
                for r in photos
                if r.fresh and r.sha256 and r.faces is not None and all(f.embedding is not None for f in r.faces)
            ]
            self.cache.put(self.key, [(r.sha256, r.faces, embedded(r.faces)) for r in fresh])


def embedded(faces: list[Face]) -> np.ndarray:
    """The embeddings the faces carry (N, D); (0, 0) for none."""
    return np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 0), np.float32)


@dataclass
class ReadPhoto:
    """One photo read: as given, the name it is reported under, its content hash (when asked for) and
    its faces, largest first; ``faces`` is None when its hash was already known (not decoded at all);
    ``fresh``: found now, not read from the face cache."""

    photo: Photo
    path: str
    sha256: str | None
    faces: list[Face] | None
    fresh: bool = True


def _name(photo: Photo) -> str:
    return "<array>" if isinstance(photo, np.ndarray) else photo_name(photo)


def _read(photo: Photo, finder: Finder, with_hash: bool, known: set[str], max_pixels: int) -> ReadPhoto | Skipped:
    """One photo's faces, from the cache when they are there, or why it cannot be used."""
    name = _name(photo)
    try:
        if isinstance(photo, np.ndarray):
            if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
                raise InvalidInput(f"{name}: expected an RGB uint8 image (H, W, 3), got {photo.dtype} {photo.shape}")
            source: Photo = photo
            sha = sha256_of(photo) if with_hash or finder.cache is not None else None
        else:
            if isinstance(photo, (str, os.PathLike)):
                try:
                    str(photo).encode("utf-8")
                except UnicodeEncodeError:  # stored and reported as text: it could not be found again
                    raise InvalidInput(f"{name}: its file name is not valid UTF-8; rename the file") from None
            data = photo_bytes(photo)
            source, sha = PhotoBytes(name, data), sha256_of(data)
        if sha is not None and sha in known:
            return ReadPhoto(photo, name, sha, None)
        cached = finder.cache.get(finder.key, sha) if finder.cache is not None and sha else None
        if cached is not None:
            return ReadPhoto(photo, name, sha, cached, fresh=False)
        return ReadPhoto(photo, name, sha, finder.faces(source, max_pixels))
    except UserError as e:
        msg = str(e)
        return Skipped(name, e if msg.startswith(f"{name}: ") else type(e)(f"{name}: {msg}"))


def read_photos(
    photos: Sequence[Photo],
    finder: Finder,
    with_hash: bool = False,
    known: set[str] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Iterator[ReadPhoto | Skipped]:
    """A :class:`ReadPhoto` or a :class:`~facegallery.answers.Skipped` per photo, in order. Photos are
    read, looked up in the face cache, decoded and their faces found and aligned on ``finder.workers``
    threads (decoding, the detector's network and the warps release the GIL). With ``with_hash`` each
    photo's content sha256 is given, and a photo whose hash is in ``known`` is not decoded."""
    known = known or set()

    def read(photo: Photo) -> ReadPhoto | Skipped:
        return _read(photo, finder, with_hash, known, max_pixels)

    if finder.pool is not None:
        yield from finder.pool.map(read, photos)
    elif finder.workers <= 1 or len(photos) <= 1:
        yield from map(read, photos)
    else:
        with ThreadPoolExecutor(max_workers=finder.workers) as pool:
            for s in range(0, len(photos), BATCH):
                yield from pool.map(read, photos[s : s + BATCH])


def expand(photos: Sequence[Photo]) -> list[Photo]:
    """Photos with folders expanded into their image files (recursively, sorted; junk warned)."""
    from facegallery.images import iter_images

    out: list[Photo] = []
    for p in photos:
        if isinstance(p, (str, os.PathLike)) and Path(p).is_dir():
            out += iter_images([p])
        else:
            out.append(p)
    return out


def _demand(got: ReadPhoto | Skipped, one_face: OneFace, detect: str) -> ReadPhoto | Skipped:
    """``got``, or why it is skipped under ``one_face``."""
    if isinstance(got, Skipped) or got.faces is None or one_face is None:
        return got
    if one_face == "only" and len(got.faces) != 1:
        return Skipped(got.path, InvalidInput(f"{got.path}: {not_one_face(got.faces)}"))
    if not got.faces:
        return Skipped(got.path, InvalidInput(f"{got.path}: no face found (detect={detect})"))
    return got


def embed_photos(
    photos: Sequence[Photo],
    finder: Finder,
    embed: Embed,
    one_face: OneFace = None,
    with_hash: bool = False,
    known: set[str] | None = None,
    max_pixels: int = MAX_PIXELS,
    progress: Progress | None = None,
) -> Iterator[ReadPhoto | Skipped]:
    """Every photo route's one path: :func:`read_photos`, then each photo's faces embedded (``Face.embedding``
    set) in shared batches of up to :data:`BATCH` photos and kept in the finder's face cache; a photo
    that does not show what ``one_face`` asks becomes a :class:`~facegallery.answers.Skipped`. Photos
    whose hash is in ``known`` come out with ``faces`` None, neither decoded nor embedded. In order."""
    pending: list[ReadPhoto | Skipped] = []

    def flush() -> Iterator[ReadPhoto | Skipped]:
        read = [r for r in pending if isinstance(r, ReadPhoto) and r.faces]
        faces = [f for r in read for f in r.faces or []]
        if faces:
            embed(faces)
        finder.remember(read)
        yield from pending
        pending.clear()

    for got in read_photos(photos, finder, with_hash or finder.cache is not None, known, max_pixels):
        if progress is not None:
            progress(1)
        pending.append(_demand(got, one_face, finder.detect))
        if len(pending) == BATCH:
            yield from flush()
    yield from flush()


def recognize(
    photos: Sequence[Photo],
    finder: Finder,
    embed: Embed,
    match: Match,
    max_pixels: int = MAX_PIXELS,
    progress: bool = False,
) -> Recognition:
    """Every face of every photo, answered: faces found by ``finder`` (or read from its cache),
    embedded by ``embed`` (:func:`embed_photos`), and matched by ``match`` (embeddings -> one
    :class:`~facegallery.answers.Identification` per row) in batches of up to :data:`BATCH` photos."""
    from tqdm import tqdm

    result = Recognition()
    pending: list[ReadPhoto] = []

    def flush() -> None:
        flat = [f for r in pending for f in r.faces or []]
        found = iter(match(embedded(flat)) if flat else [])
        for r in pending:
            faces = [face_answer(f, next(found), with_detection=finder.detect != "off") for f in r.faces or []]
            result.answers.append({"path": r.path, "faces": faces})
        pending.clear()

    with tqdm(total=len(photos), unit="photo", disable=not progress, dynamic_ncols=True, desc="identify") as bar:
        for got in embed_photos(photos, finder, embed, max_pixels=max_pixels, progress=bar.update):
            if isinstance(got, Skipped):
                result.skipped.append(got)
            else:
                pending.append(got)
                if len(pending) == BATCH:
                    flush()
        flush()
    return result
