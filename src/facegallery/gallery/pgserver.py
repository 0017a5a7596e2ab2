"""A throw-away PostgreSQL server from the installed binaries (Debian's ``postgresql`` package: initdb and
pg_ctl), for the tests and the benchmarks: a temporary folder, a Unix socket only (no TCP port), run as
the ``postgres`` user when started by root (the server refuses root), stopped and removed at the end.
Not for production: authentication is ``trust`` and fsync is off."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


def binaries() -> str | None:
    """The folder of initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return dirs[-1] if dirs and os.path.exists(os.path.join(dirs[-1], "initdb")) else None


class Server:
    """A private server in ``folder``; ``url`` is its admin URL (user postgres, database postgres)."""

    def __init__(self) -> None:
        bindir = binaries()
        if bindir is None:
            raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) installed")
        self.bindir = bindir
        self.folder = tempfile.mkdtemp(prefix="facegallery-pg-")
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.data = os.path.join(self.folder, "data")
        with socket.socket() as s:  # a free number names the socket file
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@/postgres?host={self.folder}&port={self.port}"
        self._ctl("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.start()

    def _ctl(self, tool: str, *args: str) -> None:
        try:
            subprocess.run(self.prefix + [f"{self.bindir}/{tool}", *args], check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"{tool} failed: {(e.stderr or e.stdout).strip()[-300:]}") from None

    def start(self) -> None:
        opts = f"-k {self.folder} -p {self.port} -c listen_addresses='' -c fsync=off -c max_connections=200"
        self._ctl("pg_ctl", "-D", self.data, "-o", opts, "-w", "-l", f"{self.folder}/log", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_server() -> Iterator[Server]:
    """A :class:`Server` for the block; RuntimeError when it cannot start."""
    server = Server()
    try:
        yield server
    finally:
        server.close()


def new_database(admin_url: str) -> str:
    """A fresh empty database on the server of ``admin_url``; returns its URL."""
    import psycopg

    name = f"fg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
