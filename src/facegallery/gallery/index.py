"""Nearest-centroid search over a gallery: exact (NumPy) for small galleries, a compressed FAISS scan above.

Both answer ``search(queries, k) -> (identity ids, squared distances)``, nearest first, padded with
id -1 / distance inf when fewer than k identities exist, with the plain L2 metric on whatever rows they are
given. The gallery gives them :func:`~facegallery.recognition.searchable_centroids` (D + 2 columns, not unit
length) and searches with :func:`~facegallery.recognition.searchable_queries`, so that these L2 distances are
exactly the centroid distances (divided by 1 + 1/n, see :mod:`facegallery.recognition`) the unknown
threshold uses, plus 1.

Choices below come from ``benchmarks/bench_scale.py`` (2-core VM, 128-d, see benchmarks/RESULTS.md). Real
face centroids spread over ~35 effective dimensions and a probe lies far from its own centroid; on such data
partitioning (IVF) and graph (HNSW) indexes lose the true nearest centroid (at 100k: recall@1 0.95 with IVF
visiting a quarter of its lists, 0.96 with HNSW at efSearch 512), while scanning EVERY centroid as a short
product-quantised code (SIMD "fast scan") and re-ranking the best few by exact distance keeps recall@1 >= 0.99:
- ``EXACT_MAX``: up to here exact search is fast enough and needs no build;
- :func:`ann_factory`: one 4-bit sub-quantizer per 2 dimensions (33 bytes per 128-d identity, 130 columns
  searched) + the float rows for re-ranking (memory about 1.06x the raw vectors); ``REFINE``: candidates
  re-ranked per requested neighbour.
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

import numpy as np

from facegallery.recognition import top_k

#: Exact search up to this many identities; the compressed index above it.
EXACT_MAX = 20_000
#: Re-ranking depth of the compressed index (candidates per requested neighbour).
REFINE = 16
#: Centroids the product quantizer is trained on (a seeded sample above this; 65k gave recall@1 0.985 at
#: 1M, 156k 0.995, and training stays a few seconds).
TRAIN_SAMPLE = 262_144
#: Parts of the compressed index a single probe scans in parallel (one per core).
PARTS = os.cpu_count() or 1
#: Rebuild (retrain) the compressed index when the gallery has grown this much since it was trained...
RETRAIN_GROWTH = 4.0
#: ...or when this many of its rows have been removed or replaced (each costs every search a little).
MAX_DEAD = 1_000


def ann_factory(dim: int) -> str:
    """FAISS factory string of the compressed index: 4-bit codes, one per 2 dimensions, exact re-rank."""
    return f"PQ{dim // 2 if dim % 2 == 0 else dim}x4fs,RFlat"


class ExactIndex:
    """Brute force: distances to every row with one matrix product (norms cached)."""

    kind = "exact"
    stale = False  # always current: rows are really removed

    def __init__(self, ids: np.ndarray, vectors: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.norms = (self.vectors * self.vectors).sum(1)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        """The width of its rows."""
        return self.vectors.shape[1]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if not len(self.ids):
            return _padded(np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32), k)
        d = (queries * queries).sum(1)[:, None] + self.norms[None, :] - 2.0 * (queries @ self.vectors.T)
        np.maximum(d, 0.0, out=d)
        pos, dist = top_k(d, k)
        return _padded(self.ids[pos], dist, k)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the rows of ``ids``."""
        self.remove(ids)
        vectors = np.asarray(vectors, dtype=np.float32)
        # an index built empty (before anyone was enrolled) has no width yet: take the new rows'
        self.vectors = np.concatenate([self.vectors, vectors]) if len(self.ids) else vectors
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])
        self.norms = (self.vectors * self.vectors).sum(1)

    def remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self.ids, np.asarray(ids, dtype=np.int64))
        if not keep.all():
            self.ids, self.vectors, self.norms = self.ids[keep], self.vectors[keep], self.norms[keep]


