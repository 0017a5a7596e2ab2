"""Enrolment, management, identification and export of a gallery of generated faces."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegallery import int8, quantization
from facegallery.errors import UserError
from facegallery.gallery import Gallery
from facegallery.images import SkipWarning


def _people(db):
    with Gallery.open(db) as g:
        return {p.name: p.photos for p in g.people()}


def test_enrol_folder_then_again_is_idempotent(enrolled, face_tree):
    assert _people(enrolled) == {f"Person {i}": 5 for i in range(4)}
    with Gallery.open(enrolled) as g:
        gen = g.store.generation()
        again = g.enroll_folder(face_tree)
        assert [(r.added, r.duplicates) for r in again] == [(0, 5)] * 4
        assert g.store.generation() == gen  # nothing written
        # the same bytes under another file name are still the same photo
        r = g.enroll("Person 0", [face_tree / "Person 0" / "1.jpg", face_tree / "Person 0" / "1.jpg"])
        assert (r.added, r.duplicates) == (0, 2)
    assert _people(enrolled)["Person 0"] == 5


def test_enrol_is_incremental_and_keeps_centroid_exact(enrolled, face_tree, tmp_path):
    extra = tmp_path / "new.jpg"
    Image.open(face_tree / "Person 1" / "1.jpg").rotate(10).save(extra)
    with Gallery.open(enrolled) as g:
        r = g.enroll("Person 1", [extra])
        assert (r.added, r.skipped) == (1, 0)
        ident = g.store.identity_id("Person 1")
        _, emb = g.store.embeddings([ident])
        ids, counts, cents = g.store.centroids()
        row = list(ids).index(ident)
        assert counts[row] == 6 and np.allclose(cents[row], emb.mean(0), atol=1e-6)


def test_identify_knows_enrolled_people(enrolled, face_tree):
    with Gallery.open(enrolled) as g:
        res = g.identify([face_tree / f"Person {i}" / "3.jpg" for i in range(4)], top_k=2)
        assert [r.name for r in res] == [f"Person {i}" for i in range(4)]
        for r in res:
            assert 0 <= r.score <= 1 and r.distance == r.candidates[0].distance and len(r.candidates) == 2
        single = g.identify(np.asarray(Image.open(face_tree / "Person 2" / "1.jpg")))
        assert single.name == "Person 2"
        assert g.identify(face_tree / "Person 2" / "1.jpg", threshold=0.0).name is None


def test_verify_same_and_different(enrolled, face_tree):
    with Gallery.open(enrolled) as g:
        same = g.verify(face_tree / "Person 3" / "1.jpg", face_tree / "Person 3" / "2.jpg")
        diff = g.verify(face_tree / "Person 3" / "1.jpg", face_tree / "Person 0" / "2.jpg")
    assert same.same and not diff.same
    assert same.distance < diff.distance and same.score > 0.5 > diff.score


def test_remove_rename_people(enrolled, face_tree):
    with Gallery.open(enrolled) as g:
        assert g.remove("Person 0", face_tree / "Person 0" / "2.jpg") == 1
        with pytest.raises(UserError, match="not a stored photo"):
            g.remove("Person 0", face_tree / "Person 0" / "2.jpg")
        g.rename("Person 1", "Ada")
        with pytest.raises(UserError, match="already enrolled"):
            g.rename("Ada", "Person 2")
        with pytest.raises(UserError, match="no such person"):
            g.remove("Nobody")
        assert g.remove("Person 3") == 5
        assert g.identify(face_tree / "Person 1" / "1.jpg").name == "Ada"
        assert g.identify(face_tree / "Person 3" / "1.jpg").candidates[0].name != "Person 3"
    assert _people(enrolled) == {"Person 0": 4, "Ada": 5, "Person 2": 5}


def test_bad_inputs_are_refused_and_lose_nothing(enrolled, face_tree, tmp_path):
    before = _people(enrolled)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    (tmp_path / "empty").mkdir()
    with Gallery.open(enrolled) as g:
        with pytest.warns(SkipWarning, match="bad.jpg"):
            r = g.enroll("New", [bad])
        assert (r.added, r.rejected) == (0, 1)
        for name in ("", "a/b", "x\x00"):
            with pytest.raises(UserError):
                g.enroll(name, [face_tree / "Person 0" / "1.jpg"])
        with pytest.raises(UserError, match="no person folders"):
            g.enroll_folder(tmp_path / "empty")
    assert _people(enrolled) == before


def test_model_mismatch_is_refused_then_reembed_converts(enrolled, other_model_dir, face_tree, tiny_model_dir):
    with pytest.raises(UserError, match="reembed") as e:
        Gallery.open(enrolled, model=other_model_dir)
    assert "\n" not in str(e.value)
    with Gallery.open(enrolled) as g:
        old = g.store.embeddings()[1]
        report = g.reembed(other_model_dir)
        assert report.reembedded == 20 and report.dropped == []
        assert not np.allclose(g.store.embeddings()[1], old)
        assert g.identify(face_tree / "Person 2" / "2.jpg").name == "Person 2"
    with Gallery.open(enrolled, model=other_model_dir) as g:  # now the new model is the gallery's
        assert g.embedder.name == "other"
    with pytest.raises(UserError, match="reembed"):
        Gallery.open(enrolled, model=tiny_model_dir)


def test_reembed_reports_missing_sources_and_changes_nothing(enrolled, other_model_dir, face_tree):
    (face_tree / "Person 1" / "3.jpg").unlink()
    with Gallery.open(enrolled) as g:
        fp = g.store.meta("model_fingerprint")
        with pytest.warns(UserWarning, match="3.jpg"), pytest.raises(UserError, match="drop-missing"):
            g.reembed(other_model_dir)
        assert g.store.meta("model_fingerprint") == fp and g.store.count("photos") == 20
        with pytest.warns(UserWarning):
            report = g.reembed(other_model_dir, drop_missing=True)
        assert report.reembedded == 19 and report.dropped[0].endswith("Person 1/3.jpg")
    assert _people(enrolled)["Person 1"] == 4


def test_enrol_arrays_and_metadata(tmp_path, tiny_model_dir, face_tree):
    pics = np.stack([np.asarray(Image.open(face_tree / "Person 2" / f"{i}.jpg")) for i in (1, 2, 3)])
    with Gallery.open(tmp_path / "a.db", model=tiny_model_dir, create=True) as g:
        r = g.enroll("Zoë", pics, metadata={"team": "blue"})
        assert r.added == 3 and g.enroll("Zoë", pics[0]).duplicates == 1
        assert g.people()[0].metadata == {"team": "blue"}


def test_export_import_round_trip(enrolled, tmp_path, face_tree):
    out = tmp_path / "g.npz"
    with Gallery.open(enrolled) as g:
        g.export_to(out)
        with pytest.raises(UserError, match="already exists"):
            g.export_to(out)
        centroids = g.store.centroids()[2]
    with np.load(out, allow_pickle=False) as z:  # plain arrays only
        assert set(z.files) == {"embeddings", "person", "info"} and z["embeddings"].dtype == np.float32
    with Gallery.open(tmp_path / "copy.db", create=True) as g:
        res = g.import_from(out)
        assert sum(r.added for r in res) == 20
        assert np.allclose(g.store.centroids()[2], centroids)
        assert sum(r.added for r in g.import_from(out)) == 0  # idempotent
        assert g.identify(face_tree / "Person 3" / "4.jpg").name == "Person 3"  # uses the adopted model
    assert _people(tmp_path / "copy.db") == _people(enrolled)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 nope")
    with Gallery.open(enrolled) as g, pytest.raises(UserError, match="not a facegallery export"):
        g.import_from(junk)


def test_import_from_other_model_is_refused(enrolled, tmp_path, other_model_dir, face_tree):
    other = tmp_path / "other.db"
    with Gallery.open(other, model=other_model_dir, create=True) as g:
        g.enroll("X", [face_tree / "Person 0" / "1.jpg"])
        g.export_to(tmp_path / "other.npz")
    with Gallery.open(enrolled) as g, pytest.raises(UserError, match="reembed"):
        g.import_from(tmp_path / "other.npz")
    assert "X" not in _people(enrolled)


def test_interrupted_enrolment_leaves_person_absent(enrolled, face_tree, monkeypatch):
    from facegallery.gallery.sqlite import SQLiteStore as Store

    def boom(self, ident):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "update_centroid", boom)
    with Gallery.open(enrolled) as g:
        with pytest.raises(KeyboardInterrupt):
            g.enroll("Late", [face_tree / "Person 0" / "1.jpg"])
        assert g.store.identity_id("Late") is None and g.store.count("photos") == 20


@pytest.mark.skipif(not quantization.available(), reason="no x86 quantised engine here")
def test_gallery_keeps_the_precision_it_was_enrolled_with(tiny_model_dir, face_tree, tmp_path, make_face):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    with Gallery.open(old, model=model, create=True) as g:  # before the model had an int8 network
        g.enroll_folder(face_tree)
        assert g.store.meta("model_ref") == f"{model}@fp32"
        g.store.set_meta("model_ref", str(model))  # as galleries made before int8 existed recorded it
    int8.quantize_checkpoint(model, np.stack([make_face(p, s, 64) for p in range(4) for s in range(4)]))
    with Gallery.open(old) as g:  # a reference without a precision means the float network
        assert g.embedder.precision == "fp32" and g.identify(face_tree / "Person 2" / "2.jpg").name == "Person 2"
    with Gallery.open(new, model=model, create=True) as g:
        g.enroll_folder(face_tree)
        assert g.embedder.precision == "int8" and g.store.meta("model_ref") == f"{model}@int8"
    with Gallery.open(new) as g:
        assert g.embedder.precision == "int8" and g.identify(face_tree / "Person 1" / "4.jpg").name == "Person 1"
    with pytest.raises(UserError, match="reembed"):  # the float network's embeddings are not the int8 ones
        _ = Gallery.open(new, model=f"{model}@fp32").embedder


def test_python_api_detects_faces_by_default_as_the_cli_does(tmp_path):
    """Gallery.enroll / identify / verify find the face in an ordinary photo unless told detect="off":
    the astronaut enrolled from her photo is recognised in the same photo placed on a larger canvas."""
    pytest.importorskip("dlib")
    photo = pytest.importorskip("skimage.data").astronaut()
    canvas = np.full((700, 900, 3), 90, np.uint8)
    canvas[150:662, 300:812] = photo
    with Gallery.open(tmp_path / "a.db", create=True) as g:
        assert g.enroll("Eileen Collins", [photo]).added == 1
        who = g.identify(canvas)
        assert who.name == "Eileen Collins" and who.distance < 0.05
        assert g.verify(photo, canvas).same
        assert g.identify(canvas, detect="off").distance > who.distance + 0.1  # the whole canvas is no face
        with pytest.raises(UserError, match="no face found"):
            g.identify(np.full((400, 400, 3), 128, np.uint8))


def test_names_typed_in_either_unicode_form_are_one_person(face_tree, tiny_model_dir, tmp_path):
    import unicodedata

    nfc, nfd = unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José")
    assert nfc != nfd
    with Gallery.open(tmp_path / "u.db", model=tiny_model_dir, create=True) as g:
        g.enroll(nfc, [face_tree / "Person 0" / "1.jpg"], detect="off")
        assert g.enroll(nfd, [face_tree / "Person 0" / "2.jpg"], detect="off").added == 1
        assert [(p.name, p.photos) for p in g.people()] == [(nfc, 2)]
        g.enroll("Ana", [face_tree / "Person 1" / "1.jpg"], detect="off")
        with pytest.raises(UserError, match="already enrolled"):
            g.rename("Ana", nfd)
        g.remove(nfd)
        assert [p.name for p in g.people()] == ["Ana"]


@pytest.mark.parametrize("damage", ["nan", "inf", "not unit", "wrong dimension"])
def test_import_refuses_damaged_embeddings_and_changes_nothing(enrolled, tmp_path, damage):
    out = tmp_path / "g.npz"
    with Gallery.open(enrolled) as g:
        g.export_to(out)
    with np.load(out, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    emb = arrays["embeddings"]
    if damage == "nan":
        emb[3, 5] = np.nan
    elif damage == "inf":
        emb[0, 0] = np.inf
    elif damage == "not unit":
        emb[1] *= 3
    else:
        emb = np.hstack([emb, np.zeros((len(emb), 2), np.float32)])
    arrays["embeddings"] = emb
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    before = enrolled.read_bytes()
    with Gallery.open(enrolled) as g, pytest.raises(UserError, match="bad.npz: .*(NaN|unit|-D)"):
        g.import_from(bad)
    assert enrolled.read_bytes() == before
    with Gallery.open(tmp_path / "fresh.db", create=True) as g:
        if damage == "wrong dimension":  # a new gallery adopts the export's model, whose vectors are 128-D
            with pytest.raises(UserError, match="-D"):
                g.import_from(bad)
        else:
            with pytest.raises(UserError):
                g.import_from(bad)
        assert g.store.count("photos") == 0


def test_a_subfolder_that_cannot_be_a_name_is_skipped_and_the_rest_enrolled(face_tree, tiny_model_dir, tmp_path):
    bad = face_tree / " Trailing space "
    bad.mkdir()
    shutil.copy(face_tree / "Person 0" / "1.jpg", bad / "1.jpg")
    with Gallery.open(tmp_path / "s.db", model=tiny_model_dir, create=True) as g:
        with pytest.warns(SkipWarning, match="Trailing space"):
            g.enroll_folder(face_tree, detect="off")
        assert sorted(p.name for p in g.people()) == [f"Person {i}" for i in range(4)]


def test_two_writers_with_different_models_cannot_mix_embeddings(face_tree, tiny_model_dir, other_model_dir, tmp_path):
    """Both open the empty gallery and load their models (each check passes: no photos yet); the first
    to write makes its model the gallery's, the second is refused under the write lock."""
    db = tmp_path / "race.db"
    Gallery.open(db, model=tiny_model_dir, create=True).close()
    a, b = Gallery.open(db, model=tiny_model_dir), Gallery.open(db, model=other_model_dir)
    try:
        assert a.embedder and b.embedder  # both loaded before either wrote
        a.enroll("A", [face_tree / "Person 0" / "1.jpg"], detect="off")
        with pytest.raises(UserError, match="reembed"):
            b.enroll("B", [face_tree / "Person 1" / "1.jpg"], detect="off")
    finally:
        a.close()
        b.close()
    with Gallery.open(db, model=tiny_model_dir) as g:
        assert [p.name for p in g.people()] == ["A"] and g.store.count("photos") == 1


