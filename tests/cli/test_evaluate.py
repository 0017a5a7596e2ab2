"""`facegallery evaluate` end to end on small generated trees, through the real CLI."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from threadpoolctl import threadpool_limits

from facegallery.cli import main
from facegallery.plots import FILES


def _run(*args, env=None):
    with threadpool_limits(1):
        return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def photo(person: int, shot: int) -> np.ndarray:
    """A 48 x 48 'face': a colour per person, noise per shot."""
    base = np.random.default_rng(person).integers(30, 225, size=3)
    noise = np.random.default_rng(1000 * person + shot).normal(0, 8, (48, 48, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def data_root(tmp_path):
    """train: 3 people x 6 photos; test: the same 3 x 3 new photos, plus 2 unseen people x 12."""
    root = tmp_path / "data"
    for split, people, n, shift in (("train", range(3), 6, 0), ("test", range(3), 3, 50), ("test", (3, 4), 12, 0)):
        for p in people:
            d = root / split / f"Person {p}"
            d.mkdir(parents=True)
            for k in range(n):
                Image.fromarray(photo(p, k + shift)).save(d / f"{k + 1}.jpg")
    (root / "test" / "Person 3" / "notes.txt").write_text("junk")
    return root


def test_evaluate_end_to_end(data_root, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    r = _run("evaluate", "--model", tiny_model_dir, "--data", data_root, "--out", out, "--plots")
    assert r.exit_code == 0, r.output
    assert "closed set (9 known test photos)" in r.stdout and "10-shot" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["data"]["test_known_photos"] == 9 and m["data"]["test_unknown_photos"] == 24
    assert m["model"]["name"] == "tiny" and m["model"]["fingerprint"].startswith("tiny:")
    for key in ("top1", "top6"):
        assert 0 <= m["closed_set"][key] <= 1
    assert m["closed_set"]["top6"] == 1.0  # only three known people
    for key in ("open_set", "open_set_all"):
        o = m[key]
        for f in ("best_accuracy", "calibrated_accuracy"):
            assert 0 <= o[f] <= 1
        assert o["calibrated_accuracy"] <= o["best_accuracy"] and o["gap"] >= 0
        assert o["calibrated_threshold"] == m["calibration"]["threshold"]
        assert all(0 <= a <= 1 for _, a in o["sweep"]) and len(o["sweep"]) >= 2
    assert m["open_set"]["unknown_probes"] == 9 and m["open_set_all"]["unknown_probes"] == 24
    assert m["calibration"]["method"] == "drawn-split"  # the tiny checkpoint records no split
    ni = m["new_identities"]
    assert ni["identities"] == 2 and ni["new_probes_1shot"] == 22 and ni["new_probes_10shot"] == 4
    assert all(0 <= ni[f"top1_{n}shot{s}"] <= 1 for n in (1, 5, 10) for s in ("", "_known", "_new"))
    assert sorted(m["figures"]) == sorted(FILES.values())
    assert {"embed_train_s", "embed_test_s", "protocol_s", "plots_s", "total_s"} <= set(m["timing"])

    with open(out / "guesses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 + 24
    assert list(rows[0])[:5] == ["path", "true_name", "known", "guess1", "dist1"]
    assert list(rows[0])[-1] == "answer" and "guess3" in rows[0] and "guess4" not in rows[0]
    assert {r["true_name"] for r in rows if r["known"] == "False"} == {"Person 3", "Person 4"}
    thr = m["calibration"]["threshold"]
    for r in rows:
        assert r["answer"] == ("unknown" if float(r["dist1"]) > thr else r["guess1"])
    for name in FILES.values():
        with Image.open(out / name) as im:
            assert im.format == "PNG"


def test_evaluate_without_plots_and_data_from_env(data_root, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    r = _run("evaluate", "--model", tiny_model_dir, "--out", out, env={"FACEGALLERY_DATA": str(data_root)})
    assert r.exit_code == 0, r.output
    assert not any((out / name).exists() for name in FILES.values())
    assert json.loads((out / "metrics.json").read_text())["data"]["train"] == str(data_root / "train")


def test_missing_test_folder_is_a_one_line_error(data_root, tiny_model_dir, tmp_path):
    missing = tmp_path / "nope"
    r = _run(
        "evaluate",
        "--model",
        tiny_model_dir,
        "--train",
        data_root / "train",
        "--test",
        missing,
        "--out",
        tmp_path / "out",
    )
    assert r.exit_code == 2
    assert r.stderr.strip() == f"facegallery: error: {missing}: no such folder"
