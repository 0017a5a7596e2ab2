"""The evaluation protocol on tiny hand-made embeddings whose answers are known."""

from pathlib import Path

import numpy as np
import pytest

from facegallery.datasets import FaceFolder
from facegallery.errors import UserError
from facegallery.evaluation import (
    Embedded,
    EvalData,
    calibration_split,
    closed_set,
    draw_unknowns,
    enrolment,
    guesses,
    new_identities,
    open_set,
    run_protocol,
    split_test,
    thin_sweep,
    verification,
)
from facegallery.recognition import Centroids, threshold_sweep

E = np.eye(8, dtype=np.float32)


def unit(*rows):
    x = np.array(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def embedded(root, people: dict[str, list[tuple[str, np.ndarray]]]) -> Embedded:
    """Embedded folder from {name: [(file name, embedding), ...]}."""
    names = sorted(people)
    paths, labels, emb = [], [], []
    for l, n in enumerate(names):
        for f, e in people[n]:
            paths.append(Path(root) / n / f)
            labels.append(l)
            emb.append(e)
    return Embedded(FaceFolder(Path(root), names, paths, np.array(labels)), np.array(emb, dtype=np.float32))


def many(vectors, photos=10_000) -> Centroids:
    """Centroids of many photos each: their distances are (almost) the raw squared distances."""
    return Centroids(np.asarray(vectors, np.float32), np.full(len(vectors), photos))


def jitter(base, n, seed, scale=0.05):
    rng = np.random.default_rng(seed)
    x = base[None, :] + rng.normal(0, scale, (n, len(base)))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n_train=10, n_known_test=4, n_unknown=12, unknown_axes=(5, 6)) -> EvalData:
    """Five known people on axes 0..4, unknown people on ``unknown_axes``."""
    train = embedded(
        "train", {f"P{i}": [(f"{j + 1}.jpg", e) for j, e in enumerate(jitter(E[i], n_train, i))] for i in range(5)}
    )
    test_people = {
        f"P{i}": [(f"{j + 1}.jpg", e) for j, e in enumerate(jitter(E[i], n_known_test, 10 + i))] for i in range(5)
    }
    for k, ax in enumerate(unknown_axes):
        test_people[f"U{k}"] = [(f"{j + 1}.jpg", e) for j, e in enumerate(jitter(E[ax], n_unknown, 20 + k))]
    test = embedded("test", test_people)
    return split_test(train, test)


def test_closed_set_topk_by_hand():
    cents = many(E[:3, :4])
    probes = unit([1, 0.1, 0, 0], [0.2, 1, 0.9, 0])  # right; wrong at top-1 (nearest is 1) but 2nd
    m = closed_set(cents, probes, np.array([0, 2]), ks=(1, 2))
    assert m == {"top1": 0.5, "top2": 1.0, "probes": 2}


def test_open_set_sweep_endpoints_and_best():
    cents = many(E[:2, :4])
    known = unit([1, 0.05, 0, 0], [0.05, 1, 0, 0], [1, 0, 0.05, 0])
    unknown = unit([0, 0, 1, 0], [0, 0, 0, 1])
    m = open_set(cents, known, np.array([0, 1, 0]), unknown, calibrated_threshold=3.0)
    sweep = np.array(m["sweep"])
    assert sweep[0, 1] == pytest.approx(2 / 5)  # threshold below everything: all "unknown"
    assert sweep[-1, 1] == pytest.approx(3 / 5)  # above everything: every probe named
    assert m["all_unknown_accuracy"] == pytest.approx(2 / 5)
    assert m["best_accuracy"] == 1.0 and 0.01 < m["best_threshold"] < 2.0
    assert m["calibrated_accuracy"] == pytest.approx(3 / 5) and m["gap"] == pytest.approx(2 / 5)
    assert m["calibrated_known_accuracy"] == 1.0 and m["calibrated_unknown_rejected"] == 0.0
    assert (m["known_probes"], m["unknown_probes"]) == (3, 2)


def test_thin_sweep_keeps_ends_and_best_on_the_curve():
    rng = np.random.default_rng(0)
    n = 5000
    nd = rng.uniform(0, 2, n)
    truth = np.where(rng.random(n) < 0.5, -1, 0)
    t, acc = threshold_sweep(np.zeros(n, int), nd, truth)
    pts = thin_sweep(t, acc, max_points=500)
    assert len(pts) <= 500
    th = np.array([p[0] for p in pts])
    assert np.all(np.diff(th) > 0)
    assert pts[0] == [round(t[0], 6), round(acc[0], 6)] and pts[-1] == [round(t[-1], 6), round(acc[-1], 6)]
    assert max(p[1] for p in pts) == pytest.approx(acc.max())
    lookup = dict(zip(np.round(t, 6), np.round(acc, 6)))
    assert all(lookup[p[0]] == p[1] for p in pts)


