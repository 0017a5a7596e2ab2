"""The LFW protocol: pair lists, 10-fold thresholds chosen on the other folds, and the command."""

import json
from itertools import combinations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facegallery.cli import main
from facegallery.errors import UserError
from facegallery.lfw import best_threshold, read_pairs, tar_at_far, verification_figures


def _brute_best(dist, same):
    cands = np.concatenate([[dist.min() - 1], dist])
    return max(((((dist <= t) == same).mean()), t) for t in cands)[0]


def test_best_threshold_is_the_brute_force_optimum():
    rng = np.random.default_rng(0)
    for _ in range(20):
        same = rng.random(40) < 0.5
        dist = rng.normal(np.where(same, 0.4, 1.0), 0.3)
        t = best_threshold(dist, same)
        assert (((dist <= t) == same).mean()) == pytest.approx(_brute_best(dist, same))


def test_each_fold_is_scored_at_the_threshold_of_the_other_nine():
    """Fold 0's pairs alone would put the threshold at 3.0; the other folds put it at 1.0, so fold 0
    scores 50% (its same pairs at 2.0 are rejected), the others 100%."""
    dist, same, fold = [], [], []
    for k in range(10):
        d_same, d_diff = (2.0, 4.0) if k == 0 else (0.5, 1.5)
        dist += [d_same] * 3 + [d_diff] * 3
        same += [True] * 3 + [False] * 3
        fold += [k] * 6
    m = verification_figures(np.array(dist), np.array(same), np.array(fold))
    acc = m["accuracy_10fold"]
    assert acc["folds"][0] == 0.5 and all(a == 1.0 for a in acc["folds"][1:])
    assert acc["mean"] == pytest.approx(0.95) and acc["se"] == pytest.approx(np.std(acc["folds"], ddof=1) / np.sqrt(10))
    assert m["pairs"] == 60 and m["same_pairs"] == 30


def test_tar_at_far_accepts_no_more_strangers_than_allowed():
    same = np.array([True] * 10 + [False] * 1000)
    dist = np.concatenate([np.linspace(0, 1, 10), np.linspace(0.55, 2, 1000)])
    # 1e-3 of 1000 strangers: one may pass (at 0.55); same pairs at distance <= 0.55 are 5 of 10
    assert tar_at_far(dist, same) == pytest.approx(0.5)


def _lfw_tree(root, people=6, shots=3, make_face=None):
    images = root / "lfw-deepfunneled"
    names = [f"Person_{chr(65 + p)}" for p in range(people)]
    for p, name in enumerate(names):
        (images / name).mkdir(parents=True)
        for n in range(shots):
            big = np.zeros((250, 250, 3), np.uint8)
            big[50:200, 50:200] = make_face(p, n, 150)
            Image.fromarray(big).save(images / name / f"{name}_{n + 1:04d}.jpg", quality=95)
    lines, folds, per = [], 2, 3
    rng = np.random.default_rng(0)
    for _ in range(folds):
        for _ in range(per):
            name = names[rng.integers(people)]
            i, j = rng.choice(np.arange(1, shots + 1), 2, replace=False)
            lines.append(f"{name}\t{i}\t{j}")
        for _ in range(per):
            a, b = rng.choice(people, 2, replace=False)
            lines.append(f"{names[a]}\t1\t{names[b]}\t2")
    (root / "pairs.txt").write_text(f"{folds}\t{per}\n" + "\n".join(lines) + "\n")
    (root / "pubfig83_people_in_lfw.txt").write_text("Person_A\n")
    return root


def test_pair_lists_are_read_as_published_and_damaged_ones_refused(tmp_path, make_face):
    root = _lfw_tree(tmp_path / "lfw", make_face=make_face)
    pairs = read_pairs(root / "pairs.txt")
    assert len(pairs.same) == 12 and pairs.same.sum() == 6 and set(pairs.fold) == {0, 1}
    assert pairs.left[0].startswith("Person_") and pairs.left[0].endswith(".jpg")
    bad = tmp_path / "bad.txt"
    bad.write_text("2\t3\nPerson_A\t1\n")
    with pytest.raises(UserError, match="bad.txt: not an LFW pair list"):
        read_pairs(bad)


def test_evaluate_lfw_writes_metrics_and_roc(tmp_path, make_face, tiny_model_dir):
    root = _lfw_tree(tmp_path / "lfw", make_face=make_face)
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main, ["evaluate", "--protocol", "lfw", "--data", str(root), "--model", str(tiny_model_dir), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"] == "lfw" and m["pair_list"] == "pairs.txt"
    pairs = read_pairs(root / "pairs.txt")
    assert m["photos"] == len(set(pairs.left + pairs.right))  # the photos the pairs name
    assert len(m["accuracy_10fold"]["folds"]) == 2 and 0 <= m["roc_auc"] <= 1 and "tar_at_far_0.001" in m
    without = m["without_pubfig83_people"]
    assert without["pairs"] < m["pairs"] and without["people_excluded"] == 1
    assert (out / "roc.png").stat().st_size > 1000 and "10-fold accuracy" in r.output


def test_evaluate_lfw_without_the_data_is_one_line(tmp_path):
    r = CliRunner().invoke(
        main, ["evaluate", "--protocol", "lfw", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2 and "lfw-deepfunneled" in r.output and "Traceback" not in r.output


def test_real_pair_list_has_ten_folds_of_people_found_in_no_other_fold(lfw):
    pairs = read_pairs(lfw / "pairs.txt")
    assert len(pairs.same) == 6000 and pairs.same.sum() == 3000
    people = [set() for _ in range(10)]
    for i in range(len(pairs.same)):
        people[pairs.fold[i]].update(pairs.people(i))
    assert all(not (a & b) for a, b in combinations(people, 2))
