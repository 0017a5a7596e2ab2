"""`facegallery identify --library` and `facegallery embed` end to end, through the real CLI."""

import json
import shutil

import numpy as np
from click.testing import CliRunner

from facegallery.cli import main


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_identify_library_json_shape(face_tree, tiny_model_dir):
    probe = face_tree / "Person 2" / "1.jpg"
    r = _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--top-k", "3", "--json", probe)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out) == 1 and out[0]["path"] == str(probe)
    face = out[0]["faces"][0]
    assert face["box"] == [0.0, 0.0, 100.0, 100.0]
    assert [c["distance"] for c in face["candidates"]] == sorted(c["distance"] for c in face["candidates"])
    assert len(face["candidates"]) == 3 and face["distance"] == face["candidates"][0]["distance"]
    assert face["name"] in (None, face["candidates"][0]["name"])


def test_identify_threshold_decides_unknown(face_tree, tiny_model_dir):
    probe = face_tree / "Person 1" / "2.jpg"
    low = json.loads(
        _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--threshold", "0", "--json", probe).stdout
    )
    high = json.loads(
        _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--threshold", "4", "--json", probe).stdout
    )
    assert low[0]["faces"][0]["name"] is None
    assert high[0]["faces"][0]["name"] == high[0]["faces"][0]["candidates"][0]["name"]


def test_user_mistakes_are_one_line_errors(face_tree, tiny_model_dir, tmp_path):
    cases = [
        ("identify", "--library", tmp_path / "nope", "--model", tiny_model_dir, face_tree / "Person 0" / "1.jpg"),
        ("identify", "--library", face_tree, "--model", tmp_path / "no-model", face_tree),
        ("identify", "--library", face_tree, "--model", tiny_model_dir, tmp_path / "missing.jpg"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append(("identify", "--library", tmp_path / "empty", "--model", tiny_model_dir, face_tree))
    for args in cases:
        r = _run(*args)
        assert r.exit_code == 2, (args, r.output)
        lines = [l for l in r.stderr.splitlines() if l.startswith("facegallery: error:")]
        assert len(lines) == 1, r.stderr


def test_missing_probe_is_reported_before_the_library_is_read(tmp_path, tiny_model_dir):
    r = _run("identify", "--library", tmp_path / "nope", "--model", tiny_model_dir, tmp_path / "missing.jpg")
    assert r.exit_code == 2 and "missing.jpg: no such file" in r.stderr and "nope" not in r.stderr


def test_broken_photo_among_probes_is_skipped(face_tree, tiny_model_dir, tmp_path):
    bad = tmp_path / "probes"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    shutil.copy(face_tree / "Person 3" / "1.jpg", bad / "ok.jpg")
    r = _run("identify", "--library", face_tree, "--model", tiny_model_dir, "--json", bad)
    assert r.exit_code == 0
    assert [x["path"].split("/")[-1] for x in json.loads(r.stdout)] == ["ok.jpg"]
    assert "skipping" in r.stderr and "broken.jpg" in r.stderr


def test_embed_writes_unit_vectors(face_tree, tiny_model_dir, tmp_path):
    out = tmp_path / "e.npz"
    r = _run("embed", "--model", tiny_model_dir, "--out", out, face_tree / "Person 0")
    assert r.exit_code == 0, r.output
    with np.load(out, allow_pickle=False) as z:
        assert z["embeddings"].shape == (5, 128)
        assert np.allclose(np.linalg.norm(z["embeddings"], axis=1), 1, atol=1e-5)
        assert len(z["paths"]) == 5