def test_draw_unknowns_is_the_seeded_draw_of_the_sorted_list():
    paths = [Path(f"u/{n}.jpg") for n in ("b", "a", "d", "c", "e", "f")]
    idx = draw_unknowns(paths, 3)
    order = sorted(range(6), key=lambda i: str(paths[i]))
    expect = [order[i] for i in np.random.default_rng(0).choice(6, 3, replace=False)]
    assert idx.tolist() == expect and len(set(idx.tolist())) == 3
    assert sorted(draw_unknowns(paths, 10).tolist()) == list(range(6))  # never more than there are


def test_protocol_balanced_draw_and_all():
    data = synthetic()
    m = run_protocol(data, None, seed=0)
    assert m["open_set"]["known_probes"] == m["open_set"]["unknown_probes"] == 20
    assert m["open_set"]["all_unknown_accuracy"] == 0.5
    assert m["open_set_all"]["unknown_probes"] == 24
    assert m["closed_set"]["top1"] == 1.0
    for key in ("open_set", "open_set_all"):
        assert m[key]["best_accuracy"] == 1.0
        assert 0 <= m[key]["calibrated_accuracy"] <= m[key]["best_accuracy"]
    assert m["verification"]["auc"] == 1.0


def test_calibrated_threshold_ignores_test_data():
    near = run_protocol(synthetic(unknown_axes=(5, 6)), None, seed=0)
    # unknown test people now sit close to known ones: hindsight changes, calibration must not
    far_unknowns = synthetic(unknown_axes=(0, 1))
    far = run_protocol(far_unknowns, None, seed=0)
    assert far["open_set"]["best_accuracy"] < near["open_set"]["best_accuracy"]
    assert far["calibration"] == near["calibration"]
    assert far["open_set"]["calibrated_threshold"] == near["open_set"]["calibrated_threshold"]


def test_recorded_split_is_used_and_test_centroids_use_every_train_photo():
    data = synthetic()
    split = {"impostor_names": ["P4"], "holdout_paths": ["P0/1.jpg", "P1/1.jpg", "P2/2.jpg"]}
    m = run_protocol(data, {"split": split, "threshold": 0.3}, seed=0)
    cal = m["calibration"]
    assert cal["method"] == "checkpoint-split" and cal["impostor_names"] == ["P4"]
    assert (cal["genuine_probes"], cal["impostor_probes"]) == (3, 10)
    assert cal["checkpoint_threshold"] == 0.3
    # P4 was an impostor in calibration, yet it is a known identity on test with its own centroid
    assert m["closed_set"]["top1"] == 1.0 and m["open_set"]["best_accuracy"] == 1.0
    drawn = run_protocol(data, {"split": {"impostor_names": ["Nobody"], "holdout_paths": []}}, seed=0)
    assert drawn["calibration"]["method"] == "drawn-split"
    assert "may have seen" in drawn["calibration"]["note"]


def test_split_without_impostors_calibrates_by_accept_rate():
    data = synthetic(n_train=20)
    hold = [f"P{i}/{j}.jpg" for i in range(5) for j in (19, 20)]  # 10 genuine probes, no impostor identity
    m = run_protocol(
        data, {"split": {"impostor_names": [], "holdout_paths": hold}, "train_config": {"accept_rate": 0.7}}, seed=0
    )
    cal = m["calibration"]
    assert cal["method"] == "checkpoint-split-accept-rate" and cal["accept_rate"] == 0.7
    assert cal["validation_accuracy"] is None and (cal["genuine_probes"], cal["impostor_probes"]) == (10, 0)
    # the threshold is the 70% quantile of the held-out photos' distances to their nearest centroid
    train = data.train
    part = [i for i, p in enumerate(train.folder.paths) if str(p.relative_to("train")) not in hold]
    probes = [i for i, p in enumerate(train.folder.paths) if str(p.relative_to("train")) in hold]
    d = Centroids.of(train.emb[part], train.folder.labels[part], 5).distances(train.emb[probes]).min(1)
    assert cal["threshold"] == pytest.approx(np.quantile(d, 0.7)) and (d <= cal["threshold"]).mean() == 0.7


