"""Two galleries on one file (as two processes would hold it) racing each other: every multi-step write
re-reads what it depends on under the write lock, and a long-lived gallery never answers from a
stale index."""

from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from facegallery.errors import Conflict
from facegallery.gallery import Gallery
from facegallery.gallery import reembed as reembedding


def _unit(rng, n, d=16):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_reembed_converts_photos_enrolled_while_it_ran(
    enrolled_in, tiny_model_dir, other_model_dir, tmp_path, make_face, monkeypatch
):
    """Issue 27.1: enrol during a reembed; every photo, hers included, ends with the new model's vectors."""
    late = []
    for n in range(3):
        late.append(tmp_path / f"late{n}.jpg")
        Image.fromarray(make_face(7, n)).save(late[-1], quality=95)
    real, raced = reembedding.embed_photos, []

    def racing(*args, **kwargs):
        if not raced:  # after the photo list was read, before the write: another process enrols
            raced.append(True)
            with Gallery.open(enrolled_in, model=tiny_model_dir) as other:
                assert other.enroll("Late", late).added == 3
        return real(*args, **kwargs)

    monkeypatch.setattr(reembedding, "embed_photos", racing)
    with Gallery.open(enrolled_in) as g:
        report = g.reembed(other_model_dir)
    assert raced and report.reembedded == 23
    with Gallery.open(enrolled_in) as g:
        assert g.embedder.name == "other"
        photos = g.photos("Late")  # by id, as the store's embeddings are
        _, stored = g.store.embeddings([photos[0].identity])
        again = g._embed_main_faces([p.source for p in photos], photos[0].detect)
        assert np.allclose(stored, again, atol=1e-5)
        assert g.identify(late[0]).name == "Late"


def test_enrol_with_the_old_model_after_a_reembed_is_refused(enrolled_in, tiny_model_dir, other_model_dir, face_tree):
    """The other order: an enrolment that loaded the old model commits after the reembed: refused, not mixed."""
    with Gallery.open(enrolled_in, model=tiny_model_dir) as slow:
        prepared = slow.prepare([("Late", [face_tree / "Person 0" / "1.jpg"])], slow.finder("auto"))
        with Gallery.open(enrolled_in) as g:
            g.reembed(other_model_dir)
        with pytest.raises(Conflict, match="reembed"):
            slow.commit(prepared[0])
    with Gallery.open(enrolled_in) as g:
        assert "Late" not in {p.name for p in g.people()}


def _write_between_look_and_lock(gallery, other_write):
    """Make ``other_write`` commit just before ``gallery``'s next write transaction takes the lock (where
    a generation read outside the transaction would miss it)."""
    real = gallery.store.transaction

    @contextmanager
    def late(*args, **kwargs):
        other_write()
        gallery.store.transaction = real
        with real(*args, **kwargs) as write:
            yield write

    gallery.store.transaction = late


def test_a_long_lived_gallery_sees_a_write_that_raced_its_own(location, fake_model):
    """Issue 27.2: the index's "before" generation is read under the lock, so another process's commit
    just before ours drops the index instead of being marked current without it."""
    rng = np.random.default_rng(0)
    v = _unit(rng, 30)
    db = location
    with Gallery.open(db, model=fake_model, create=True) as server:
        server.enroll_embeddings([f"p{i}" for i in range(20)], v[:20])
        assert server.identify_embeddings(v[:1])[0].name == "p0"  # the index is built

        def other_process():
            with Gallery.open(db, model=fake_model) as cli:
                cli.enroll_embeddings(["imported"], v[25:26])

        _write_between_look_and_lock(server, other_process)
        server.enroll_faces("p1", v[20:21], [(None, "a" * 64)], fake_model.fingerprint, force=True)
        assert server.identify_embeddings(v[25:26])[0].candidates[0].name == "imported"


def test_a_person_removed_between_search_and_names_is_not_a_crash(location, fake_model):
    """Issue 27.3: removed by another process after the search ran: no KeyError, the answer leaves them out."""
    rng = np.random.default_rng(1)
    v = _unit(rng, 12)
    db = location
    with Gallery.open(db, model=fake_model, create=True) as server:
        server.enroll_embeddings([f"p{i}" for i in range(12)], v)
        real, removed = server.searcher.search, []

        def search_then_remove(q, k):
            out = real(q, k)
            if not removed:
                removed.append(True)
                with Gallery.open(db, model=fake_model) as cli:
                    cli.remove("p3")
            return out

        server.searcher.search = search_then_remove
        (answer,) = server.identify_embeddings(v[3:4], top_k=3)
        assert removed and "p3" not in [c.name for c in answer.candidates] and len(answer.candidates) == 3


def test_import_checks_the_model_under_the_lock(tmp_path, fake_model, tiny_model_dir, enrolled, location):
    """Issue 27.1 (import): a gallery empty when the import began but enrolled_in with another model by the
    time it writes refuses the export instead of mixing two models."""
    out = tmp_path / "g.npz"
    with Gallery.open(enrolled) as g:
        g.export_to(out)
    db = location
    rng = np.random.default_rng(2)
    with Gallery.open(db, model=fake_model, create=True) as g:

        def other_process():
            with Gallery.open(db, model=fake_model) as cli:
                cli.enroll_embeddings(["someone"], _unit(rng, 1))

        _write_between_look_and_lock(g, other_process)
        with pytest.raises(Conflict, match="made with model"):
            g.import_from(out)
        assert [p.name for p in g.people()] == ["someone"]
