"""The SQLite backend: opening rules, read-only files and folders, name rules, transactions, bulk insert."""

import os
import sqlite3
import subprocess
from contextlib import contextmanager

import numpy as np
import pytest

from facegallery.errors import UserError
from facegallery.gallery.sqlite import SQLITE_HEADER
from facegallery.gallery.sqlite import SQLiteStore as Store
from facegallery.gallery.store import check_name


def test_unknown_path_is_an_error_unless_created(tmp_path):
    with pytest.raises(UserError, match="no such gallery"):
        Store.open(tmp_path / "g.db")
    assert not (tmp_path / "g.db").exists()
    s = Store.open(tmp_path / "g.db", create=True)
    assert s.generation() == 0 and s.count("identities") == 0
    s.close()
    assert [p.name for p in tmp_path.iterdir()] == ["g.db"]  # no temporary left behind
    Store.open(tmp_path / "g.db").close()


@pytest.mark.parametrize("content", [b"", b"hello, not a database" * 10, SQLITE_HEADER + b"\x07garbage" * 500, None])
def test_files_that_are_not_galleries_are_refused_untouched(tmp_path, content):
    path = tmp_path / "g.db"
    if content is None:  # a real SQLite file of someone else's
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    for create in (False, True):
        with pytest.raises(UserError, match="not a facegallery gallery|corrupt gallery") as e:
            Store.open(path, create=create)
        assert "\n" not in str(e.value)
    assert path.read_bytes() == before


def test_newer_schema_is_refused(tmp_path):
    s = Store.open(tmp_path / "g.db", create=True)
    with s.transaction(bump=False):
        s.set_meta("schema_version", "99")
    s.close()
    with pytest.raises(UserError, match="schema version 99"):
        Store.open(tmp_path / "g.db")


@pytest.mark.parametrize("name", ["", "  ", "a/b", "a\\b", "..", "tab\there", "new\nline", " lead", "x" * 201])
def test_bad_names_are_refused(name):
    with pytest.raises(UserError):
        check_name(name)


def test_good_names_pass():
    for name in ["Ada Lovelace", "Zoë Saldaña", "O'Brien", "李小龙", "a.b"]:
        assert check_name(name) == name


def test_failed_transaction_leaves_nothing(tmp_path):
    s = Store.open(tmp_path / "g.db", create=True)
    with pytest.raises(KeyboardInterrupt):
        with s.transaction():
            s.add_identity("Ada")
            raise KeyboardInterrupt
    assert s.count("identities") == 0 and s.generation() == 0
    s.close()


def test_bulk_insert_centroids_and_dedup(tmp_path):
    s = Store.open(tmp_path / "g.db", create=True)
    rng = np.random.default_rng(0)
    v = rng.standard_normal((5, 8)).astype(np.float32)
    with s.transaction():
        s.set_meta("dimension", "8")
        added = s.bulk_insert(["a", "b", "a", "c", "a"], np.concatenate([v[:4], v[:1]]))
    assert added == 3
    assert {p.name: p.photos for p in s.people()} == {"a": 2, "b": 1, "c": 1}  # v[0] twice for a is one photo
    ids, counts, cents = s.centroids()
    by_name = {n: i for i, n in s.names_of(ids).items()}
    row = list(ids).index(by_name["a"])
    assert counts[row] == 2 and np.allclose(cents[row], (v[0] + v[2]) / 2)
    with pytest.raises(UserError, match="already enrolled"):
        with s.transaction():
            s.bulk_insert(["b"], v[:1])
    assert s.count("photos") == 4
    s.close()


def test_right_tables_with_other_columns_are_refused_in_one_line(tmp_path):
    """Issue 27.9: a file with our table names (and schema version) but other columns is not a gallery."""
    path = tmp_path / "g.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "CREATE TABLE identities (id INTEGER PRIMARY KEY, label TEXT);"
        "CREATE TABLE photos (id INTEGER PRIMARY KEY);"
        "CREATE TABLE embeddings (photo INTEGER PRIMARY KEY);"
        "CREATE TABLE centroids (identity INTEGER PRIMARY KEY);"
    )
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(UserError, match="lacks columns") as e:
        Store.open(path)
    assert "\n" not in str(e.value) and path.read_bytes() == before


@contextmanager
def _immutable(*paths):
    """Make ``paths`` unwritable even for root (chattr +i), or skip where the file system cannot."""
    done = []
    try:
        for p in paths:
            if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
                pytest.skip("chattr +i is not available here (needed to make a file read-only for root)")
            done.append(p)
        yield
    finally:
        for p in reversed(done):
            subprocess.run(["chattr", "-i", str(p)], check=True)


def _read_only(path, how):
    if os.geteuid() != 0:  # plain permissions hold for everyone but root
        target = path if how == "file" else path.parent
        mode = target.stat().st_mode
        target.chmod(0o444 if how == "file" else 0o555)
        try:
            yield
        finally:
            target.chmod(mode)
    else:
        with _immutable(*([path] if how == "file" else [path, path.parent])):
            yield


@pytest.mark.parametrize("how", ["file", "folder"])
def test_a_read_only_gallery_reads_and_refuses_writes_up_front(enrolled, how, face_tree):
    """Issue 27.10: reads work; a write is refused with the reason before any photo is embedded; never
    "corrupt gallery file"."""
    from facegallery.errors import ReadOnly
    from facegallery.gallery import Gallery

    folder = enrolled.parent / "ro"
    folder.mkdir()
    path = folder / "g.db"
    path.write_bytes(enrolled.read_bytes())
    for side in enrolled.parent.glob(enrolled.name + "-*"):
        (folder / (path.name + side.name[len(enrolled.name) :])).write_bytes(side.read_bytes())
    with contextmanager(_read_only)(path, how):
        with Gallery.open(path) as g:
            assert len(g.people()) == 4
            assert g.identify(face_tree / "Person 2" / "2.jpg").name == "Person 2"
            assert g.calibration().identify.threshold > 0
            embedded = []
            g.binding.embedder.embed = lambda *a, **k: embedded.append(1)  # must not be reached
            for write in (
                lambda: g.enroll("New", [face_tree / "Person 0" / "1.jpg"]),
                lambda: g.remove("Person 1"),
                lambda: g.rename("Person 1", "P"),
                lambda: g.set_threshold(far=0.05),
            ):
                with pytest.raises(ReadOnly, match="can only be read") as e:
                    write()
                assert "\n" not in str(e.value) and "corrupt" not in str(e.value)
            assert not embedded
