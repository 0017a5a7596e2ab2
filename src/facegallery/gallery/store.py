"""What a gallery's storage must do, whatever holds it: the :class:`GalleryStore` protocol and its types.

A store holds people (``identities``: unique name, metadata), their photos (source, content sha256,
detect mode), one embedding per photo, one centroid per person (the mean of their embeddings, rewritten
in the same transaction as every change), face thumbnails and ``meta`` (model, dimension, threshold
rule, calibration cache, and a ``generation`` counter bumped by every write to photos or embeddings,
so that caches such as the search index and the calibration can tell they are stale).

It answers in arrays and dataclasses, never in a database's rows, and every change runs in
:meth:`GalleryStore.transaction`: committed whole or not at all, with the generation it started from,
so that a caller can tell whether anyone else wrote in between. A store that can only be read raises
:class:`~facegallery.errors.ReadOnly` before any work. SQLite (:mod:`facegallery.gallery.sqlite`) is
the embedded backend, PostgreSQL (:mod:`facegallery.gallery.postgres`) the one for several machines.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Literal, NamedTuple, Protocol

import numpy as np

from facegallery.errors import InvalidInput

MAX_NAME = 200


def check_name(name: str) -> str:
    """A person's name in Unicode NFC (so "José" typed either way is one person), or a one-line error:
    names become folder names and table keys, so empty names, path separators, non-printable
    characters, '.'/'..' and surrounding spaces are refused."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{name!r}: a person's name cannot be empty")
    name = unicodedata.normalize("NFC", name)
    if name != name.strip():
        raise InvalidInput(f"{name!r}: a person's name cannot start or end with spaces")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise InvalidInput(f"{name!r}: a person's name cannot contain a path separator or be '.'/'..'")
    if not name.isprintable():  # control and format characters, line/paragraph separators, odd spaces
        raise InvalidInput(f"{name!r}: a person's name cannot contain control characters")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"{name[:40]!r}...: a person's name is limited to {MAX_NAME} characters")
    return name


def vector_bytes(v: np.ndarray) -> bytes:
    """An embedding as stored: float32 bytes."""
    return np.ascontiguousarray(v, dtype=np.float32).tobytes()


def vectors_of(blobs: list[bytes], dim: int) -> np.ndarray:
    """Stored float32 bytes -> (N, dim) array in one copy."""
    if not blobs:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim).copy()


@dataclass
class Bulk:
    """Rows of a bulk enrolment, ready for any backend: new ``names`` (NFC, checked, sorted), per photo
    the index of its person (``owner``), its vector's bytes and their sha256 (the same vector twice for one
    person is one photo), and per person the photo count and centroid."""

    names: list[str]
    owner: np.ndarray
    blobs: list[bytes]
    hashes: list[str]
    counts: np.ndarray
    centroids: np.ndarray

    @classmethod
    def of(cls, names: list[str], vectors: np.ndarray) -> Bulk:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        nfc = [unicodedata.normalize("NFC", str(n)) for n in names]
        uniq, owner = np.unique(np.asarray(nfc, dtype=object).astype(str), return_inverse=True)
        people = [check_name(str(n)) for n in uniq]
        dim = vectors.shape[1]
        raw = vectors.tobytes()
        blobs = [raw[i * dim * 4 : (i + 1) * dim * 4] for i in range(len(vectors))]
        hashes = [hashlib.sha256(b).hexdigest() for b in blobs]
        seen: set[tuple[int, str]] = set()
        keep = [i for i, key in enumerate(zip(owner.tolist(), hashes)) if not (key in seen or seen.add(key))]
        if len(keep) < len(blobs):
            blobs, hashes = [blobs[i] for i in keep], [hashes[i] for i in keep]
            vectors, owner = vectors[keep], owner[keep]
        counts = np.bincount(owner, minlength=len(people))
        if (counts == 1).all():  # one row per person: the centroid is that row
            cents = np.empty_like(vectors)
            cents[owner] = vectors
        else:
            sums = np.zeros((len(people), dim), np.float64)
            np.add.at(sums, owner, vectors)
            cents = (sums / counts[:, None]).astype(np.float32)
        return cls(people, owner, blobs, hashes, counts, cents)


@dataclass
class Person:
    """One enrolled identity as listed by :meth:`GalleryStore.people`."""

    id: int
    name: str
    photos: int
    created: float
    metadata: dict | None


@dataclass
class Photo:
    """One stored photo (its embedding is read with :meth:`GalleryStore.embeddings`)."""

    id: int
    identity: int
    source: str | None
    sha256: str
    detect: str


