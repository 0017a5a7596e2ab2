"""The gallery in PostgreSQL: the same answers as in SQLite, migration both ways, replicas racing,
users who may only read, and passwords that never show."""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pytest
from click.testing import CliRunner

from facegallery.cli import main
from facegallery.errors import Conflict, ReadOnly, UserError
from facegallery.gallery import Gallery
from facegallery.gallery.postgres import public_url
from facegallery.gallery.store import open_store
from facegallery.gallery.transfer import centroids_off


def _as_user(url: str, user: str, password: str | None = None) -> str:
    scheme, rest = url.split("://", 1)
    login = f"{user}:{password}" if password else user
    return f"{scheme}://{login}@{rest.split('@', 1)[1]}"


def _admin(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def _soon(check, seconds: float = 3.0) -> bool:
    """Whether ``check()`` comes true within ``seconds`` (a notification reaches the other replica within
    milliseconds, not at the instant the writer's commit returns)."""
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def _answers(g: Gallery, face_tree) -> list:
    res = g.identify([face_tree / f"Person {i}" / "3.jpg" for i in range(4)], top_k=2)
    return [(a.name, a.candidates[0].name, round(a.distance, 5)) for a in res]


def test_migrate_to_postgresql_and_back_gives_the_same_gallery(enrolled, postgres_url, tmp_path, face_tree):
    """Issue 28.4: `facegallery migrate` both ways: counts, thumbnails, the model, every centroid the mean
    of its photos' embeddings, and the same answers."""
    with Gallery.open(enrolled) as g:
        g.set_threshold(far=0.05)
        before, people, photos = _answers(g, face_tree), g.people(), g.photos("Person 2")
    runner = CliRunner()
    r = runner.invoke(main, ["migrate", "--gallery", str(enrolled), "--to", postgres_url])
    assert r.exit_code == 0, r.output
    assert "4 people, 20 photos and 20 thumbnails copied" in r.stdout and "every centroid" in r.stdout
    with Gallery.open(postgres_url) as g:
        assert [(p.name, p.photos) for p in g.people()] == [(p.name, p.photos) for p in people]
        assert [(p.sha256, p.source) for p in g.photos("Person 2")] == [(p.sha256, p.source) for p in photos]
        assert g.thumbnail("Person 1") is not None and g.calibration().method == "far=0.05"
        assert _answers(g, face_tree) == before and centroids_off(g.store) == 0
    back = tmp_path / "back.db"
    assert runner.invoke(main, ["migrate", "--gallery", postgres_url, "--to", str(back)]).exit_code == 0
    with Gallery.open(back) as g:
        assert _answers(g, face_tree) == before
    r = runner.invoke(main, ["migrate", "--gallery", str(enrolled), "--to", postgres_url])
    assert r.exit_code == 2 and "already holds people" in r.stderr


def test_an_empty_database_needs_create_and_other_tables_are_refused(postgres_url):
    with pytest.raises(UserError, match="no gallery in this database"):
        open_store(postgres_url)
    _admin(postgres_url, "CREATE TABLE meta (k TEXT)", "CREATE TABLE orders (id INT)")
    with pytest.raises(UserError, match="not a facegallery gallery") as e:
        open_store(postgres_url, create=True)
    assert "\n" not in str(e.value)


def test_the_password_never_shows(postgres_url, postgres_admin, enrolled):
    """Issue 28 (security): not in messages, `people`, errors, or the store's name."""
    role, secret = f"fg_{uuid.uuid4().hex[:8]}", "s3cret-Pa55"
    _admin(postgres_admin, f"CREATE ROLE {role} LOGIN PASSWORD '{secret}' SUPERUSER")
    url = _as_user(postgres_url, role, secret)
    assert secret not in public_url(url) and role in public_url(url)
    runner = CliRunner()
    outputs = [
        runner.invoke(main, ["migrate", "--gallery", str(enrolled), "--to", url]),
        runner.invoke(main, ["people", "--gallery", url]),
        runner.invoke(main, ["remove", "--gallery", url, "Nobody"]),
        runner.invoke(main, ["threshold", "--gallery", url]),
        runner.invoke(main, ["people", "--gallery", url.replace("/fg_", "/nodb_")]),
    ]
    assert [o.exit_code for o in outputs] == [0, 0, 2, 0, 2]
    for o in outputs:
        assert secret not in o.output
    with Gallery.open(url) as g:
        with pytest.raises(UserError) as e:
            g.remove("Nobody")
        assert secret not in str(e.value) and secret not in g.path


def test_a_user_who_may_only_read_gets_answers_and_clear_refusals(enrolled_pg, postgres_url, face_tree):
    """Issue 28 (security): a read-only database user reads and identifies; writes are refused in one
    line before any photo is embedded."""
    role = f"fg_ro_{uuid.uuid4().hex[:8]}"
    _admin(
        postgres_url,
        f"CREATE ROLE {role} LOGIN",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
    )
    with Gallery.open(_as_user(postgres_url, role)) as g:
        assert len(g.people()) == 4 and g.identify(face_tree / "Person 1" / "2.jpg").name == "Person 1"
        for write in (
            lambda: g.enroll("New", [face_tree / "Person 0" / "1.jpg"]),
            lambda: g.rename("Person 1", "P"),
            lambda: g.remove("Person 1"),
        ):
            with pytest.raises(ReadOnly, match=f"database user {role} may not write") as e:
                write()
            assert "\n" not in str(e.value)


@pytest.fixture
def enrolled_pg(postgres_url, face_tree, tiny_model_dir) -> str:
    with Gallery.open(postgres_url, model=tiny_model_dir, create=True) as g:
        g.enroll_folder(face_tree)
    return postgres_url


def test_two_replicas_enrolling_one_new_person_at_once_make_one_person(postgres_url, fake_model):
    """Issue 28.5: two replicas enrol the same new name at the same moment: one person, every photo once."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal((8, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    with Gallery.open(postgres_url, model=fake_model, create=True) as g:
        g.enroll_embeddings(["seed"], v[:1])
    start, errors = threading.Barrier(2), []

    def replica(rows: slice) -> None:
        with Gallery.open(postgres_url, model=fake_model) as g:
            start.wait()
            try:
                sources = [(None, f"{i:064x}") for i in range(rows.start, rows.stop)]
                g.enroll_faces("Ada", v[rows], sources, fake_model.fingerprint, force=True)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

    threads = [threading.Thread(target=replica, args=(s,)) for s in (slice(1, 5), slice(3, 8))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Gallery.open(postgres_url, model=fake_model) as g:
        assert {p.name: p.photos for p in g.people()} == {"seed": 1, "Ada": 7}
        assert centroids_off(g.store) == 0


def test_two_replicas_renaming_to_one_name_at_once_one_wins(enrolled_pg):
    """Issue 28.5: the second rename to a taken name is a Conflict (409), and nothing is mixed."""
    start, results = threading.Barrier(2), {}

    def replica(old: str) -> None:
        with Gallery.open(enrolled_pg) as g:
            start.wait()
            try:
                g.rename(old, "Ada")
                results[old] = "renamed"
            except Conflict:
                results[old] = "conflict"

    threads = [threading.Thread(target=replica, args=(f"Person {i}",)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == ["conflict", "renamed"]
    with Gallery.open(enrolled_pg) as g:
        names = {p.name: p.photos for p in g.people()}
        assert "Ada" in names and len(names) == 4 and set(names.values()) == {5}


def test_a_replica_of_another_model_is_refused_in_one_line(enrolled_pg, other_model_dir):
    with pytest.raises(Conflict, match="reembed") as e:
        Gallery.open(enrolled_pg, model=other_model_dir)
    assert "\n" not in str(e.value)


def test_a_replica_sees_another_replicas_enrolment(enrolled_pg, face_tree, tiny_model_dir, tmp_path, make_face):
    """Issue 28.2: an enrolment through one replica is answered by the other at its next request,
    through the notification and the changes log (no reload of everyone)."""
    from PIL import Image

    late = tmp_path / "late.jpg"
    Image.fromarray(make_face(9, 0)).save(late, quality=95)
    with Gallery.open(enrolled_pg) as a, Gallery.open(enrolled_pg) as b:
        assert b.identify(late).candidates[0].name != "Late"
        index = b.searcher.index
        a.enroll("Late", [late])
        assert _soon(lambda: b.identify(late).name == "Late")
        assert b.searcher.index is index  # updated in place, not rebuilt
        a.remove("Late")
        assert _soon(lambda: b.identify(late).candidates[0].name != "Late")


def test_a_threshold_set_through_one_replica_holds_on_the_other(enrolled_pg):
    """Replicas answer from memory until a notification comes: a new rule (a write that changes no one)
    is announced too."""
    with Gallery.open(enrolled_pg) as a, Gallery.open(enrolled_pg) as b:
        before = b.calibration().identify.threshold
        a.set_threshold(raw=before / 2)
        assert _soon(lambda: b.calibration().identify.threshold == before / 2)
        assert b.calibration().source == "hand-set"


def test_the_cli_identifies_against_a_postgresql_gallery(enrolled_pg, face_tree):
    runner = CliRunner()
    r = runner.invoke(main, ["identify", "--gallery", enrolled_pg, "--json", str(face_tree / "Person 3" / "2.jpg")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["faces"][0]["name"] == "Person 3"