class CompressedIndex:
    """FAISS product-quantised fast scan over all rows + exact re-ranking (see module doc).

    The rows are split into :data:`PARTS` FAISS indexes sharing one trained quantizer: FAISS scans
    for one query on one core, so a single probe searches the parts on parallel threads (FAISS releases
    the GIL) and merges them; a batch goes part by part, each on FAISS's own threads over queries.
    FAISS positions (part after part) map to identity ids through ``ids``; a removed or replaced centroid
    is only marked (id -1) and filtered out of answers, and the gallery rebuilds the index once it is
    :attr:`stale`. New centroids go to the last part.
    """

    kind = "pq"

    def __init__(self, parts: list, ids: np.ndarray, trained_on: int):
        self.parts = parts
        for part in parts:
            part.k_factor = REFINE
        self.ids = np.asarray(ids, dtype=np.int64)
        self.trained_on = trained_on
        self.dead = int((self.ids < 0).sum())
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, seed: int = 0) -> CompressedIndex:
        """Train the quantizer on a seeded sample of ``TRAIN_SAMPLE`` rows, then encode all."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(vectors)
        trained = faiss.index_factory(vectors.shape[1], ann_factory(vectors.shape[1]), faiss.METRIC_L2)
        trained.train(
            vectors
            if n <= TRAIN_SAMPLE
            else vectors[np.sort(np.random.default_rng(seed).choice(n, TRAIN_SAMPLE, replace=False))]
        )
        parts = []
        for rows in np.array_split(np.arange(n), max(1, min(PARTS, n))):
            part = faiss.clone_index(trained)
            part.add(vectors[rows[0] : rows[-1] + 1] if len(rows) else vectors[:0])
            parts.append(part)
        return cls(parts, ids, n)

    def __len__(self) -> int:
        return len(self.ids) - self.dead

    @property
    def dim(self) -> int:
        """The width of its rows."""
        return int(self.parts[0].d)

    @property
    def stale(self) -> bool:
        """Enough rows removed that filtering them costs more than rebuilding."""
        return self.dead > MAX_DEAD

    def _search_parts(self, queries: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """(squared distances, global positions) of the ``kk`` nearest, over all parts."""

        def one(part):
            return part.search(queries, min(kk, part.ntotal)) if part.ntotal else None

        if len(queries) == 1 and len(self.parts) > 1:
            self._pool = self._pool or ThreadPoolExecutor(len(self.parts))
            found = list(self._pool.map(one, self.parts))
        else:
            found = [one(part) for part in self.parts]
        dists, poss, offset = [], [], 0
        for part, got in zip(self.parts, found):
            if got is not None:
                dists.append(got[0])
                poss.append(np.where(got[1] >= 0, got[1] + offset, -1))
            offset += part.ntotal
        dist, pos = np.concatenate(dists, 1), np.concatenate(poss, 1)
        if len(dists) > 1:
            order = np.argsort(np.where(pos >= 0, dist, np.inf), axis=1, kind="stable")[:, :kk]
            dist, pos = np.take_along_axis(dist, order, 1), np.take_along_axis(pos, order, 1)
        return dist, pos

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        kk = min(k + self.dead, len(self.ids))
        if kk == 0:
            return _padded(np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32), k)
        dist, pos = self._search_parts(queries, kk)
        ids = np.where(pos >= 0, self.ids[np.maximum(pos, 0)], -1)
        if self.dead:  # live answers first, still in distance order, then cut to k
            order = np.argsort(ids < 0, axis=1, kind="stable")[:, :k]
            ids, dist = np.take_along_axis(ids, order, 1), np.take_along_axis(dist, order, 1)
        dist = np.where(ids < 0, np.inf, np.maximum(dist, 0.0)).astype(np.float32)
        return _padded(ids, dist, k)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the rows of ``ids`` (replaced rows are marked removed)."""
        ids = np.asarray(ids, dtype=np.int64)
        self.remove(ids)
        self.parts[-1].add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.ids = np.concatenate([self.ids, ids])

    def remove(self, ids: np.ndarray) -> None:
        hit = np.isin(self.ids, np.asarray(ids, dtype=np.int64)) & (self.ids >= 0)
        self.ids[hit] = -1
        self.dead += int(hit.sum())

    def save(self, f: BinaryIO) -> None:
        """Write one ``.npz`` to the binary file ``f``: FAISS's own serialisation of each part as bytes + the
        id map; no pickle."""
        import faiss

        np.savez(
            f,
            ids=self.ids,
            trained_on=np.int64(self.trained_on),
            **{f"part{i}": faiss.serialize_index(p) for i, p in enumerate(self.parts)},
        )

    @classmethod
    def load(cls, path: BinaryIO) -> CompressedIndex:
        """Read what :meth:`save` wrote from a binary file; ValueError when it is not one (the caller
        rebuilds). Each part is streamed from the archive into FAISS, never held twice (a whole-array copy
        would stay resident)."""
        import faiss

        try:
            with zipfile.ZipFile(path) as zf:
                with zf.open("ids.npy") as f:
                    ids = np.load(f, allow_pickle=False)
                with zf.open("trained_on.npy") as f:
                    trained_on = int(np.load(f, allow_pickle=False))
                names = sorted((n[:-4] for n in zf.namelist() if n.startswith("part")), key=lambda n: int(n[4:]))
                parts = []
                for name in names:
                    with zf.open(f"{name}.npy") as f:
                        version = np.lib.format.read_magic(f)
                        (
                            np.lib.format.read_array_header_1_0
                            if version == (1, 0)
                            else np.lib.format.read_array_header_2_0
                        )(f)
                        parts.append(faiss.read_index(faiss.PyCallbackIOReader(f.read)))
        except (OSError, KeyError, ValueError, RuntimeError, zipfile.BadZipFile) as e:
            raise ValueError(
                f"{getattr(path, 'name', 'the saved index')}: not a search index ({e.__class__.__name__})"
            ) from None
        if not parts or sum(p.ntotal for p in parts) != len(ids):
            raise ValueError(f"{getattr(path, 'name', 'the saved index')}: index and id map disagree")
        return cls(parts, ids, trained_on)


def build_index(ids: np.ndarray, vectors: np.ndarray) -> ExactIndex | CompressedIndex:
    """The right index for the gallery's size (see :data:`EXACT_MAX`)."""
    return CompressedIndex.build(ids, vectors) if len(ids) > EXACT_MAX else ExactIndex(ids, vectors)


def _padded(ids: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if ids.shape[1] >= k:
        return ids, dist
    pad = k - ids.shape[1]
    return (
        np.pad(ids, ((0, 0), (0, pad)), constant_values=-1),
        np.pad(dist.astype(np.float32), ((0, 0), (0, pad)), constant_values=np.inf),
    )