class Centroids(NamedTuple):
    """Centroids of people: ids (int64), photo counts (int64), vectors (float32, N x D), by id."""

    ids: np.ndarray
    counts: np.ndarray
    vectors: np.ndarray


@dataclass(frozen=True)
class Write:
    """An open write transaction: ``before`` is the generation the store had when it began (what it
    reads as a caller's "nobody else wrote since I looked")."""

    before: int


Table = Literal["identities", "photos", "centroids"]


class GalleryStore(Protocol):
    """Storage of one gallery (see the module docstring). ``name`` is what messages call it (a file path,
    or a database URL without its password)."""

    name: str

    # ----- lifecycle and transactions
    def close(self) -> None: ...
    def transaction(self, bump: bool = True) -> AbstractContextManager[Write]:
        """One write transaction (whole or nothing; ``bump`` bumps the generation). Raises
        :class:`~facegallery.errors.ReadOnly` up front on a store that can only be read."""
        ...

    def snapshot(self) -> AbstractContextManager[None]:
        """Reads inside see one consistent state of the store (no one's commit shows half-way)."""
        ...

    def check_writable(self) -> None:
        """Raise :class:`~facegallery.errors.ReadOnly` (with why) if writes cannot succeed."""
        ...

    # ----- meta
    def meta(self, key: str, default: str | None = None) -> str | None: ...
    def set_meta(self, key: str, value: str | None) -> None: ...
    def generation(self) -> int: ...
    def data_version(self) -> int:
        """Changes whenever anyone else may have committed (cheaper than reading the generation)."""
        ...

    def changes_since(self, generation: int) -> list[int] | None:
        """The people changed after ``generation`` (for a search index to catch up), or None when the
        store cannot say (then everything is reloaded)."""
        ...

    @property
    def dimension(self) -> int | None: ...

    # ----- reading
    def identity_id(self, name: str) -> int | None: ...
    def require_identity(self, name: str) -> int: ...
    def people(self) -> list[Person]: ...
    def count(self, table: Table) -> int: ...
    def names_of(self, ids: np.ndarray | list[int]) -> dict[int, str]: ...
    def photos(self, identity: int | None = None) -> list[Photo]: ...
    def photo_hashes(self, identity: int) -> set[str]: ...
    def identity_ids(self) -> list[int]: ...
    def centroids(self, identities: list[int] | None = None) -> Centroids: ...
    def centroid_batches(self, size: int) -> Iterator[Centroids]: ...
    def embeddings(self, identities: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def thumbnail(self, identity: int, sha256: str | None = None) -> bytes | None: ...
    def thumbnails(self, photo_ids: list[int]) -> dict[int, bytes]:
        """The face thumbnails of these photos (those that have one), by photo id."""
        ...

    def cached_index(self, key: str) -> BinaryIO | None:
        """The search index saved under ``key`` (its format and the generation it reflects), or None."""
        ...

    def keep_index(self, key: str, write: Callable[[BinaryIO], None]) -> None:
        """Save a search index under ``key`` (``write`` writes it to a binary file), dropping older ones,
        so that the next process need not rebuild it; may raise ReadOnly or OSError (it only costs time)."""
        ...

    # ----- writing (inside a transaction)
    def add_identity(self, name: str, metadata: dict | None = None) -> int: ...
    def add_photos(
        self,
        identity: int,
        photos: list[tuple[str | None, str, str]],
        vectors: np.ndarray,
        thumbnails: list[bytes | None] | None = None,
    ) -> None: ...
    def set_metadata(self, identity: int, metadata: dict) -> None: ...
    def rename_identity(self, identity: int, name: str) -> None: ...
    def delete_identity(self, identity: int) -> None: ...
    def delete_photos(self, photo_ids: list[int]) -> None: ...
    def update_centroid(self, identity: int) -> None: ...
    def replace_embeddings(self, photo_ids: list[int], vectors: np.ndarray) -> None: ...
    def bulk_insert(self, names: list[str], vectors: np.ndarray) -> int: ...


def open_store(location: str | os.PathLike, create: bool = False) -> GalleryStore:
    """The store at ``location``: a PostgreSQL URL (``postgresql://user@host/db``) or a gallery file;
    created empty when missing only with ``create``."""
    from facegallery.gallery.postgres import PostgresStore, is_url

    if is_url(location):
        return PostgresStore.open(str(location), create=create)
    from facegallery.gallery.sqlite import SQLiteStore

    return SQLiteStore.open(location, create=create)
