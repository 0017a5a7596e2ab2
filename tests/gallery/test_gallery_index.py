"""Search: the compressed FAISS index agrees with exact search, and the gallery keeps it current."""

import numpy as np
import pytest

from facegallery.alignment import PUBFIG83
from facegallery.errors import UserError
from facegallery.gallery import Gallery
from facegallery.gallery import index as ix
from facegallery.gallery.search import LiveIndex
from facegallery.gallery.store import open_store
from facegallery.recognition import centroid_distances, squared_distances, top_k


def _data(n=3000, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, dim)).astype(np.float32)
    g *= rng.uniform(0.8, 0.95, (n, 1)).astype(np.float32) / np.linalg.norm(g, axis=1, keepdims=True)
    src = rng.choice(n, min(n, 200), replace=False)
    q = g[src] / np.linalg.norm(g[src], axis=1, keepdims=True) + 0.05 * rng.standard_normal((len(src), dim))
    return g, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def test_exact_index_matches_recognition_top_k():
    g, q = _data(500)
    ids = np.arange(500) * 10 + 7
    got_ids, got_d = ix.ExactIndex(ids, g).search(q, 5)
    want_i, want_d = top_k(squared_distances(q, g), 5)
    assert (got_ids == ids[want_i]).all() and np.allclose(got_d, want_d, atol=1e-5)


@pytest.mark.parametrize("parts", [1, 3])
def test_compressed_agrees_with_exact_and_gives_true_distances(monkeypatch, parts):
    monkeypatch.setattr(ix, "PARTS", parts)
    g, q = _data()
    ids = np.arange(len(g), dtype=np.int64) + 1
    exact, pq = ix.ExactIndex(ids, g), ix.CompressedIndex.build(ids, g)
    (ei, ed), (ai, ad) = exact.search(q, 5), pq.search(q, 5)
    assert (ai[:, 0] == ei[:, 0]).mean() >= 0.99
    same = ai[:, 0] == ei[:, 0]
    assert np.allclose(ad[same, 0], ed[same, 0], atol=1e-4)  # L2 on raw (non-unit) centroids
    assert len(pq.parts) == parts and (np.diff(ad, axis=1) >= 0).all()  # parts merged in distance order
    one = [pq.search(x[None], 5) for x in q[:20]]  # single probes take the threaded path
    assert all((i[0] == ai[j]).all() and np.allclose(d[0], ad[j]) for j, (i, d) in enumerate(one))


@pytest.mark.parametrize("kind", [ix.ExactIndex, ix.CompressedIndex.build])
def test_upsert_and_remove(kind, monkeypatch):
    monkeypatch.setattr(ix, "PARTS", 2)
    g, q = _data(2000)
    ids = np.arange(2000, dtype=np.int64)
    index = kind(ids, g)
    index.remove(np.array([5]))
    assert 5 not in index.search(g[5:6] / np.linalg.norm(g[5]), 3)[0]
    index.upsert(np.array([5, 9]), np.stack([g[9], g[5]]))  # swap two rows
    assert index.search(g[5:6], 1)[0][0, 0] == 9 and len(index) == 2000


def test_padding_when_fewer_than_k():
    ids, d = ix.ExactIndex(np.array([3]), np.ones((1, 4), np.float32) / 2).search(np.ones((2, 4), np.float32) / 2, 3)
    assert ids.tolist() == [[3, -1, -1]] * 2 and np.isinf(d[:, 1:]).all()


def _kept(location, gen) -> bool:
    store = open_store(location)
    try:
        saved = store.cached_index(LiveIndex.key(gen))
        if saved is not None:
            saved.close()
        return saved is not None
    finally:
        store.close()


def test_gallery_switches_to_compressed_and_persists_it(tmp_path, monkeypatch, fake_model):
    location = str(tmp_path / "g.db")
    """The trained index is kept beside the file and read back by the next process instead of retraining;
    a newer one replaces it (PostgreSQL keeps none: replicas build theirs, RESULTS 16)."""
    monkeypatch.setattr(ix, "EXACT_MAX", 500)
    g, q = _data(2000)
    with Gallery.open(location, model=fake_model, create=True) as gal:
        gal.enroll_embeddings([f"n{i:04d}" for i in range(2000)], g)
        ids, _ = gal.search(q, 1)
        assert gal.searcher.index.kind == "pq"
        gen = gal.store.generation()
    assert _kept(location, gen)
    with Gallery.open(location, model=fake_model) as gal:
        again, _ = gal.search(q, 1)
        assert gal.searcher.index.kind == "pq" and gal.searcher._saved and (again == ids).all()  # read, not trained
        new = _data(1, seed=5)[0]
        gal.enroll_embeddings(["zz-new"], new)  # a new person: index rebuilt, the kept one stale
        assert gal.identify_embeddings(new / np.linalg.norm(new), 1)[0].candidates[0].name == "zz-new"
        newer = gal.store.generation()
    assert not _kept(location, gen) and _kept(location, newer)
    assert len(list(tmp_path.glob("g.db.index-*"))) == 1