def test_two_writers_enrolling_the_same_photos_store_them_once(face_tree, tiny_model_dir, tmp_path, monkeypatch):
    """The second writer read the person's photos before the first committed (simulated: its first
    look finds none); it must skip them inside its transaction, not fail on the unique index."""
    from facegallery.gallery.sqlite import SQLiteStore as Store

    db = tmp_path / "same.db"
    photos = [face_tree / "Person 0" / f"{i}.jpg" for i in (1, 2, 3)]
    with Gallery.open(db, model=tiny_model_dir, create=True) as g:
        g.enroll("Ada", photos[:2], detect="off")
    real, calls = Store.photo_hashes, []

    def stale_first_look(self, ident):
        calls.append(ident)
        return set() if len(calls) == 1 else real(self, ident)

    monkeypatch.setattr(Store, "photo_hashes", stale_first_look)
    with Gallery.open(db, model=tiny_model_dir) as g:
        r = g.enroll("Ada", photos, detect="off")
        assert (r.added, r.duplicates) == (1, 2)
        assert [(p.name, p.photos) for p in g.people()] == [("Ada", 3)]


def test_a_file_name_that_is_not_utf8_is_skipped_with_a_readable_warning(face_tree, tiny_model_dir, tmp_path):
    import os

    bad = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xff.jpg"))
    try:
        shutil.copy(face_tree / "Person 0" / "1.jpg", bad)
    except (UnicodeEncodeError, OSError):
        pytest.skip("this file system refuses names that are not UTF-8")
    with Gallery.open(tmp_path / "n.db", model=tiny_model_dir, create=True) as g:
        with pytest.warns(SkipWarning, match="not valid UTF-8") as caught:
            r = g.enroll("Ada", [bad, face_tree / "Person 0" / "2.jpg"], detect="off")
        assert (r.added, r.rejected) == (1, 1)
        str(caught[0].message).encode("utf-8")  # printable as it is


