"""A gallery in PostgreSQL (``postgresql://user@host/db``), implementing
:class:`~facegallery.gallery.store.GalleryStore` with psycopg 3 (the ``postgres`` extra).

For several service replicas on one database, or a gallery shared by a team; SQLite stays the embedded
default. The tables are SQLite's (people, photos, embeddings as float32 ``bytea``, centroids, thumbnails,
meta) plus ``changes``: which people each generation touched, so that a replica brings its search
index up to date by reading only what changed since the generation it holds (also after a restart or a
lost connection) instead of reloading a million centroids. Every write transaction takes the
generation row ``FOR UPDATE`` first (writers queue as with SQLite's ``BEGIN IMMEDIATE``) and ends with
a ``NOTIFY`` on :data:`CHANNEL` (delivered only if it commits), which tells the other replicas to look;
until one comes, a replica answers from memory without asking the database whether anything changed.

The schema is versioned: :data:`MIGRATIONS` are applied in order at open, under an advisory lock, each
in its own transaction. SQL is only ever sent with parameters. The URL's password never appears in
messages: :attr:`PostgresStore.name` is the URL without it. Losing the server is
:class:`~facegallery.errors.Unavailable` (HTTP 503); the next call reconnects.
"""

from __future__ import annotations

import json
import logging
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from facegallery.errors import NotFound, ReadOnly, Unavailable, UserError
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

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: The notification channel writes announce themselves on (payload: "<generation> <pid>").
CHANNEL = "facegallery_changes"
#: Seconds after which a replica looks at the database again even without a notification.
RECHECK = 1.0
#: Generations of ``changes`` kept; a replica further behind reloads everything.
KEEP_CHANGES = 100_000
#: Schema migrations by version: the SQL that brings version n-1 to n.
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE identities (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        metadata TEXT,
        created DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE photos (
        id BIGSERIAL PRIMARY KEY,
        identity BIGINT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
        source TEXT,
        sha256 TEXT NOT NULL,
        detect TEXT NOT NULL DEFAULT 'off',
        added DOUBLE PRECISION NOT NULL,
        UNIQUE (identity, sha256)
    );
    CREATE TABLE embeddings (
        photo BIGINT PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
        dim INTEGER NOT NULL,
        vector BYTEA NOT NULL
    );
    CREATE TABLE centroids (
        identity BIGINT PRIMARY KEY REFERENCES identities(id) ON DELETE CASCADE,
        count INTEGER NOT NULL,
        vector BYTEA NOT NULL
    );
    CREATE TABLE thumbnails (
        photo BIGINT PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
        jpeg BYTEA NOT NULL
    );
    CREATE TABLE changes (generation BIGINT NOT NULL, identity BIGINT NOT NULL);
    CREATE INDEX changes_generation ON changes (generation);
    INSERT INTO meta VALUES ('generation', '0'), ('schema_version', '0');
    """,
}
_MIGRATION_LOCK = 0x66616365  # pg_advisory_xact_lock key for migrations ("face")


def is_url(location: object) -> bool:
    """Whether a gallery location is a PostgreSQL URL (else a file path)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def public_url(url: str) -> str:
    """``url`` without its password (what logs, errors and answers may show)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise UserError("a PostgreSQL gallery needs psycopg: pip install 'facegallery[postgres]'") from None
    return psycopg


class PostgresStore:
    """A gallery in a PostgreSQL database. Open with :meth:`open`; writes go through :meth:`transaction`."""

    def __init__(self, url: str):
        self.url = url
        self.name = public_url(url)
        self.conn = None
        self._seen = 0  # notifications from others seen (data_version)
        self._checked = time.monotonic()  # when data_version last moved on its own
        self._touched: set[int] | None = None  # people changed by the open write transaction
        self._connect()
        self.read_only = self._unwritable()

    # ----- connection -----------------------------------------------------------------------------
    def _connect(self) -> None:
        psycopg = _psycopg()
        try:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            self.conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.OperationalError as e:
            raise Unavailable(f"{self.name}: cannot reach the database ({_first_line(e)})") from None
        self._seen += 1  # anything may have happened while we were away

    def _ok(self):
        """The connection, reconnected (with a log line) when the server went away."""
        if self.conn is None or self.conn.closed or self.conn.broken:
            log.warning("facegallery: reconnecting to %s", self.name)
            self._connect()
            log.warning("facegallery: reconnected to %s", self.name)
        return self.conn

    def _run(self, sql: str, args: tuple | list = ()):
        """Execute ``sql`` with parameters. A connection the server dropped between two statements (a
        restart) is reconnected and the statement tried once more, outside transactions only; a server
        still away is :class:`Unavailable`, one line."""
        psycopg = _psycopg()
        conn = self._ok()
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            return conn.execute(sql, args)
        except psycopg.OperationalError as e:
            if not (idle and conn.broken):
                raise Unavailable(f"{self.name}: the database is unavailable ({_first_line(e)})") from None
        try:
            return self._ok().execute(sql, args)
        except psycopg.OperationalError as e:
            raise Unavailable(f"{self.name}: the database is unavailable ({_first_line(e)})") from None

    def _unwritable(self) -> str | None:
        user, ok = self._run(
            "SELECT current_user, has_table_privilege('identities', 'INSERT') "
            "AND has_table_privilege('meta', 'UPDATE') AND has_table_privilege('changes', 'INSERT')"
        ).fetchone()
        return None if ok else f"database user {user} may not write to it"

    @classmethod
    def open(cls, url: str, create: bool = False) -> PostgresStore:
        """Open the gallery in the database at ``url``; an empty database is an error unless ``create``
        (which creates the tables). A database holding other tables, or a newer schema, is refused with
        one line, never modified."""
        psycopg = _psycopg()
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as e:
            raise Unavailable(f"{public_url(url)}: cannot reach the database ({_first_line(e)})") from None
        name = public_url(url)
        try:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
            if not tables:
                if not create:
                    raise NotFound(f"{name}: no gallery in this database (create it with --create)")
                cls._migrate(conn, name)
            elif "meta" not in tables or not {"identities", "photos", "embeddings", "centroids"} <= tables:
                raise UserError(f"{name}: not a facegallery gallery (the database holds other tables)")
            else:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                version = int(row[0]) if row and str(row[0]).isdigit() else None
                if version is None or version > SCHEMA_VERSION:
                    raise UserError(
                        f"{name}: gallery schema version {version}, this facegallery reads {SCHEMA_VERSION}"
                    )
                if version < SCHEMA_VERSION:
                    cls._migrate(conn, name)
        except psycopg.errors.InsufficientPrivilege as e:
            raise ReadOnly(f"{name}: cannot create or upgrade the gallery here ({_first_line(e)})") from None
        finally:
            conn.close()
        return cls(url)

    @staticmethod
    def _migrate(conn, name: str) -> None:
        """Apply the migrations this database lacks, each in one transaction, under an advisory lock
        (two replicas starting together migrate once)."""
        for version in sorted(MIGRATIONS):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                has_meta = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]
                row = (
                    conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if has_meta else None
                )
                if row is not None and int(row[0]) >= version:
                    continue
                conn.execute(MIGRATIONS[version])
                conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(version),))
                log.info("facegallery: %s migrated to schema %d", name, version)

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()

    # ----- transactions and meta ------------------------------------------------------------------
    def check_writable(self) -> None:
        if self.read_only is not None:
            raise ReadOnly(f"{self.name}: the gallery can only be read ({self.read_only}); nothing was changed")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One REPEATABLE READ transaction: every read inside sees the database as at the first one."""
        conn = self._ok()
        if self._touched is not None or conn.info.transaction_status != 0:
            yield
            return
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield

    @contextmanager
    def transaction(self, bump: bool = True) -> Iterator[Write]:
        """One write transaction (see the module docstring): the generation row locked first, the people
        it touched logged in ``changes`` and announced on :data:`CHANNEL` when ``bump``."""
        psycopg = _psycopg()
        self.check_writable()
        conn = self._ok()
        try:
            with conn.transaction():
                before = int(conn.execute("SELECT value FROM meta WHERE key = 'generation' FOR UPDATE").fetchone()[0])
                self._touched = set()
                yield Write(before)
                if bump:
                    gen = before + 1
                    conn.execute("UPDATE meta SET value = %s WHERE key = 'generation'", (str(gen),))
                    if self._touched:
                        with conn.cursor().copy("COPY changes (generation, identity) FROM STDIN") as copy:
                            for ident in self._touched:
                                copy.write_row((gen, ident))
                    else:  # nobody in particular (a model or a dimension): replicas reload
                        conn.execute("INSERT INTO changes VALUES (%s, -1)", (gen,))
                    if gen % 1000 == 0:
                        conn.execute("DELETE FROM changes WHERE generation <= %s", (gen - KEEP_CHANGES,))
                # every commit is announced (a renamed person, a new threshold rule: replicas look again)
                gen = before + 1 if bump else before
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{gen} {conn.info.backend_pid}"))
        except psycopg.errors.InsufficientPrivilege as e:
            raise ReadOnly(
                f"{self.name}: the gallery can only be read ({_first_line(e)}); nothing was changed"
            ) from None
        except psycopg.errors.UniqueViolation as e:
            raise UserError(f"{self.name}: {_first_line(e)}; nothing of this change was written") from None
        except psycopg.OperationalError as e:
            raise Unavailable(
                f"{self.name}: the database went away ({_first_line(e)}); nothing of this change was written"
            ) from None
        finally:
            self._touched = None

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._run("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._run("DELETE FROM meta WHERE key = %s", (key,))
        else:
            self._run(
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (key, str(value)),
            )

    def generation(self) -> int:
        return int(self.meta("generation", "0"))

    def data_version(self) -> int:
        """Counts the other connections' commits announced since we listened (no query when none came), and
        moves on its own once every :data:`RECHECK` seconds, so that a notification lost on the way costs
        at most that long before the caller looks at the database again."""
        conn = self._ok()
        if self._touched is not None:
            return self._seen
        try:
            for note in conn.notifies(timeout=0):
                if note.pid != conn.info.backend_pid:
                    self._seen += 1
        except _psycopg().OperationalError:
            self.conn.close()
            self._ok()
        now = time.monotonic()
        if now - self._checked > RECHECK:
            self._seen += 1
            self._checked = now
        return self._seen

    # ----- the search index: rebuilt, not kept ------------------------------------------------------------
    def cached_index(self, key: str) -> BinaryIO | None:
        """None: a replica builds its index from the centroids it streams out of the database."""
        return None

    def keep_index(self, key: str, write: Callable[[BinaryIO], None]) -> None:
        """Nothing: measured at a million people (RESULTS 16), the trained index with its re-ranking vectors
        is ~600 MB, took 65 s to store and could not be read back as one value, while a replica builds it
        from the database in 6.4 s."""

    def changes_since(self, generation: int) -> list[int] | None:
        """The people changed after ``generation``, or None when the log cannot say (too far behind, or a
        change of no one in particular): reload everything then."""
        now = self.generation()
        if now == generation:
            return []
        if now < generation:
            return None
        rows = self._run(
            "SELECT generation, identity FROM changes WHERE generation > %s ORDER BY generation", (generation,)
        ).fetchall()
        gens = {r[0] for r in rows}
        if len(gens) != now - generation or any(r[1] < 0 for r in rows):
            return None
        return sorted({r[1] for r in rows})

    # ----- reading --------------------------------------------------------------------------------
    @property
    def dimension(self) -> int | None:
        d = self.meta("dimension")
        return int(d) if d is not None else None

    def identity_id(self, name: str) -> int | None:
        name = unicodedata.normalize("NFC", name) if isinstance(name, str) else name
        row = self._run("SELECT id FROM identities WHERE name = %s", (name,)).fetchone()
        return row[0] if row else None

    def require_identity(self, name: str) -> int:
        ident = self.identity_id(name)
        if ident is None:
            raise NotFound(f"{name!r}: no such person in {self.name}")
        return ident

    def people(self) -> list[Person]:
        rows = self._run(
            "SELECT i.id, i.name, COUNT(p.id), i.created, i.metadata FROM identities i "
            'LEFT JOIN photos p ON p.identity = i.id GROUP BY i.id ORDER BY i.name COLLATE "C"'
        )
        return [Person(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None) for r in rows]

    def count(self, table: Table) -> int:
        sql = {
            "identities": "SELECT COUNT(*) FROM identities",
            "photos": "SELECT COUNT(*) FROM photos",
            "centroids": "SELECT COUNT(*) FROM centroids",
        }[table]
        return int(self._run(sql).fetchone()[0])

    def names_of(self, ids: np.ndarray | list[int]) -> dict[int, str]:
        uniq = sorted({int(i) for i in np.asarray(ids).ravel() if i >= 0})
        if not uniq:
            return {}
        return dict(self._run("SELECT id, name FROM identities WHERE id = ANY(%s)", (uniq,)).fetchall())

    def photos(self, identity: int | None = None) -> list[Photo]:
        q = "SELECT id, identity, source, sha256, detect FROM photos"
        rows = (
            self._run(q + " WHERE identity = %s ORDER BY id", (identity,))
            if identity is not None
            else self._run(q + " ORDER BY id")
        )
        return [Photo(*r) for r in rows]

    def photo_hashes(self, identity: int) -> set[str]:
        return {r[0] for r in self._run("SELECT sha256 FROM photos WHERE identity = %s", (identity,))}

    def identity_ids(self) -> list[int]:
        return [r[0] for r in self._run("SELECT identity FROM centroids")]

    def _centroids(self, rows: list) -> Centroids:
        return Centroids(
            np.fromiter((r[0] for r in rows), np.int64, len(rows)),
            np.fromiter((r[1] for r in rows), np.int64, len(rows)),
            vectors_of([bytes(r[2]) for r in rows], self.dimension or 0),
        )

    def centroids(self, identities: list[int] | None = None) -> Centroids:
        q = "SELECT identity, count, vector FROM centroids"
        if identities is None:
            return self._centroids(self._run(q + " ORDER BY identity").fetchall())
        ids = [int(i) for i in identities]
        return self._centroids(self._run(q + " WHERE identity = ANY(%s) ORDER BY identity", (ids,)).fetchall())

    def centroid_batches(self, size: int) -> Iterator[Centroids]:
        """Every centroid by id, ``size`` at a time, streamed by a server-side cursor in one snapshot."""
        conn = self._ok()
        dim = self.dimension or 0
        with conn.transaction(), conn.cursor(name="centroids", binary=True) as cur:
            cur.itersize = size
            cur.execute("SELECT identity, count, vector FROM centroids ORDER BY identity")
            while rows := cur.fetchmany(size):
                yield Centroids(
                    np.fromiter((r[0] for r in rows), np.int64, len(rows)),
                    np.fromiter((r[1] for r in rows), np.int64, len(rows)),
                    vectors_of([bytes(r[2]) for r in rows], dim),
                )

    def embeddings(self, identities: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = "SELECT p.identity, e.vector FROM photos p JOIN embeddings e ON e.photo = p.id"
        if identities is None:
            rows = self._run(q + " ORDER BY p.id").fetchall()
        else:
            rows = self._run(
                q + " WHERE p.identity = ANY(%s) ORDER BY p.id", ([int(i) for i in identities],)
            ).fetchall()
        labels = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return labels, vectors_of([bytes(r[1]) for r in rows], self.dimension or 0)

    def thumbnail(self, identity: int, sha256: str | None = None) -> bytes | None:
        sql = "SELECT t.jpeg FROM thumbnails t JOIN photos p ON p.id = t.photo WHERE p.identity = %s"
        args: tuple = (identity,)
        if sha256 is not None:
            sql, args = sql + " AND p.sha256 = %s", (identity, sha256)
        row = self._run(sql + " ORDER BY p.id LIMIT 1", args).fetchone()
        return bytes(row[0]) if row else None

    def thumbnails(self, photo_ids: list[int]) -> dict[int, bytes]:
        rows = self._run("SELECT photo, jpeg FROM thumbnails WHERE photo = ANY(%s)", ([int(i) for i in photo_ids],))
        return {r[0]: bytes(r[1]) for r in rows}

    # ----- writing (inside a transaction) ---------------------------------------------------------
    def _touch(self, *identities: int) -> None:
        if self._touched is not None:
            self._touched.update(int(i) for i in identities)

    def add_identity(self, name: str, metadata: dict | None = None) -> int:
        row = self._run(
            "INSERT INTO identities (name, metadata, created) VALUES (%s, %s, %s) RETURNING id",
            (check_name(name), json.dumps(metadata) if metadata else None, time.time()),
        ).fetchone()
        return int(row[0])

    def add_photos(
        self,
        identity: int,
        photos: list[tuple[str | None, str, str]],
        vectors: np.ndarray,
        thumbnails: list[bytes | None] | None = None,
    ) -> None:
        now = time.time()
        thumbnails = thumbnails or [None] * len(photos)
        for (source, sha, detect), v, jpeg in zip(photos, vectors, thumbnails):
            (pid,) = self._run(
                "INSERT INTO photos (identity, source, sha256, detect, added) VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (identity, source, sha, detect, now),
            ).fetchone()
            self._run("INSERT INTO embeddings VALUES (%s, %s, %s)", (pid, len(v), vector_bytes(v)))
            if jpeg is not None:
                self._run("INSERT INTO thumbnails VALUES (%s, %s)", (pid, jpeg))
        self._touch(identity)

    def set_metadata(self, identity: int, metadata: dict) -> None:
        self._run("UPDATE identities SET metadata = %s WHERE id = %s", (json.dumps(metadata), identity))

    def rename_identity(self, identity: int, name: str) -> None:
        self._run("UPDATE identities SET name = %s WHERE id = %s", (check_name(name), identity))

    def delete_identity(self, identity: int) -> None:
        self._run("DELETE FROM identities WHERE id = %s", (identity,))
        self._touch(identity)

    def delete_photos(self, photo_ids: list[int]) -> None:
        if photo_ids:
            rows = self._run(
                "DELETE FROM photos WHERE id = ANY(%s) RETURNING identity", ([int(i) for i in photo_ids],)
            ).fetchall()
            self._touch(*(r[0] for r in rows))

    def update_centroid(self, identity: int) -> None:
        _, emb = self.embeddings([identity])
        if len(emb):
            c = emb.astype(np.float64).mean(0).astype(np.float32)
            self._run(
                "INSERT INTO centroids VALUES (%s, %s, %s) ON CONFLICT (identity) DO UPDATE "
                "SET count = EXCLUDED.count, vector = EXCLUDED.vector",
                (identity, len(emb), vector_bytes(c)),
            )
        else:
            self._run("DELETE FROM centroids WHERE identity = %s", (identity,))
        self._touch(identity)

    def replace_embeddings(self, photo_ids: list[int], vectors: np.ndarray) -> None:
        conn = self._ok()
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE embeddings SET dim = %s, vector = %s WHERE photo = %s",
                [(len(v), vector_bytes(v), int(p)) for p, v in zip(photo_ids, vectors)],
            )
        self._touched = None if self._touched is None else self._touched | {-1}

    def bulk_insert(self, names: list[str], vectors: np.ndarray) -> int:
        """Many precomputed embeddings of new people at once, by ``COPY`` (rows sharing a name are one
        person's photos). Names must all be new. Returns the number of people added."""
        bulk = Bulk.of(names, vectors)
        taken = self._run("SELECT name FROM identities WHERE name = ANY(%s) LIMIT 3", (bulk.names,)).fetchall()
        if taken:
            raise UserError(
                f"already enrolled in {self.name}: {', '.join(r[0] for r in taken)} "
                "(bulk enrolment adds new people only)"
            )
        first = self._reserve("identities", len(bulk.names))
        first_photo = self._reserve("photos", len(bulk.blobs))
        dim, now = bulk.centroids.shape[1], time.time()
        with self._ok().cursor() as cur:
            with cur.copy("COPY identities (id, name, metadata, created) FROM STDIN") as copy:
                for i, n in enumerate(bulk.names):
                    copy.write_row((first + i, n, None, now))
            with cur.copy("COPY photos (id, identity, source, sha256, detect, added) FROM STDIN") as copy:
                for i, (o, h) in enumerate(zip(bulk.owner, bulk.hashes)):
                    copy.write_row((first_photo + i, first + int(o), None, h, "off", now))
            with cur.copy("COPY embeddings (photo, dim, vector) FROM STDIN") as copy:
                for i, b in enumerate(bulk.blobs):
                    copy.write_row((first_photo + i, dim, b))
            with cur.copy("COPY centroids (identity, count, vector) FROM STDIN") as copy:
                for i, (c, v) in enumerate(zip(bulk.counts, bulk.centroids)):
                    copy.write_row((first + i, int(c), v.tobytes()))
        self._touched = None if self._touched is None else self._touched | {-1}
        return len(bulk.names)

    def _reserve(self, table: str, n: int) -> int:
        """The first of ``n`` consecutive ids taken from ``table``'s sequence (inside the write lock)."""
        seq = {"identities": "identities_id_seq", "photos": "photos_id_seq"}[table]
        (first,) = self._run("SELECT nextval(%s)", (seq,)).fetchone()
        self._run("SELECT setval(%s, %s)", (seq, first + max(n, 1) - 1))
        return int(first)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [e.__class__.__name__])[0]