def test_other_process_writes_are_seen(tmp_path, fake_model):
    g, _ = _data(50)
    db = tmp_path / "g.db"
    with Gallery.open(db, model=fake_model, create=True) as a:
        a.enroll_embeddings([f"n{i}" for i in range(49)], g[:49])
        assert a.search(g[49:50], 1)[0][0, 0] != 50
        with Gallery.open(db, model=fake_model) as b:
            b.enroll_embeddings(["late"], g[49:50])
        assert a.identify_embeddings(g[49:50] / np.linalg.norm(g[49]), 1)[0].name == "late"


def test_removed_rows_never_answer_and_many_removals_rebuild(tmp_path, monkeypatch, fake_model):
    monkeypatch.setattr(ix, "EXACT_MAX", 500)
    monkeypatch.setattr(ix, "MAX_DEAD", 3)
    g, _ = _data(1000)
    with Gallery.open(tmp_path / "g.db", model=fake_model, create=True) as gal:
        gal.enroll_embeddings([f"n{i:04d}" for i in range(1000)], g)
        gal.search(g[:1], 1)
        index = gal.searcher.index
        for i in range(4):
            gal.remove(f"n{i:04d}")
            if i < 3:  # marked removed: its own centroid no longer answers, nothing else changes
                assert gal.searcher.index is index and len(index) == 999 - i
                assert f"n{i:04d}" not in [c.name for c in gal.identify_embeddings(g[i : i + 1], 5)[0].candidates]
        assert gal.searcher.index is None  # a fourth removal passes MAX_DEAD: rebuilt at the next search
        assert gal.identify_embeddings(g[10:11], 1)[0].candidates[0].name == "n0010"
        assert gal.searcher.index is not index and gal.searcher.index.dead == 0 and len(gal.searcher.index) == 996


def test_damaged_side_file_is_rebuilt_with_a_warning(tmp_path, monkeypatch, fake_model):
    monkeypatch.setattr(ix, "EXACT_MAX", 500)
    g, q = _data(1000)
    db = tmp_path / "g.db"
    with Gallery.open(db, model=fake_model, create=True) as gal:
        gal.enroll_embeddings([f"n{i:04d}" for i in range(1000)], g)
        want, _ = gal.search(q, 1)
    (side,) = tmp_path.glob("g.db.index-*")
    side.write_bytes(b"not an index")
    with Gallery.open(db, model=fake_model) as gal, pytest.warns(UserWarning, match="not a search index"):
        got, _ = gal.search(q, 1)
    assert (got == want).all()


def _vec(*coords: tuple[int, float], dim: int = 8) -> np.ndarray:
    """A vector with the given (axis, value) coordinates, zero elsewhere."""
    v = np.zeros(dim, np.float32)
    for axis, x in coords:
        v[axis] = x
    return v


class Lookup:
    """An embedder stand-in: a uniform image of value i embeds as row i of ``table``."""

    name, input_size, fingerprint, threshold = "lookup", 8, "lookup:0", 0.5
    template, spec = PUBFIG83, {}

    def __init__(self, table: np.ndarray):
        self.table = table

    def embed(self, images, batch_size=256):
        return self.table[[int(np.asarray(i)[0, 0, 0]) for i in images]]