def test_calibration_split_drawn_with_seed_without_config():
    folder = synthetic().train.folder
    s0, method, _ = calibration_split(folder, None, seed=0)
    s1, _, _ = calibration_split(folder, None, seed=1)
    assert method == "drawn-split" and len(s0.impostor_names) == 1  # 5 people -> 5 // 4
    assert calibration_split(folder, None, seed=0)[0] == s0 and (s0 != s1)


def test_enrolment_takes_lowest_numbers_and_excludes_them():
    files = ["10.jpg", "2.jpg", "1.jpg", "3.jpg"]
    new = embedded("t", {"U": [(f, E[i]) for i, f in enumerate(files)]})
    enrol, probe = enrolment(new.folder, 0, 2)
    assert [new.folder.paths[i].name for i in enrol] == ["1.jpg", "2.jpg"]
    assert [new.folder.paths[i].name for i in probe] == ["3.jpg", "10.jpg"]


def test_new_identities_by_hand():
    cents = many(E[:2])
    known = unit([1, 0.1, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0])
    # U: 2.jpg is the good enrolment photo (axis 2); 10.jpg sits on known person 0, so enrolling it
    # (lexicographic order) would steal the known probe and misplace U's probes.
    u = [
        ("2.jpg", E[2]),
        ("10.jpg", E[0]),
        ("3.jpg", unit([0, 0, 1, 0.2, 0, 0, 0, 0])[0]),
        ("4.jpg", unit([0, 0, 1, 0, 0.2, 0, 0, 0])[0]),
    ]
    v = [(f"{j}.jpg", E[3]) for j in range(1, 4)]
    new = embedded("t", {"U": u, "V": v})
    m = new_identities(cents, known, np.array([0, 1]), new, shots=(1, 3, 5))
    # 1-shot: U enrolled from 2.jpg; probes U{3,4,10}, V{2,3}; 10.jpg (on person 0) is wrong
    assert m["new_probes_1shot"] == 5 and m["identities_1shot"] == 2
    assert m["top1_1shot_known"] == 1.0 and m["top1_1shot_new"] == pytest.approx(4 / 5)
    assert m["top1_1shot"] == pytest.approx(6 / 7)
    # 3-shot: V has no photo left to probe and is left out; U probes only 10.jpg
    assert m["identities_3shot"] == 1 and m["new_probes_3shot"] == 1
    assert m["top1_5shot"] is None and m["identities_5shot"] == 0


def test_new_people_enrolled_from_few_photos_compete_on_equal_footing():
    # a known person (many photos) and a new one (one photo) equally far from the probe by raw distance:
    # the one-photo centroid is the noisier estimate, so the same raw distance is the better match.
    cents = many(unit([1, 1, 0, 0, 0, 0, 0, 0]))
    probe = unit([0, 1, 0, 0, 0, 0, 0, 0])
    new = embedded("t", {"U": [("1.jpg", unit([0, 1, 1, 0, 0, 0, 0, 0])[0]), ("2.jpg", probe[0])]})
    m = new_identities(cents, unit([1, 0.9, 0, 0, 0, 0, 0, 0]), np.array([0]), new, shots=(1,))
    assert m["top1_1shot_new"] == 1.0 and m["top1_1shot_known"] == 1.0


def test_verification_separable_and_degenerate():
    emb = np.concatenate([jitter(E[0], 4, 0), jitter(E[1], 4, 1)])
    v = verification(emb, np.array([0] * 4 + [1] * 4))
    assert v["auc"] == 1.0 and v["eer"] == 0.0 and v["genuine_pairs"] == 12 and v["impostor_pairs"] == 16
    assert verification(emb[:2], np.array([0, 1])) is None


def test_guesses_rows():
    data = synthetic(n_known_test=2, n_unknown=3)
    rows = guesses(data, threshold=0.5)
    assert len(rows) == 5 * 2 + 2 * 3
    r = rows[0]
    assert r["true_name"] == "P0" and r["known"] is True and r["guess1"] == "P0" and r["answer"] == "P0"
    assert [r[f"dist{i}"] for i in range(1, 6)] == sorted(r[f"dist{i}"] for i in range(1, 6))
    assert "guess6" not in r  # only five known people
    assert all(x["answer"] == "unknown" and not x["known"] for x in rows[10:])


def test_split_test_needs_known_and_unknown_people():
    data = synthetic()
    with pytest.raises(UserError, match="none of its people"):
        split_test(data.train, data.unknown)
    with pytest.raises(UserError, match="absent from training"):
        split_test(data.train, data.train)
