"""The gallery's search index, kept in step with its store.

The index (:mod:`facegallery.gallery.index`: exact up to ``EXACT_MAX`` people, compressed above) holds
each centroid as a :func:`~facegallery.recognition.searchable_centroids` row, whose plain L2 distance to
a :func:`~facegallery.recognition.searchable_queries` row of a unit query is the count-aware centroid
distance + 1. It is built from the store on first search, updated in place by this process's own
writes, brought up to date when another process has written (the store's data version and generation
tell; by the people changed where the store logs them, else rebuilt), and a large compressed one is kept
by the store (beside the gallery file; in PostgreSQL, in the database for every replica) so that the
next process need not retrain it.
"""

from __future__ import annotations

import warnings

import numpy as np

from facegallery.errors import UserError
from facegallery.gallery import index as ix
from facegallery.gallery.index import CompressedIndex, ExactIndex
from facegallery.gallery.store import Centroids, GalleryStore
from facegallery.recognition import searchable_centroids, searchable_queries

#: What the cached compressed index beside the gallery holds, in its file name: bumped whenever that changes
#: so that older caches are ignored (and removed on the next save). 2: :func:`searchable_centroids` rows.
INDEX_FORMAT = 2


def index_rows(cents: Centroids) -> tuple[np.ndarray, np.ndarray]:
    """(ids, :func:`searchable_centroids`) of stored centroids."""
    return cents.ids, searchable_centroids(cents.vectors, cents.counts)


class LiveIndex:
    """The search index of one open gallery (see the module docstring)."""

    def __init__(self, store: GalleryStore):
        self.store = store
        self.index: ExactIndex | CompressedIndex | None = None
        self._gen = -1  # the store generation the index reflects
        self._saved = False  # whether the store keeps this index
        self._data_version = store.data_version()

    @staticmethod
    def key(generation: int) -> str:
        """What a saved index is kept under: :data:`INDEX_FORMAT` and the generation it reflects (others are
        ignored, and dropped at the next save)."""
        return f"v{INDEX_FORMAT}-{generation}"

    def look_again(self) -> None:
        """Check the store at the next search even if no change was announced (an answer named someone
        the store no longer holds)."""
        self._data_version = -1

    def drop(self) -> None:
        """Forget the index: the next search rebuilds it from the store."""
        self.index = None

    def save_if_current(self) -> None:
        """Persist a compressed index that reflects the store and is not saved yet (called on close)."""
        if isinstance(self.index, CompressedIndex) and not self._saved and self._gen == self.store.generation():
            self._save()

    def _save(self) -> None:
        assert isinstance(self.index, CompressedIndex)
        try:
            self.store.keep_index(self.key(self._gen), self.index.save)
            self._saved = True
        except (OSError, RuntimeError, UserError) as e:  # a read-only gallery only costs speed next time
            warnings.warn(f"search index not kept for {self.store.name}: {e}", stacklevel=3)

    def _load_centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, :func:`index_rows` of every centroid) streamed from the store into one preallocated array
        (no second copy)."""
        n, dim = self.store.count("centroids"), self.store.dimension or 0
        ids, vectors = np.empty(n, np.int64), np.empty((n, dim + 2), np.float32)
        i = 0
        for batch in self.store.centroid_batches(65536):
            ids[i : i + len(batch.ids)], vectors[i : i + len(batch.ids)] = index_rows(batch)
            i += len(batch.ids)
        return ids, vectors

    def current(self) -> ExactIndex | CompressedIndex:
        """The index for the store as it is now: kept while no one else has written (the store's data
        version tells, without a query where it can); brought up to date by the people changed since
        its generation where the store logs them (PostgreSQL); rebuilt otherwise, or when it outgrew
        its kind."""
        version = self.store.data_version()
        if self.index is not None and version == self._data_version and not self._grown():
            return self.index
        self._data_version = version
        gen = self.store.generation()
        if self.index is not None and not self._grown():
            if gen == self._gen:
                return self.index
            changed = self.store.changes_since(self._gen)
            if changed is not None:
                self._apply(changed)
                self._gen = gen
                if not self.index.stale:
                    return self.index
        self.index = None
        saved = self.store.cached_index(self.key(gen))
        if saved is not None:
            with saved:
                try:
                    self.index, self._saved = CompressedIndex.load(saved), True
                except ValueError as e:  # a damaged cache only costs a rebuild
                    warnings.warn(f"{e}; rebuilding it", stacklevel=3)
        if self.index is None:
            ids, vectors = self._load_centroids()
            self.index = ix.build_index(ids, vectors)
            self._saved = False
        self._gen = gen
        return self.index

    def _grown(self) -> bool:
        """Whether the index outgrew its kind (exact past EXACT_MAX, compressed past its retraining point)."""
        assert self.index is not None
        limit = ix.EXACT_MAX if isinstance(self.index, ExactIndex) else ix.RETRAIN_GROWTH * self.index.trained_on
        return len(self.index) > limit

    def _apply(self, changed: list[int]) -> None:
        """The centroids of ``changed`` people as the store holds them now (removed if gone)."""
        assert self.index is not None
        if not changed:
            return
        cents = self.store.centroids(changed)
        self.index.remove(np.array(changed, np.int64))
        if len(cents.ids):
            self.index.upsert(*index_rows(cents))
        self._saved = False

    def after_write(self, before: int, changed: list[int]) -> None:
        """Bring the index up to date with our own write of ``changed`` identities, whose transaction
        found the store at generation ``before`` (read under its write lock: if another process wrote
        after the index was built, ``before`` differs from the index's generation and it is dropped)."""
        if self.index is None:
            return
        if before != self._gen:
            self.index = None
            return
        self._apply(changed)
        self._gen = before + 1  # ours alone: a write by anyone after it shows as a newer generation
        if self.index.stale:
            self.index = None  # rebuilt from the store at the next search

    def search(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(identity ids, centroid distances) of the k nearest per row. Queries are made unit first (a
        no-op for embedder output); -1/inf pad."""
        q = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), np.float32(1e-12))
        ids, dist = self.current().search(searchable_queries(q), k)
        return ids, np.maximum(dist - np.float32(1.0), np.float32(0.0))  # -1/inf padding stays