def test_few_photos_person_wins_by_centroid_distance(tmp_path):
    """Raw squared distances prefer the person enrolled from many photos; divided by 1 + 1/n (the noise of
    a mean of n photos) the one-photo person is nearer, and the gallery reports those distances."""
    q = _vec((0, 1.0))
    c = _vec((0, 0.8), (1, 0.6))  # raw |q - c|^2 = 0.40, 4 photos: / 1.25
    many = np.stack([c + _vec((2, 0.1)), c - _vec((2, 0.1)), c + _vec((3, 0.1)), c - _vec((3, 0.1))])
    one = _vec((0, 0.75), (4, np.sqrt(1 - 0.75**2)))  # raw 2 - 2 * 0.75 = 0.50, 1 photo: / 2
    lookup = Lookup(np.stack([c, one]))
    with Gallery.open(tmp_path / "g.db", model=lookup, create=True) as gal:
        gal.enroll_embeddings(["Many"] * 4 + ["One"], np.concatenate([many, one[None]]))
        ids, counts, cents = gal.store.centroids()
        assert counts.tolist() == [4, 1] and squared_distances(q[None], cents).argmin() == 0  # raw: Many
        r = gal.identify_embeddings(q, 2)[0]
        assert [x.name for x in r.candidates] == ["One", "Many"]
        assert [x.distance for x in r.candidates] == pytest.approx([0.50 / 2, 0.40 / 1.25], abs=1e-5)
        index = gal.searcher.index
        gal.enroll("Many", [np.zeros((32, 32, 3), np.uint8)])  # a 5th photo at c: same centroid, n = 5
        assert gal.searcher.index is index  # updated in place, count included
        ids, d = gal.search(q, 2)
        assert gal.store.names_of(ids[0])[int(ids[0, 1])] == "Many"
        assert d[0].tolist() == pytest.approx([0.25, 0.40 / 1.2], abs=1e-5)


def test_first_enrolment_after_searching_an_empty_gallery(tmp_path):
    with Gallery.open(tmp_path / "g.db", model=Lookup(np.eye(8, dtype=np.float32)), create=True) as gal:
        with pytest.raises(UserError, match="no one is enrolled"):
            gal.identify_embeddings(np.eye(8, dtype=np.float32)[:1])
        gal.enroll("A", [np.zeros((32, 32, 3), np.uint8)])  # updates the (empty) index in place
        assert gal.identify_embeddings(np.eye(8, dtype=np.float32)[:1], 1)[0].candidates[0].name == "A"


def _people_photos(people=1000, dim=32, seed=0):
    """Unit photos of ``people`` people enrolled from 1 to 5 photos each, their names, and unit probes
    (new photos of the first 200)."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((people, dim))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    who = np.arange(people).repeat(rng.integers(1, 6, people))
    emb, probes = (mu[i] + 0.3 / np.sqrt(dim) * rng.standard_normal((len(i), dim)) for i in (who, np.arange(200)))
    unit = [(x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32) for x in (emb, probes)]
    return unit[0], [f"n{i:04d}" for i in who], unit[1]


def test_compressed_gallery_search_matches_exact_centroid_distances(tmp_path, monkeypatch, fake_model):
    monkeypatch.setattr(ix, "EXACT_MAX", 500)
    emb, names, q = _people_photos()
    with Gallery.open(tmp_path / "g.db", model=fake_model, create=True) as gal:
        gal.enroll_embeddings(names, emb)
        ids, d = gal.search(q, 5)
        assert gal.searcher.index.kind == "pq"
        cids, counts, cents = gal.store.centroids()
    pos, want = top_k(centroid_distances(q, cents, counts), 5)
    same = ids[:, 0] == cids[pos[:, 0]]
    assert same.mean() >= 0.99 and np.allclose(d[same, 0], want[same, 0], atol=1e-4)
    assert (np.diff(d, axis=1) >= 0).all()


def test_index_cache_of_an_older_format_is_ignored_and_removed(tmp_path, monkeypatch, fake_model):
    """A side file from before centroid distances (raw centroids under the old name) is never loaded."""
    monkeypatch.setattr(ix, "EXACT_MAX", 500)
    emb, names, q = _people_photos()
    db = tmp_path / "g.db"
    with Gallery.open(db, model=fake_model, create=True) as gal:
        gal.enroll_embeddings(names, emb)
        want = gal.search(q, 3)
        gen = gal.store.generation()
        cids, _, cents = gal.store.centroids()
    (new,) = tmp_path.glob("g.db.index-*")
    new.unlink()
    old = tmp_path / f"g.db.index-{gen}"
    ix.CompressedIndex.build(cids, cents).save(old)
    with Gallery.open(db, model=fake_model) as gal:
        got = gal.search(q, 3)
    assert (got[0] == want[0]).all() and np.allclose(got[1], want[1])
    assert not old.exists() and new.is_file()
