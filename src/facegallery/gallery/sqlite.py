"""The embedded gallery backend: one SQLite file (WAL journal, foreign keys, full sync), implementing
:class:`~facegallery.gallery.store.GalleryStore`.

Every change runs in one ``BEGIN IMMEDIATE`` transaction: it is committed whole or not at all, so a crash
or Ctrl-C never leaves half a person, and a committed write survives the process (``synchronous=FULL``).
A file (or folder) that cannot be written is opened read-only: reads work, writes are refused up front
with :class:`~facegallery.errors.ReadOnly`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from facegallery.errors import NotFound, ReadOnly, UserError
from facegallery.gallery.store import (
    Bulk,
    Centroids,
    Person,
    Photo,
    Table,
    Write,
    check_name,
    vector_bytes,
    vectors_of,
)

SCHEMA_VERSION = 1
SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    metadata TEXT,
    created REAL NOT NULL
);
CREATE TABLE photos (
    id INTEGER PRIMARY KEY,
    identity INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    source TEXT,
    sha256 TEXT NOT NULL,
    detect TEXT NOT NULL DEFAULT 'off',
    added REAL NOT NULL,
    UNIQUE (identity, sha256)
);
CREATE TABLE embeddings (
    photo INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE centroids (
    identity INTEGER PRIMARY KEY REFERENCES identities(id) ON DELETE CASCADE,
    count INTEGER NOT NULL,
    vector BLOB NOT NULL
);
"""
#: Added after schema 1 shipped; created on open when missing (readers that predate it ignore it).
_THUMBNAILS = """CREATE TABLE IF NOT EXISTS thumbnails (
    photo INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
    jpeg BLOB NOT NULL
)"""


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _expected_columns() -> dict[str, set[str]]:
    """The columns each table of :data:`_SCHEMA` has (read from a scratch database: one source of truth)."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(_SCHEMA)
    conn.execute(_THUMBNAILS)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = {t: _columns(conn, t) for t in tables}
    conn.close()
    return out


def _unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be written (the file, or the folder SQLite keeps its journal in), or None."""
    if not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(path.parent, os.W_OK):
        return f"its folder {path.parent} is read-only"
    return None


