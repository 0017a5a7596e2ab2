"""The gallery commands end to end through the real CLI: enroll, identify --gallery, people, remove,
rename, export/import, threshold, reembed, and their one-line errors."""

import json

from click.testing import CliRunner

from facegallery.cli import main


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _errors(r):
    return [l for l in r.stderr.splitlines() if l.startswith("facegallery: error:")]


def test_enroll_identify_people(face_tree, tiny_model_dir, tmp_path):
    db = tmp_path / "g.db"
    r = _run("enroll", "--gallery", db, face_tree)
    assert r.exit_code == 2 and "--create" in _errors(r)[0] and not db.exists()
    r = _run("enroll", "--gallery", db, "--create", "--model", tiny_model_dir, "--detect", "off", face_tree)
    assert r.exit_code == 0, r.output
    assert "Person 0: 5 added, 0 already there" in r.stdout
    r = _run("enroll", "--gallery", db, face_tree)  # again: nothing new
    assert r.exit_code == 0 and "Person 3: 0 added, 5 already there" in r.stdout
    people = json.loads(_run("people", "--gallery", db, "--json").stdout)
    assert people == [{"name": f"Person {i}", "photos": 5} for i in range(4)]
    probe = face_tree / "Person 2" / "1.jpg"
    out = json.loads(_run("identify", "--gallery", db, "--top-k", "3", "--json", probe).stdout)
    lib = json.loads(
        _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--top-k", "3", "--json", probe).stdout
    )
    face = out[0]["faces"][0]
    assert out[0]["path"] == lib[0]["path"] and set(face) == set(lib[0]["faces"][0]) | {"score"}
    assert list(face)[:5] == ["box", "name", "distance", "score", "candidates"]
    assert face["name"] == "Person 2" and 0.5 < face["score"] <= 1
    assert [c["name"] for c in face["candidates"]] == [c["name"] for c in lib[0]["faces"][0]["candidates"]]
    text = _run("identify", "--gallery", db, probe).stdout
    assert "Person 2" in text and "score" in text


def test_enroll_one_person_by_name_and_manage(face_tree, tiny_model_dir, tmp_path):
    db = tmp_path / "g.db"
    photos = sorted((face_tree / "Person 1").glob("*.jpg"))
    r = _run("enroll", "--gallery", db, "--create", "--model", tiny_model_dir, "--name", "Ada", *photos)
    assert r.exit_code == 0 and "Ada: 5 added" in r.stdout
    _run("enroll", "--gallery", db, "--name", "Bob", face_tree / "Person 2")
    assert _run("remove", "--gallery", db, "--photo", photos[0], "Ada").exit_code == 0
    assert _run("rename", "--gallery", db, "Bob", "Robert").exit_code == 0
    assert _run("people", "--gallery", db).stdout.splitlines() == ["Ada\t4", "Robert\t5"]
    assert _run("remove", "--gallery", db, "Robert").exit_code == 0
    assert _run("people", "--gallery", db).stdout.splitlines() == ["Ada\t4"]


def test_export_import_threshold_reembed(face_tree, tiny_model_dir, tmp_path):
    db, copy, out = tmp_path / "g.db", tmp_path / "copy.db", tmp_path / "g.npz"
    _run("enroll", "--gallery", db, "--create", "--model", tiny_model_dir, "--detect", "off", face_tree)
    assert _run("export", "--gallery", db, out).exit_code == 0
    r = _run("import", "--gallery", copy, "--create", out)
    assert r.exit_code == 0 and "imported 20 photos of 4 people" in r.stdout
    assert _run("people", "--gallery", copy, "--json").stdout == _run("people", "--gallery", db, "--json").stdout
    r = _run("threshold", "--gallery", db)
    assert r.exit_code == 0 and "gallery's own photos" in r.stdout and "impostor distances accepted" in r.stdout
    cal = json.loads(_run("threshold", "--gallery", db, "--set", "0.25", "--json").stdout)
    assert cal["identify"]["threshold"] == 0.25 and cal["method"] == "raw"
    out = json.loads(_run("identify", "--gallery", db, "--json", face_tree / "Person 0" / "1.jpg").stdout)
    assert out[0]["faces"][0]["distance"] <= 0.25 or out[0]["faces"][0]["name"] is None
    r = _run("reembed", "--gallery", db, "--model", tiny_model_dir)
    assert r.exit_code == 0 and "re-embedded 20 photos" in r.stdout


