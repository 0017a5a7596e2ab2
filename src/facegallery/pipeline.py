"""The one recognition pipeline behind the CLI, the Python API and the HTTP service.

Photos come in as paths, bytes (named with :class:`~facegallery.images.PhotoBytes` or not), open binary
files or RGB arrays; they are decoded on a thread pool, their faces found and aligned, embedded in
shared batches and matched; what comes out is a typed :class:`~facegallery.answers.Recognition`: the
stable answer per photo, and each photo skipped with its reason and error kind. Nothing here prints or
warns: each interface reports the skipped photos its own way (warnings on the CLI, JSON over HTTP).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegallery.alignment import Template
from facegallery.answers import Identification, Recognition, Skipped, face_answer
from facegallery.detection import faces_in
from facegallery.errors import InvalidInput, UserError
from facegallery.faces import Face
from facegallery.images import MAX_PIXELS, PhotoBytes, PhotoFile, load_image, photo_bytes, photo_name, sha256_of

#: Anything the pipeline reads a photo from.
Photo = PhotoFile | np.ndarray
#: Photos decoded together (and embedded together) at a time.
BATCH = 256

Embed = Callable[[list[Face]], np.ndarray]
Match = Callable[[np.ndarray], list[Identification]]


@dataclass
class ReadPhoto:
    """One photo read: as given, the name it is reported under, its content hash (when asked for) and
    its faces, largest first; ``faces`` is None when its hash was already known (not decoded at all)."""

    photo: Photo
    path: str
    sha256: str | None
    faces: list[Face] | None


def _name(photo: Photo) -> str:
    return "<array>" if isinstance(photo, np.ndarray) else photo_name(photo)


def _decode(
    photo: Photo, with_hash: bool, known: set[str], max_pixels: int
) -> tuple[str | None, np.ndarray | None] | Skipped:
    """(hash or None, pixels, or None when the hash is known), or why it cannot be used."""
    name = _name(photo)
    try:
        if isinstance(photo, np.ndarray):
            if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
                raise InvalidInput(f"{name}: expected an RGB uint8 image (H, W, 3), got {photo.dtype} {photo.shape}")
            sha = sha256_of(photo) if with_hash else None
            return sha, None if sha in known else photo
        if isinstance(photo, (str, os.PathLike)):
            try:
                str(photo).encode("utf-8")
            except UnicodeEncodeError:  # stored and reported as text: it could not be found again
                raise InvalidInput(f"{name}: its file name is not valid UTF-8; rename the file") from None
        if with_hash:
            data = photo_bytes(photo)
            sha = sha256_of(data)
            return sha, None if sha in known else load_image(PhotoBytes(name, data), max_pixels)
        return None, load_image(photo, max_pixels)
    except UserError as e:
        msg = str(e)
        return Skipped(name, e if msg.startswith(f"{name}: ") else type(e)(f"{name}: {msg}"))


def read_photos(
    photos: Sequence[Photo],
    detect: str,
    template: Template,
    with_hash: bool = False,
    known: set[str] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Iterator[ReadPhoto | Skipped]:
    """A :class:`ReadPhoto` or a :class:`~facegallery.answers.Skipped` per photo, in order. Decoding runs
    on a thread pool using all cores; detection (``detect``: auto / on / off) runs here, one photo at a
    time, aligning faces into ``template`` (the embedder's). With ``with_hash`` each photo's content
    sha256 is computed, and a photo whose hash is in ``known`` is not decoded."""
    known = known or set()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for s in range(0, len(photos), BATCH):
            chunk = photos[s : s + BATCH]
            for photo, got in zip(chunk, pool.map(lambda p: _decode(p, with_hash, known, max_pixels), chunk)):
                if isinstance(got, Skipped):
                    yield got
                    continue
                sha, pixels = got
                faces = None
                if pixels is not None:
                    try:
                        faces = faces_in(pixels, detect, template)
                    except UserError as e:
                        yield Skipped(_name(photo), e)
                        continue
                yield ReadPhoto(photo, _name(photo), sha, faces)


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


def recognize(
    photos: Sequence[Photo],
    template: Template,
    embed: Embed,
    match: Match,
    detect: str = "auto",
    max_pixels: int = MAX_PIXELS,
    progress: bool = False,
) -> Recognition:
    """Every face of every photo, answered: faces found under ``detect``, embedded by ``embed`` in
    batches of up to :data:`BATCH` photos, and matched by ``match`` (embeddings -> one
    :class:`~facegallery.answers.Identification` per row)."""
    from tqdm import tqdm

    result = Recognition()
    pending: list[ReadPhoto] = []

    def flush() -> None:
        flat = [f for r in pending for f in r.faces or []]
        found = iter(match(embed(flat)) if flat else [])
        for r in pending:
            faces = [face_answer(f, next(found), with_detection=detect != "off") for f in r.faces or []]
            result.answers.append({"path": r.path, "faces": faces})
        pending.clear()

    with tqdm(total=len(photos), unit="photo", disable=not progress, dynamic_ncols=True, desc="identify") as bar:
        for got in read_photos(photos, detect, template, max_pixels=max_pixels):
            bar.update(1)
            if isinstance(got, Skipped):
                result.skipped.append(got)
            else:
                pending.append(got)
                if len(pending) == BATCH:
                    flush()
        flush()
    return result
