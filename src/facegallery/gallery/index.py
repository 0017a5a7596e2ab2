"""Nearest-centroid search over a gallery: exact (NumPy) for small galleries, FAISS IVF above a size.

Both answer ``search(queries, k) -> (identity ids, squared distances)``, nearest first, padded with
id -1 / distance inf when fewer than k identities exist. Centroids are not unit length, so the FAISS
index uses the L2 metric on the raw centroids: its squared distances are exactly the ones the exact
search and the unknown threshold use (no renormalisation that would change the ranking).

Choices below come from ``benchmarks/bench_scale.py`` (2-core VM, 128-d, see benchmarks/RESULTS.md):
- ``EXACT_MAX``: the crossover, where one exact probe becomes slower than one IVF probe.
- IVF-Flat with ``nlist = 4 sqrt(N)`` lists and ``nprobe`` from :func:`nprobe_for` reaches recall@1 >= 0.99
  against exact search on noisy-copy probes at 1M, and keeps one copy of the vectors (1x raw memory),
  unlike HNSW (graph on top) whose build also took minutes on two cores and which cannot delete.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from facegallery.recognition import top_k

#: Exact search up to this many identities; the IVF index above it. Measured crossover: see module doc.
EXACT_MAX = 20_000
#: Rebuild (retrain) the IVF index when the gallery has grown this much since it was trained.
RETRAIN_GROWTH = 4.0


def nlist_for(n: int) -> int:
    """IVF lists for ``n`` vectors: about 4 sqrt(n) (faiss's guidance), at least 1."""
    return max(1, int(4 * math.sqrt(n)))


def nprobe_for(nlist: int) -> int:
    """Lists visited per probe: enough for recall@1 >= 0.99 (measured; see module doc)."""
    return min(nlist, max(8, nlist // 64))


class ExactIndex:
    """Brute force: distances to every centroid with one matrix product (norms cached)."""

    kind = "exact"

    def __init__(self, ids: np.ndarray, vectors: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.norms = (self.vectors * self.vectors).sum(1)

    def __len__(self) -> int:
        return len(self.ids)

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
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])
        self.vectors = np.concatenate([self.vectors, np.asarray(vectors, dtype=np.float32)])
        self.norms = (self.vectors * self.vectors).sum(1)

    def remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self.ids, np.asarray(ids, dtype=np.int64))
        if not keep.all():
            self.ids, self.vectors, self.norms = self.ids[keep], self.vectors[keep], self.norms[keep]


class IVFIndex:
    """FAISS ``IndexIVFFlat`` (L2) keyed by identity id; holds the only in-memory copy of the centroids."""

    kind = "ivf"

    def __init__(self, index, trained_on: int):
        self.index = index
        self.trained_on = trained_on

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, seed: int = 0) -> "IVFIndex":
        """Train the coarse quantizer on a sample (39 points per list, faiss's minimum) and add all."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        nlist = nlist_for(n)
        quantizer = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_L2)
        index.cp.niter = 10
        index.cp.seed = seed
        sample = min(n, 39 * nlist)
        train = vectors if sample == n else \
            vectors[np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))]
        index.train(train)
        index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        index.nprobe = nprobe_for(nlist)
        return cls(index, n)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        dist, ids = self.index.search(queries, k)
        dist = np.where(ids < 0, np.inf, np.maximum(dist, 0.0)).astype(np.float32)
        return ids, dist

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self.remove(ids)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove(self, ids: np.ndarray) -> None:
        self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, then rename)."""
        import faiss

        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "IVFIndex":
        import faiss

        index = faiss.read_index(str(path))
        return cls(index, int(index.ntotal))


def build_index(ids: np.ndarray, vectors: np.ndarray) -> ExactIndex | IVFIndex:
    """The right index for the gallery's size (see :data:`EXACT_MAX`)."""
    return IVFIndex.build(ids, vectors) if len(ids) > EXACT_MAX else ExactIndex(ids, vectors)


def _padded(ids: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if ids.shape[1] >= k:
        return ids, dist
    pad = k - ids.shape[1]
    return (np.pad(ids, ((0, 0), (0, pad)), constant_values=-1),
            np.pad(dist.astype(np.float32), ((0, 0), (0, pad)), constant_values=np.inf))