def test_one_line_errors_and_nothing_lost(face_tree, tiny_model_dir, other_model_dir, tmp_path):
    db = tmp_path / "g.db"
    _run("enroll", "--gallery", db, "--create", "--model", tiny_model_dir, "--detect", "off", face_tree)
    notdb = tmp_path / "notes.db"
    notdb.write_text("hello")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    (tmp_path / "empty").mkdir()
    cases = [
        ("identify", "--gallery", db, "--library", face_tree, bad),
        ("identify", "--gallery", tmp_path / "missing.db", face_tree),
        ("people", "--gallery", notdb),
        ("enroll", "--gallery", db, "--name", "a/b", face_tree / "Person 0"),
        ("enroll", "--gallery", db, "--name", "New", bad),
        ("enroll", "--gallery", db, tmp_path / "empty"),
        ("enroll", "--gallery", db, "--model", other_model_dir, "--name", "X", face_tree / "Person 0"),
        ("remove", "--gallery", db, "Nobody"),
        ("rename", "--gallery", db, "Person 0", "Person 1"),
        ("import", "--gallery", db, bad),
        ("threshold", "--gallery", db, "--far", "2"),
    ]
    for args in cases:
        r = _run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert len(_errors(r)) == 1, (args, r.stderr)
    assert notdb.read_text() == "hello"
    people = json.loads(_run("people", "--gallery", db, "--json").stdout)
    assert people == [{"name": f"Person {i}", "photos": 5} for i in range(4)]


def test_help_and_people_start_without_the_heavy_libraries(face_tree, tiny_model_dir, tmp_path):
    """Start-up stays light: `--help` and `people` import neither PyTorch nor scikit-learn (whose imports
    took ~2 s of every command); what a command needs is imported when it runs."""
    import subprocess
    import sys

    db = tmp_path / "g.db"
    from facegallery.gallery import Gallery

    with Gallery.open(db, model=tiny_model_dir, create=True) as g:
        g.enroll("Ada", [face_tree / "Person 0" / "1.jpg"], detect="off")
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom facegallery.cli import main\n"
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(main, ['people', '--gallery', {str(db)!r}]); assert 'Ada' in r.output, r.output\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib', 'faiss') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_enrolment_counts_read_as_english(face_tree, tiny_model_dir, tmp_path):
    db = tmp_path / "g.db"
    r = _run(
        "enroll",
        "--gallery",
        db,
        "--create",
        "--model",
        tiny_model_dir,
        "--detect",
        "off",
        "--name",
        "Ada",
        face_tree / "Person 0" / "1.jpg",
    )
    assert r.exit_code == 0 and f"{db}: 1 photo added; 1 person enrolled" in r.stdout
    r = _run("enroll", "--gallery", db, "--name", "Bo", "--detect", "off", face_tree / "Person 1")
    assert r.exit_code == 0 and f"{db}: 5 photos added; 2 people enrolled" in r.stdout


def test_verify_command_compares_two_photos(face_tree, tiny_model_dir, tmp_path):
    db = tmp_path / "g.db"
    _run("enroll", "--gallery", db, "--create", "--model", tiny_model_dir, "--detect", "off", face_tree)
    same = _run(
        "verify",
        "--gallery",
        db,
        "--detect",
        "off",
        "--json",
        face_tree / "Person 3" / "1.jpg",
        face_tree / "Person 3" / "2.jpg",
    )
    diff = _run(
        "verify",
        "--gallery",
        db,
        "--detect",
        "off",
        "--json",
        face_tree / "Person 3" / "1.jpg",
        face_tree / "Person 0" / "2.jpg",
    )
    assert same.exit_code == 0 and diff.exit_code == 0, same.output + diff.output
    a, b = json.loads(same.stdout), json.loads(diff.stdout)
    assert a["distance"] < b["distance"] and a["threshold"] == b["threshold"]
    text = _run(
        "verify", "--gallery", db, "--detect", "off", face_tree / "Person 3" / "1.jpg", face_tree / "Person 3" / "2.jpg"
    )
    assert ("same person" if a["same"] else "different people") in text.stdout
    r = _run("verify", "--gallery", db, face_tree / "Person 3" / "1.jpg", tmp_path / "nope.jpg")
    assert r.exit_code == 2 and "nope.jpg" in r.output


def test_remove_a_photo_of_a_name_typed_in_nfd_says_how_many_are_left(face_tree, tiny_model_dir, tmp_path):
    db = tmp_path / "g.db"
    photos = sorted((face_tree / "Person 1").glob("*.jpg"))
    nfc, nfd = "Jos\N{LATIN SMALL LETTER E WITH ACUTE}", "Jose\N{COMBINING ACUTE ACCENT}"
    assert _run("enroll", "--gallery", db, "--create", "--model", tiny_model_dir, "--name", nfc, *photos).exit_code == 0
    r = _run("remove", "--gallery", db, "--photo", photos[0], nfd)
    assert r.exit_code == 0 and r.stdout.strip() == f"removed 1 photo(s) of {nfc}; 4 left", r.output
