"""Nothing found twice: each photo's faces (boxes, landmarks, scores), their embeddings and thumbnails,
kept in one SQLite file under the user cache folder.

An entry is keyed by the photo's content sha256, the detection mode, the detector with its settings
and weights, the embedder's fingerprint and its template's landmark positions, so another detector,
another ``min_face``, another model or another alignment is another entry, and a renamed or copied
photo is a hit. Library building, enrolment, identify, evaluate, cluster
and LFW all read and write it through :mod:`facegallery.pipeline`. Entries hold numbers only (an
``.npz`` without pickles); a torn or foreign entry reads as a miss. ``facegallery cache`` shows it and
clears it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegallery.faces import Face
from facegallery.images import default_cache_dir

log = logging.getLogger(__name__)

FILE = "faces.sqlite"


#: Part of every key: raised when the way faces are found or aligned changes for every detector.
VERSION = 3
#: Reading an npz header parses it with ``ast.literal_eval``, which CPython before 3.11.8 cannot run on two
#: threads at once ("SystemError: AST constructor recursion depth mismatch", a 500 seen under load on
#: 3.11.7): the service's workers decode cache entries one at a time (microseconds each).
_HEADERS = threading.Lock()


@dataclass(frozen=True)
class CacheKey:
    """What an entry depends on besides the photo's bytes."""

    detect: str
    detector: str  # detectors.detector_key(), "" when detection is off
    fingerprint: str  # the embedder's
    alignment: str  # the template's (its name and every landmark position it holds)

    def of(self, sha256: str) -> str:
        parts = (sha256, self.detect, self.detector, self.fingerprint, self.alignment, str(VERSION))
        return hashlib.sha256("|".join(parts).encode()).hexdigest()


def encode(faces: list[Face], embeddings: np.ndarray) -> bytes:
    """An entry's bytes: the faces' numbers, embeddings and thumbnails as one pickle-free npz."""
    n = len(faces)
    marks = np.full((n, 5, 2), np.nan, np.float32)
    for i, f in enumerate(faces):
        if f.landmarks is not None:
            marks[i] = np.asarray(f.landmarks, np.float32).reshape(-1, 2)[:5]
    thumbs = [f.thumbnail() for f in faces]
    buf = io.BytesIO()
    np.savez(
        buf,
        boxes=np.array([f.box for f in faces], np.float32).reshape(n, 4),
        landmarks=marks,
        scores=np.array([np.nan if f.detection_score is None else f.detection_score for f in faces], np.float32),
        detected=np.array([f.detected for f in faces], bool),
        templates=np.array([f.template or "" for f in faces], dtype="U64"),
        schemes=np.array([f.scheme or "" for f in faces], dtype="U32"),
        embeddings=np.asarray(embeddings, np.float32).reshape(n, -1) if n else np.zeros((0, 0), np.float32),
        thumb_sizes=np.array([len(t) for t in thumbs], np.int64),
        thumbs=np.frombuffer(b"".join(thumbs), np.uint8),
    )
    return buf.getvalue()


def decode(data: bytes) -> list[Face]:
    """The faces of an entry, each with its embedding and thumbnail and no crop."""
    with _HEADERS, np.load(io.BytesIO(data), allow_pickle=False) as npz:
        z = {k: npz[k] for k in npz.files}
    ends = np.cumsum(z["thumb_sizes"])
    thumbs = z["thumbs"].tobytes()
    faces = []
    for i in range(len(z["boxes"])):
        marks = z["landmarks"][i]
        score = float(z["scores"][i])
        faces.append(
            Face(
                crop=None,
                box=[round(float(v), 2) for v in z["boxes"][i]],
                detected=bool(z["detected"][i]),
                landmarks=None
                if np.isnan(marks).any()
                else [[round(float(x), 2), round(float(y), 2)] for x, y in marks],
                detection_score=None if np.isnan(score) else round(score, 4),
                template=str(z["templates"][i]) or None,
                scheme=str(z["schemes"][i]) or None,
                embedding=z["embeddings"][i].copy(),
                jpeg=thumbs[ends[i] - z["thumb_sizes"][i] : ends[i]],
            )
        )
    return faces


class FaceCache:
    """The cache file (``root/faces.sqlite``; root: ``FACEGALLERY_CACHE`` or the user cache folder).

    Safe to share between threads and processes (SQLite's locking); a cache that cannot be written
    (read-only, full disk) only costs time."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.path = self.root / FILE
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection | None:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS faces (key TEXT PRIMARY KEY, photo TEXT NOT NULL, "
                    "detector TEXT NOT NULL, model TEXT NOT NULL, data BLOB NOT NULL)"
                )
            except (OSError, sqlite3.Error) as e:
                log.debug("face cache unavailable: %s", e)
                return None
            self._local.db = db
        return db

    def get(self, key: CacheKey, sha256: str) -> list[Face] | None:
        """The cached faces of the photo with content ``sha256``, or None."""
        db = self._db()
        if db is None:
            return None
        try:
            row = db.execute("SELECT data FROM faces WHERE key = ?", (key.of(sha256),)).fetchone()
            return None if row is None else decode(row[0])
        except (sqlite3.Error, OSError, ValueError, KeyError) as e:
            log.debug("face cache entry unreadable: %s", e)
            return None

    def put(self, key: CacheKey, entries: list[tuple[str, list[Face], np.ndarray]]) -> None:
        """Keep ``(sha256, faces, embeddings)`` of several photos (one transaction)."""
        db = self._db()
        if db is None or not entries:
            return
        try:
            rows = [(key.of(sha), sha, key.detector, key.fingerprint, encode(f, e)) for sha, f, e in entries]
            db.executemany("INSERT OR REPLACE INTO faces VALUES (?, ?, ?, ?, ?)", rows)
        except (sqlite3.Error, OSError, ValueError) as e:
            log.debug("face cache not written: %s", e)

    def summary(self) -> list[dict]:
        """Entries and bytes per detector and model."""
        db = self._db() if self.path.exists() else None
        if db is None:
            return []
        rows = db.execute(
            "SELECT detector, model, COUNT(*), SUM(LENGTH(data)) FROM faces GROUP BY detector, model ORDER BY 3 DESC"
        ).fetchall()
        return [{"detector": d, "model": m, "photos": n, "bytes": int(b or 0)} for d, m, n, b in rows]

    def clear(self) -> int:
        """Delete every entry; how many there were."""
        db = self._db() if self.path.exists() else None
        if db is None:
            return 0
        n = db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
        db.execute("DELETE FROM faces")
        db.execute("VACUUM")
        return int(n)