class SQLiteStore:
    """A gallery file. Open with :meth:`open`; writes go through :meth:`transaction`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, read_only: str | None = None):
        self.conn = conn
        self.path = path
        self.name = str(path)
        self.read_only = read_only  # why it cannot be written, or None

    # ----- opening --------------------------------------------------------------------------------
    @staticmethod
    def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA journal_size_limit=67108864")  # truncate the WAL after big transactions
        return conn

    @staticmethod
    def _connect(path: Path, read_only: str | None) -> sqlite3.Connection:
        """A connection; read-only ones by URI (``immutable`` where not even SQLite's shared-memory file
        can be made beside the gallery: a read-only folder)."""
        opts = dict(isolation_level=None, timeout=30.0, check_same_thread=False)
        if read_only is None:
            return sqlite3.connect(str(path), **opts)
        uri = path.resolve().as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, **opts)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, **opts)

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = False) -> SQLiteStore:
        """Open ``path``; a missing file is an error unless ``create``. Files that are not galleries
        (not SQLite, other tables or columns, newer schema) are refused with one line, never modified;
        one that cannot be written opens read-only."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise NotFound(f"{path}: no such gallery (create it with --create, or Gallery.open(path, create=True))")
            cls._create(path)
        elif path.is_dir():
            raise UserError(f"{path}: not a gallery file (it is a folder)")
        elif not path.is_file():
            raise UserError(f"{path}: not a gallery file (not a regular file)")
        try:
            with open(path, "rb") as f:
                header = f.read(16)
        except OSError as e:
            raise UserError(f"{path}: cannot read the gallery ({e.strerror or e})") from None
        if header != SQLITE_HEADER:
            raise UserError(f"{path}: not a facegallery gallery (not an SQLite file)")
        read_only = _unwritable(path)
        conn = cls._connect(path, read_only)
        try:  # look before configuring: WAL mode would rewrite the header of someone else's file
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            row = (
                conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if "meta" in tables
                else None
            )
            columns = {t: _columns(conn, t) for t in tables}
        except sqlite3.DatabaseError as e:
            conn.close()
            raise UserError(f"{path}: corrupt gallery file ({e})") from None
        expected = _expected_columns()
        if not {"meta", "identities", "photos", "embeddings", "centroids"} <= tables:
            conn.close()
            raise UserError(f"{path}: not a facegallery gallery (missing tables)")
        version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version != SCHEMA_VERSION:
            conn.close()
            raise UserError(f"{path}: gallery schema version {version}, this facegallery reads {SCHEMA_VERSION}")
        wrong = sorted(t for t in tables & set(expected) if not expected[t] <= columns[t])
        if wrong:
            conn.close()
            raise UserError(
                f"{path}: not a facegallery gallery (table {wrong[0]} lacks columns "
                f"{', '.join(sorted(expected[wrong[0]] - columns[wrong[0]]))})"
            )
        if read_only is None:
            cls._configure(conn)
            if "thumbnails" not in tables:
                conn.execute(_THUMBNAILS)
        return cls(conn, path, read_only)

    @classmethod
    def _create(cls, path: Path) -> None:
        """Write an empty gallery beside ``path`` and move it into place, so a crash during creation
        never leaves a half-initialised file under the real name."""
        if not path.parent.is_dir():
            raise UserError(f"{path}: folder {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK):
            raise ReadOnly(f"{path}: cannot create a gallery, folder {path.parent} is read-only")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.executescript(_SCHEMA)
            conn.execute(_THUMBNAILS)
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("created", str(time.time())), ("generation", "0")],
            )
        finally:
            conn.close()
        os.replace(tmp, path)

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close."""
        if self.read_only is None:
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:
                pass  # another connection is reading; its own close will checkpoint
        self.conn.close()

    # ----- transactions and meta ------------------------------------------------------------------
    def check_writable(self) -> None:
        """Refuse writes to a gallery that can only be read, before any work is done."""
        if self.read_only is not None:
            raise ReadOnly(f"{self.path}: the gallery can only be read ({self.read_only}); nothing was changed")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every read inside sees the file as it was at the first one (WAL)."""
        if self.conn.in_transaction:  # inside a write: already one consistent view
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    @contextmanager
    def transaction(self, bump: bool = True) -> Iterator[Write]:
        """One write transaction (committed whole, or rolled back on any exception, Ctrl-C included).
        With ``bump`` (any change to photos, embeddings or centroids) it bumps ``generation``. The
        :class:`Write` it yields holds the generation read under the write lock, before the bump."""
        self.check_writable()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            write = Write(self.generation())
            if bump:
                self.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
            yield write
            self.conn.execute("COMMIT")
        except BaseException as e:
            if self.conn.in_transaction:  # SQLite may have rolled back itself (a full disk): keep the first error
                self.conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError) and "full" in str(e):
                raise UserError(f"{self.path}: {e}; nothing of this change was written") from None
            if isinstance(e, sqlite3.OperationalError) and "readonly" in str(e):
                raise ReadOnly(f"{self.path}: the gallery can only be read ({e}); nothing was changed") from None
            raise

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or with None delete) a meta entry; call inside :meth:`transaction`."""
        if value is None:
            self.conn.execute("DELETE FROM meta WHERE key=?", (key,))
        else:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def generation(self) -> int:
        """Bumped by every committed change to photos/embeddings/centroids, by any process."""
        return int(self.meta("generation", "0"))

    def data_version(self) -> int:
        """Changes when another connection commits (SQLite's cheap 'has anyone else written?')."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # ----- the search index, beside the file ---------------------------------------------------------
    def _index_file(self, key: str) -> Path:
        return self.path.with_name(f"{self.path.name}.index-{key}")

    def cached_index(self, key: str) -> BinaryIO | None:
        """The index file beside the gallery for ``key``, open, or None."""
        try:
            return open(self._index_file(key), "rb")
        except OSError:
            return None

    def keep_index(self, key: str, write: Callable[[BinaryIO], None]) -> None:
        """Write the index beside the gallery (atomically) and remove the other index files there."""
        target = self._index_file(key)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        for old in self.path.parent.glob(f"{self.path.name}.index-*"):
            if old != target:
                old.unlink(missing_ok=True)

    def changes_since(self, generation: int) -> list[int] | None:
        """SQLite keeps no log of who changed: None (the index reloads; a file serves one machine)."""
        return None

    # ----- reading --------------------------------------------------------------------------------
    @property
    def dimension(self) -> int | None:
        d = self.meta("dimension")
        return int(d) if d is not None else None

    def identity_id(self, name: str) -> int | None:
        name = unicodedata.normalize("NFC", name) if isinstance(name, str) else name
        row = self.conn.execute("SELECT id FROM identities WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def require_identity(self, name: str) -> int:
        """The id of ``name``, or a one-line error."""
        ident = self.identity_id(name)
        if ident is None:
            raise NotFound(f"{name!r}: no such person in {self.path}")
        return ident

    def people(self) -> list[Person]:
        """Everyone enrolled, by name, with photo counts."""
        rows = self.conn.execute(
            "SELECT i.id, i.name, COUNT(p.id), i.created, i.metadata FROM identities i "
            "LEFT JOIN photos p ON p.identity = i.id GROUP BY i.id ORDER BY i.name"
        )
        return [Person(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None) for r in rows]

    def count(self, table: Table) -> int:
        assert table in ("identities", "photos", "centroids")
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def names_of(self, ids: np.ndarray | list[int]) -> dict[int, str]:
        """Names of identity ids (looked up on demand, so a million names need not sit in memory)."""
        uniq = sorted({int(i) for i in np.asarray(ids).ravel() if i >= 0})
        out: dict[int, str] = {}
        for s in range(0, len(uniq), 900):
            chunk = uniq[s : s + 900]
            q = f"SELECT id, name FROM identities WHERE id IN ({','.join('?' * len(chunk))})"
            out.update(self.conn.execute(q, chunk).fetchall())
        return out

    def photos(self, identity: int | None = None) -> list[Photo]:
        q = "SELECT id, identity, source, sha256, detect FROM photos"
        rows = (
            self.conn.execute(q + " WHERE identity=? ORDER BY id", (identity,))
            if identity is not None
            else self.conn.execute(q + " ORDER BY id")
        )
        return [Photo(*r) for r in rows]

    def photo_hashes(self, identity: int) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT sha256 FROM photos WHERE identity=?", (identity,))}

    def identity_ids(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT identity FROM centroids")]

    def _centroids(self, rows: list[tuple[int, int, bytes]]) -> Centroids:
        return Centroids(
            np.fromiter((r[0] for r in rows), np.int64, len(rows)),
            np.fromiter((r[1] for r in rows), np.int64, len(rows)),
            vectors_of([r[2] for r in rows], self.dimension or 0),
        )

    def centroids(self, identities: list[int] | None = None) -> Centroids:
        """The centroids of everyone (by id) or of ``identities``."""
        q = "SELECT identity, count, vector FROM centroids"
        if identities is None:
            return self._centroids(self.conn.execute(q + " ORDER BY identity").fetchall())
        rows: list[tuple[int, int, bytes]] = []
        for s in range(0, len(identities), 900):  # SQLite's limit on bound parameters
            chunk = [int(i) for i in identities[s : s + 900]]
            rows += self.conn.execute(q + f" WHERE identity IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return self._centroids(rows)

    def centroid_batches(self, size: int) -> Iterator[Centroids]:
        """Every centroid by id, ``size`` at a time (a million people without one huge list)."""
        cur = self.conn.execute("SELECT identity, count, vector FROM centroids ORDER BY identity")
        while rows := cur.fetchmany(size):
            yield self._centroids(rows)

    def embeddings(self, identities: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(identity id per photo, embeddings (P, D)) of all photos or those of ``identities``."""
        q = "SELECT p.identity, e.vector FROM photos p JOIN embeddings e ON e.photo = p.id"
        if identities is None:
            rows = self.conn.execute(q + " ORDER BY p.id").fetchall()
        else:
            rows = []
            for s in range(0, len(identities), 900):
                chunk = list(identities[s : s + 900])
                rows += self.conn.execute(
                    q + f" WHERE p.identity IN ({','.join('?' * len(chunk))}) ORDER BY p.id", chunk
                ).fetchall()
        labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return labels, vectors_of([r[1] for r in rows], self.dimension or 0)

    # ----- writing (inside a transaction) ---------------------------------------------------------
    def add_identity(self, name: str, metadata: dict | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO identities (name, metadata, created) VALUES (?, ?, ?)",
            (check_name(name), json.dumps(metadata) if metadata else None, time.time()),
        )
        return int(cur.lastrowid)

    def add_photos(
        self,
        identity: int,
        photos: list[tuple[str | None, str, str]],
        vectors: np.ndarray,
        thumbnails: list[bytes | None] | None = None,
    ) -> None:
        """Insert photos ``(source, sha256, detect)`` with their embedding rows (and face thumbnails)."""
        now = time.time()
        thumbnails = thumbnails or [None] * len(photos)
        for (source, sha, detect), v, jpeg in zip(photos, vectors, thumbnails):
            cur = self.conn.execute(
                "INSERT INTO photos (identity, source, sha256, detect, added) VALUES (?, ?, ?, ?, ?)",
                (identity, source, sha, detect, now),
            )
            self.conn.execute("INSERT INTO embeddings VALUES (?, ?, ?)", (cur.lastrowid, len(v), vector_bytes(v)))
            if jpeg is not None:
                self.conn.execute("INSERT INTO thumbnails VALUES (?, ?)", (cur.lastrowid, jpeg))

    def thumbnail(self, identity: int, sha256: str | None = None) -> bytes | None:
        """The JPEG face thumbnail of one of a person's photos (the first enrolled that has one), or of
        the photo with content ``sha256``; None when there is none."""
        sql = "SELECT t.jpeg FROM thumbnails t JOIN photos p ON p.id = t.photo WHERE p.identity = ?"
        args: tuple = (identity,)
        if sha256 is not None:
            sql, args = sql + " AND p.sha256 = ?", (identity, sha256)
        row = self.conn.execute(sql + " ORDER BY p.id LIMIT 1", args).fetchone()
        return row[0] if row else None

    def thumbnails(self, photo_ids: list[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for s in range(0, len(photo_ids), 900):
            chunk = [int(i) for i in photo_ids[s : s + 900]]
            q = f"SELECT photo, jpeg FROM thumbnails WHERE photo IN ({','.join('?' * len(chunk))})"
            out.update(self.conn.execute(q, chunk).fetchall())
        return out

    def set_metadata(self, identity: int, metadata: dict) -> None:
        self.conn.execute("UPDATE identities SET metadata=? WHERE id=?", (json.dumps(metadata), identity))

    def rename_identity(self, identity: int, name: str) -> None:
        self.conn.execute("UPDATE identities SET name=? WHERE id=?", (check_name(name), identity))

    def delete_identity(self, identity: int) -> None:
        """The person, their photos, embeddings and centroid (by the schema's cascades)."""
        self.conn.execute("DELETE FROM identities WHERE id=?", (identity,))

    def delete_photos(self, photo_ids: list[int]) -> None:
        self.conn.executemany("DELETE FROM photos WHERE id=?", [(int(i),) for i in photo_ids])

    def update_centroid(self, identity: int) -> None:
        """Recompute one identity's centroid exactly from its stored embeddings (no drift)."""
        _, emb = self.embeddings([identity])
        if len(emb):
            c = emb.astype(np.float64).mean(0).astype(np.float32)
            self.conn.execute(
                "INSERT OR REPLACE INTO centroids VALUES (?, ?, ?)", (identity, len(emb), vector_bytes(c))
            )
        else:
            self.conn.execute("DELETE FROM centroids WHERE identity=?", (identity,))

    def replace_embeddings(self, photo_ids: list[int], vectors: np.ndarray) -> None:
        self.conn.executemany(
            "UPDATE embeddings SET dim=?, vector=? WHERE photo=?",
            [(len(v), vector_bytes(v), int(p)) for p, v in zip(photo_ids, vectors)],
        )

    def bulk_insert(self, names: list[str], vectors: np.ndarray) -> int:
        """Many precomputed embeddings at once (rows sharing a name are one person's photos), in the
        caller's transaction, with ``executemany`` and ids assigned here. Names must all be new.
        Returns the number of identities added."""
        bulk = Bulk.of(names, vectors)
        first = int(self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM identities").fetchone()[0]) + 1
        now = time.time()
        try:
            self.conn.executemany(
                "INSERT INTO identities (id, name, metadata, created) VALUES (?, ?, NULL, ?)",
                ((first + i, n, now) for i, n in enumerate(bulk.names)),
            )
        except sqlite3.IntegrityError:
            taken = [n for n in bulk.names if self.identity_id(n) is not None][:3]
            raise UserError(
                f"already enrolled in {self.path}: {', '.join(taken)} (bulk enrolment adds new people only)"
            ) from None
        first_photo = int(self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM photos").fetchone()[0]) + 1
        self.conn.executemany(
            "INSERT INTO photos (id, identity, source, sha256, detect, added) VALUES (?, ?, NULL, ?, 'off', ?)",
            ((first_photo + i, first + int(o), h, now) for i, (o, h) in enumerate(zip(bulk.owner, bulk.hashes))),
        )
        dim = bulk.centroids.shape[1]
        self.conn.executemany(
            "INSERT INTO embeddings VALUES (?, ?, ?)", ((first_photo + i, dim, b) for i, b in enumerate(bulk.blobs))
        )
        self.conn.executemany(
            "INSERT INTO centroids VALUES (?, ?, ?)",
            ((first + i, int(c), v.tobytes()) for i, (c, v) in enumerate(zip(bulk.counts, bulk.centroids))),
        )
        return len(bulk.names)