def test_export_checks_its_folder_and_a_full_disk_leaves_no_debris(enrolled, tmp_path, monkeypatch):
    import errno

    with Gallery.open(enrolled) as g:
        with pytest.raises(UserError, match="no such folder"):
            g.export_to(tmp_path / "missing" / "g.npz")

        def full(f, **arrays):
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(np, "savez", full)
        with pytest.raises(UserError, match="g.npz: cannot write \\(No space left on device\\)"):
            g.export_to(tmp_path / "g.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.db", "people"]  # no g.npz, no .tmp debris


@pytest.mark.parametrize("damage", ["no model", "people not objects", "info not an object", "photo without hash"])
def test_import_of_a_malformed_export_is_one_line(enrolled, tmp_path, damage):
    import json

    out = tmp_path / "g.npz"
    with Gallery.open(enrolled) as g:
        g.export_to(out)
    with np.load(out, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    info = json.loads(str(arrays["info"]))
    if damage == "no model":
        del info["model_fingerprint"]
    elif damage == "people not objects":
        info["people"] = [p["name"] for p in info["people"]]
    elif damage == "info not an object":
        info = [info]
    else:
        del info["photos"][0]["sha256"]
    arrays["info"] = np.array(json.dumps(info))
    np.savez(tmp_path / "bad.npz", **arrays)
    with (
        Gallery.open(tmp_path / "fresh.db", create=True) as g,
        pytest.raises(UserError, match="bad.npz: not a facegallery export"),
    ):
        g.import_from(tmp_path / "bad.npz")


@pytest.mark.parametrize("detect", ["off", "auto"])
def test_degenerate_images_are_not_taken_as_faces(face_tree, tiny_model_dir, tmp_path, detect):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    for name, size in (("1x1.png", (1, 1)), ("5x60.png", (5, 60))):
        Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(tiny / name)
    with Gallery.open(tmp_path / "d.db", model=tiny_model_dir, create=True) as g:
        with (
            pytest.warns(UserWarning, match="too small to be a face crop"),
            pytest.warns(SkipWarning, match="no face found"),
        ):
            r = g.enroll("Ada", sorted(tiny.iterdir()) + [face_tree / "Person 0" / "1.jpg"], detect=detect)
        assert (r.added, r.rejected) == (1, 2)
        with pytest.warns(UserWarning, match="too small to be a face crop"):
            [answer] = g.recognize([tiny / "1x1.png"], detect=detect)
        assert answer["faces"] == []


def test_the_mismatch_hint_names_a_model_that_loads(enrolled, other_model_dir):
    """Given as a loaded embedder (no path), the hint still names the checkpoint folder, not its name."""
    import re

    from facegallery.embedder import load_model

    with pytest.raises(UserError) as e:
        _ = Gallery.open(enrolled, model=load_model(other_model_dir)).embedder
    ref = re.search(r"--model (\S+)`", str(e.value)).group(1)
    assert load_model(ref).fingerprint == load_model(other_model_dir).fingerprint


def test_a_full_disk_during_enrolment_is_one_line_and_keeps_everyone_stored(enrolled, face_tree, tmp_path):
    """SQLite's page limit makes the database 'full' for real: the error is the first one (not SQLite's
    'cannot rollback'), one line, and the people already stored are whole."""
    extra = tmp_path / "extra"
    extra.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):  # enough new rows to overflow the page limit below
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(extra / f"{i}.png")
    before = _people(enrolled)
    with Gallery.open(enrolled) as g:
        pages = g.store.conn.execute("PRAGMA page_count").fetchone()[0]
        g.store.conn.execute(f"PRAGMA max_page_count = {pages + 1}")
        with pytest.raises(UserError, match="full; nothing of this change was written") as e:
            g.enroll("Newcomer", sorted(extra.iterdir()), detect="off")
        assert "\n" not in str(e.value)
    assert _people(enrolled) == before


def test_faces_far_from_an_enrolled_person_are_refused_without_force(tmp_path, fake_model):
    """Issue 27.6: a cluster whose mean lies beyond the unknown threshold from the person it is named as
    is refused (nothing added) unless forced."""
    from facegallery.errors import Conflict

    rng = np.random.default_rng(0)
    mu = rng.standard_normal((12, 16))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    emb = mu.repeat(4, 0) + 0.05 * rng.standard_normal((48, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    names = [f"p{i}" for i in range(12) for _ in range(4)]
    with Gallery.open(tmp_path / "g.db", model=fake_model, create=True) as g:
        g.enroll_embeddings(names, emb)
        other = [(None, f"{i:064x}") for i in range(4)]
        with pytest.raises(Conflict, match="look like someone else") as e:
            g.enroll_faces("p0", emb[4:8], other, fake_model.fingerprint)  # p1's faces named p0
        assert "\n" not in str(e.value) and {p.name: p.photos for p in g.people()}["p0"] == 4
        near = g.enroll_faces("p1", emb[4:6] * 0.999 + 0.001, other[:2], fake_model.fingerprint)
        assert near.added == 2
        assert g.enroll_faces("p0", emb[4:8], other, fake_model.fingerprint, force=True).added == 4
