"""The :class:`~facegallery.gallery.store.GalleryStore` contract, run over every backend: what the gallery
relies on a store for, in types (never a database's rows). A new backend joins ``BACKENDS``."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from facegallery.errors import InvalidInput, NotFound
from facegallery.gallery.store import Centroids, GalleryStore, Person, Photo, Write, open_store

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path) -> str:
    """Where a new store of each backend lives: a file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "g.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(location) -> GalleryStore:
    """An empty store of each backend (with a dimension of 4)."""
    s = open_store(location, create=True)
    with s.transaction(bump=False):
        s.set_meta("dimension", "4")
    yield s
    s.close()


@pytest.fixture
def reopen(location):
    """Another connection to the same store (as another process would hold it)."""
    opened = []

    def make() -> GalleryStore:
        opened.append(open_store(location))
        return opened[-1]

    yield make
    for s in opened:
        s.close()


def _v(*rows) -> np.ndarray:
    return np.array(rows, np.float32)


def _person(store: GalleryStore, name: str, vectors: np.ndarray, tag: str = "") -> int:
    with store.transaction():
        ident = store.identity_id(name) or store.add_identity(name)
        rows = [(f"/p/{name}{tag}{i}.jpg", f"{name}{tag}{i}".ljust(64, "0"), "auto") for i in range(len(vectors))]
        store.add_photos(ident, rows, vectors, [b"jpeg"] * len(vectors))
        store.update_centroid(ident)
    return ident


def test_a_write_is_whole_or_nothing_and_says_where_it_began(store):
    assert store.generation() == 0
    with store.transaction() as w:
        assert isinstance(w, Write) and w.before == 0
        store.add_identity("Ada")
    assert store.generation() == 1
    with pytest.raises(KeyboardInterrupt):
        with store.transaction():
            store.add_identity("Bob")
            raise KeyboardInterrupt
    assert [p.name for p in store.people()] == ["Ada"] and store.generation() == 1
    with store.transaction(bump=False) as w:
        assert w.before == 1
        store.set_meta("note", "x")
    assert store.generation() == 1 and store.meta("note") == "x"
    with store.transaction(bump=False):
        store.set_meta("note", None)
    assert store.meta("note", "gone") == "gone"


def test_people_photos_centroids_and_embeddings_come_back_typed(store):
    a = _person(store, "Ada", _v([1, 0, 0, 0], [0, 1, 0, 0]))
    b = _person(store, "Bob", _v([0, 0, 1, 0]))
    people = store.people()
    assert all(isinstance(p, Person) for p in people)
    assert [(p.name, p.photos) for p in people] == [("Ada", 2), ("Bob", 1)]
    photos = store.photos(a)
    assert all(isinstance(p, Photo) for p in photos) and [p.detect for p in photos] == ["auto", "auto"]
    assert store.photo_hashes(a) == {p.sha256 for p in photos}
    cents = store.centroids()
    assert isinstance(cents, Centroids) and cents.ids.tolist() == [a, b] and cents.counts.tolist() == [2, 1]
    assert cents.vectors.dtype == np.float32 and np.allclose(cents.vectors[0], [0.5, 0.5, 0, 0])
    assert store.centroids([b]).ids.tolist() == [b]
    batches = list(store.centroid_batches(1))
    assert [c.ids.tolist() for c in batches] == [[a], [b]]
    labels, emb = store.embeddings()
    assert labels.tolist() == [a, a, b] and emb.shape == (3, 4) and emb.dtype == np.float32
    assert store.names_of(np.array([[b, -1], [a, b]])) == {a: "Ada", b: "Bob"}
    assert store.count("identities") == 2 and store.count("photos") == 3 and store.count("centroids") == 2
    assert store.thumbnail(a) == b"jpeg" and store.thumbnail(a, "0" * 64) is None
    assert store.dimension == 4 and sorted(store.identity_ids()) == [a, b]


def test_names_are_checked_and_found_in_either_unicode_form(store):
    with store.transaction():
        store.add_identity("Jose\u0301")  # NFD in, NFC stored
        with pytest.raises(InvalidInput):
            store.add_identity("a/b")
    assert store.identity_id("Jos\u00e9") is not None and store.identity_id("Jose\u0301") is not None
    with pytest.raises(NotFound, match="no such person"):
        store.require_identity("Nobody")


def test_removal_cascades_and_centroids_stay_exact_means(store):
    a = _person(store, "Ada", _v([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]))
    first = store.photos(a)[0]
    with store.transaction():
        store.delete_photos([first.id])
        store.update_centroid(a)
    assert np.allclose(store.centroids().vectors[0], [0, 0.5, 0.5, 0]) and store.centroids().counts[0] == 2
    with store.transaction():
        store.replace_embeddings([p.id for p in store.photos(a)], _v([0, 0, 0, 1], [0, 0, 0, 1]))
        store.update_centroid(a)
    assert np.allclose(store.centroids().vectors[0], [0, 0, 0, 1])
    with store.transaction():
        store.delete_identity(a)
    assert store.people() == [] and store.count("photos") == 0 and len(store.centroids().ids) == 0


def test_rename_metadata_and_bulk_insert(store):
    a = _person(store, "Ada", _v([1, 0, 0, 0]))
    with store.transaction():
        store.rename_identity(a, "Ada Lovelace")
        store.set_metadata(a, {"team": "analytical"})
        added = store.bulk_insert(["x", "y", "x"], _v([0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]))
    assert added == 2
    people = {p.name: p for p in store.people()}
    assert people["Ada Lovelace"].metadata == {"team": "analytical"} and people["x"].photos == 2
    assert np.allclose(store.centroids([people["x"].id]).vectors[0], [0, 0.5, 0, 0.5])


def test_other_connections_see_commits_and_generations(store, reopen):
    other = reopen()
    seen = other.data_version()
    _person(store, "Ada", _v([1, 0, 0, 0]))
    assert other.generation() == store.generation() == 1 and other.data_version() != seen
    with other.transaction() as w:
        assert w.before == 1
        other.add_identity("Bob")
    assert {p.name for p in store.people()} == {"Ada", "Bob"} and store.generation() == 2


def test_a_snapshot_does_not_see_a_commit_half_way(store, reopen):
    _person(store, "Ada", _v([1, 0, 0, 0]))
    other = reopen()
    with store.snapshot():
        before = store.count("photos")
        done = threading.Event()

        def write() -> None:
            _person(other, "Bob", _v([0, 1, 0, 0]))
            done.set()

        threading.Thread(target=write).start()
        assert done.wait(30)
        assert store.count("photos") == before and [p.name for p in store.people()] == ["Ada"]
    assert store.count("photos") == before + 1
