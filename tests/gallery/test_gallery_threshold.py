"""Calibration of the unknown threshold and the score on synthetic embeddings with known distributions."""

import json

import numpy as np
import pytest

from facegallery.gallery import Gallery
from facegallery.gallery import threshold as th
from facegallery.recognition import centroid_distances, top_k


def _photos(rng, mu, photos, noise):
    e = mu.repeat(photos, 0) + noise / np.sqrt(mu.shape[1]) * rng.standard_normal((len(mu) * photos, mu.shape[1]))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def _people(rng, n_people, photos, dim=24, noise=0.8):
    """Unit photo embeddings around random person directions, the labels, and the directions."""
    mu = rng.standard_normal((n_people, dim))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    return _photos(rng, mu, photos, noise), np.arange(n_people).repeat(photos), mu


def _search(cents, counts):
    """Search by centroid distance, as the gallery's (person ids are the rows)."""
    return lambda q, k: top_k(centroid_distances(q, cents, counts), k)


def _calibrate(emb, labels, far):
    cents = np.stack([emb[labels == i].mean(0) for i in range(labels.max() + 1)])
    counts = np.bincount(labels)
    search = _search(cents, counts)
    return th.calibrate(emb, labels, cents[labels], counts[labels], search, len(cents), 0.5, far), search


@pytest.mark.parametrize("far", [0.01, 0.05])
def test_far_and_frr_on_fresh_photos_are_close_to_expected(far):
    rng = np.random.default_rng(0)
    emb, labels, mu = _people(rng, 300, 8)
    cal, search = _calibrate(emb, labels, far)
    assert cal.source == "gallery" and cal.method == f"far={far:g}"
    fit = cal.identify
    assert fit.far <= far and fit.genuine == 2400 and fit.impostors == 2400
    strangers, _, _ = _people(rng, 300, 8)  # people never enrolled
    realized_far = float((search(strangers, 1)[1][:, 0] <= fit.threshold).mean())
    assert abs(realized_far - far) < max(0.5 * far, 0.01)
    ids, d = search(_photos(rng, mu, 4, 0.8), 1)  # new photos of enrolled people
    realized_frr = float((d[:, 0] > fit.threshold).mean())
    assert 0.02 < fit.frr < 0.9 and abs(realized_frr - fit.frr) < 0.05


def test_equal_error_and_raw():
    rng = np.random.default_rng(1)
    emb, labels, _ = _people(rng, 100, 6, noise=0.9)
    eer, _ = _calibrate(emb, labels, None)
    assert eer.method == "eer" and abs(eer.identify.far - eer.identify.frr) < 0.02
    cents = np.stack([emb[labels == i].mean(0) for i in range(100)])
    raw = th.calibrate(
        emb, labels, cents[labels], np.full(len(emb), 6), _search(cents, np.full(100, 6)), 100, 0.5, 0.01, raw=0.3
    )
    assert raw.identify.threshold == 0.3 and raw.verify.threshold != 0.3


def test_genuine_distances_are_divided_by_the_leave_one_out_count_factor():
    """Each photo against its own centroid without it, a mean of n - 1 photos: divided by 1 + 1/(n - 1)."""
    emb = np.array([[1, 0], [0, 1], [0.6, 0.8], [1, 0], [0, 1]], np.float32)  # 3 photos of person 0, 2 of 1
    labels = np.array([0, 0, 0, 1, 1])
    cents, counts = np.stack([emb[:3].mean(0), emb[3:].mean(0)]), np.array([3, 2])
    gen, imp = th.identification_distances(emb, labels, cents[labels], counts[labels], _search(cents, counts))
    # photo 0 vs (0.3, 0.9): 0.49 + 0.81; photo 1 vs (0.8, 0.4): 0.64 + 0.36; photo 2 vs (0.5, 0.5): 0.01 + 0.09,
    # each from 2 photos (/ 1.5); photos 3 and 4 vs each other: 2, from 1 photo (/ 2)
    assert gen == pytest.approx([1.30 / 1.5, 1.0 / 1.5, 0.1 / 1.5, 1.0, 1.0])
    assert imp == pytest.approx(centroid_distances(emb, cents, counts)[np.arange(5), 1 - labels])  # the other


def test_score_is_one_half_at_the_threshold_with_the_fitted_slope():
    """Score and threshold agree: above 0.5 exactly for the distances that are accepted."""
    rng = np.random.default_rng(2)
    gen, imp = rng.normal(0.5, 0.1, 20000), rng.normal(1.0, 0.1, 20000)
    f = th.fit(gen, imp, far=0.001)
    # equal variances: the log-likelihood ratio is linear with slope (1.0 - 0.5) / 0.1^2 = 50
    assert abs(f.slope - 50) < 5
    assert f.score(f.threshold) == pytest.approx(0.5)
    d = np.linspace(0, 2, 401)
    assert ((f.score(d) >= 0.5) == (d <= f.threshold)).all()
    hand = th.fit(gen, imp, raw=0.9)
    assert hand.score(0.89) > 0.5 > hand.score(0.91)


def test_separable_data_gives_finite_slope():
    f = th.fit(np.array([0.1, 0.12, 0.15] * 5), np.array([1.0, 1.1, 1.3] * 5))
    assert np.isfinite(f.slope) and f.slope > 0


def test_far_interval_covers_the_truth_and_widens_with_fewer_people():
    # 1 of 100 accepted: from 100 independent strangers the upper bound is ~5.4%; from 20 people it is wider
    lo, hi = th.far_interval(1, 100, 100)
    assert lo < 0.01 < hi and hi == pytest.approx(0.0545, abs=0.001)
    assert th.far_interval(1, 100, 20)[1] > hi
    assert th.far_interval(0, 179, 179) == (0.0, pytest.approx(0.0204, abs=0.001))
    rng = np.random.default_rng(0)  # coverage: the true rate lies inside for ~95% of samples
    inside = [
        lo <= 0.03 <= hi
        for lo, hi in (th.far_interval(int((rng.random(200) < 0.03).sum()), 200, 200) for _ in range(400))
    ]
    assert np.mean(inside) >= 0.93


def test_fit_states_the_far_with_its_counts():
    rng = np.random.default_rng(1)
    f = th.fit(rng.normal(0.5, 0.1, 500), rng.normal(1.0, 0.1, 400), far=0.05, people=40)
    assert f.accepted == int(round(f.far * 400)) and f.far <= 0.05
    assert f.far_low <= f.far <= f.far_high and f.impostors == 400


def test_small_gallery_falls_back_to_model_threshold(tmp_path, tiny_model_dir, face_tree):
    with Gallery.open(tmp_path / "g.db", model=tiny_model_dir, create=True) as g:
        g.enroll("Solo", [face_tree / "Person 0" / f"{i}.jpg" for i in range(1, 4)])
        cal = g.calibration()
        assert cal.source == "model" and cal.identify.threshold == 0.5  # the checkpoint's threshold
        assert cal.identify.score(0.5) == pytest.approx(0.5)


def test_settings_are_stored_in_the_gallery(enrolled):
    with Gallery.open(enrolled) as g:
        assert g.calibration().verify.far is not None  # photo pairs of 4 people: measurable
        g.set_threshold(raw=0.42)
    with Gallery.open(enrolled) as g:
        assert g.calibration().identify.threshold == 0.42
        cal = g.set_threshold(far=0.05)
        # 4 people: no FAR is claimed, and the unknown threshold is never more lenient than the model's
        assert cal.method == "far=0.05" and cal.identify.far is None and cal.identify.threshold <= 0.5
        with pytest.raises(Exception, match="between 0 and 1"):
            g.set_threshold(far=5)


def test_a_calibration_cached_before_centroid_distances_is_recomputed(enrolled):
    with Gallery.open(enrolled) as g:
        old = g.calibration().to_json()
    del old["version"]  # as an older version stored it, fitted on raw squared distances
    old["identify"]["threshold"] = 3.5
    with Gallery.open(enrolled) as g:
        with g.store.transaction(bump=False):
            g.store.set_meta("calibration", json.dumps(old))
    with Gallery.open(enrolled) as g:
        cal = g.calibration()
        assert cal.identify.threshold != 3.5 and cal.version == th.VERSION
        assert json.loads(g.store.meta("calibration"))["version"] == th.VERSION


@pytest.mark.parametrize("people", [2, 3, 4, 9])
def test_few_people_keep_the_models_threshold_and_claim_no_far(people):
    """With a handful of people each photo's nearest stranger is one of very few: the FAR threshold drawn
    from them is far too lenient for people never enrolled. Below MIN_STRANGERS people the model's
    threshold holds (or the gallery's, if stricter) and no FAR is claimed."""
    rng = np.random.default_rng(people)
    emb, labels, mu = _people(rng, people, 12)
    cal, search = _calibrate(emb, labels, 0.01)
    free = th.fit(*th.identification_distances(emb, labels, *_own(emb, labels), search), 0.01)
    assert cal.identify.far is None and cal.identify.threshold == min(0.5, free.threshold)
    assert cal.identify.frr is not None
    strangers, _, _ = _people(rng, 300, 1)
    accepted = float((search(strangers, 1)[1][:, 0] <= cal.identify.threshold).mean())
    assert accepted <= float((search(strangers, 1)[1][:, 0] <= free.threshold).mean())


def test_enough_people_calibrate_from_the_gallery_alone():
    rng = np.random.default_rng(0)
    emb, labels, _ = _people(rng, th.MIN_STRANGERS, 12)
    cal, _ = _calibrate(emb, labels, 0.01)
    assert cal.source == "gallery" and cal.identify.far is not None


def _own(emb, labels):
    cents = np.stack([emb[labels == i].mean(0) for i in range(labels.max() + 1)])
    counts = np.bincount(labels)
    return cents[labels], counts[labels]


def _vector_gallery(path, fake_model, people, photos=4, seed=0):
    rng = np.random.default_rng(seed)
    emb, labels, _ = _people(rng, people, photos, dim=16)
    g = Gallery.open(path, model=fake_model, create=True)
    g.enroll_embeddings([f"p{i}" for i in labels], emb)
    return g, emb, labels


@pytest.mark.parametrize("people", [1, 7, 30])
def test_verify_threshold_does_not_depend_on_who_is_enrolled(tmp_path, fake_model, people):
    """Issue 27.5: photo against photo at the model's threshold brought to pairs (x2), whatever the gallery."""
    g, emb, _ = _vector_gallery(tmp_path / "g.db", fake_model, people)
    with g:
        fit = g.calibration().verify
        assert fit.threshold == pytest.approx(fake_model.threshold * 2)
        v = g.verify_embeddings(emb[0], emb[1])
        assert v.threshold == fit.threshold and v.same == (v.distance <= fit.threshold)


def test_a_target_far_the_data_cannot_measure_is_refused(tmp_path, fake_model):
    """Issue 27.4: {"far": 1e-320} from a few hundred impostor distances is refused in one line, and the
    rule stored before stays."""
    g, _, _ = _vector_gallery(tmp_path / "g.db", fake_model, 30)
    with g:
        seen = g.calibration().identify.impostors
        with pytest.raises(Exception, match="cannot be told from zero") as e:
            g.set_threshold(far=1e-320)
        assert "\n" not in str(e.value) and f"{seen} impostor" in str(e.value)
        assert g.calibration().method == "far=0.01"
        ok = g.set_threshold(far=2 / seen)
        assert ok.identify.far is not None and ok.identify.far_high > ok.identify.far


def test_a_hand_set_threshold_is_labelled_and_warned_about(tmp_path, fake_model):
    """Issue 27.4: `threshold --set 0.6` is not "calibrated from the gallery's photos", keeps the verify
    threshold, and says how many of the gallery's nearest strangers it names."""
    g, emb, labels = _vector_gallery(tmp_path / "g.db", fake_model, 30)
    with g:
        verify = g.calibration().verify.threshold
        cal = g.set_threshold(raw=3.9)
        assert cal.source == "hand-set" and cal.method == "raw" and cal.identify.threshold == 3.9
        assert cal.verify.threshold == verify
        assert "set by hand" in cal.warning and f"of {cal.identify.impostors})" in cal.warning
        assert g.set_threshold(far=0.05).warning is None


def test_names_and_scores_agree(tmp_path, fake_model):
    """Issue 27.4: a face is named exactly when its score is at least 0.5, under any rule."""
    g, emb, _ = _vector_gallery(tmp_path / "g.db", fake_model, 30)
    rng = np.random.default_rng(9)
    strangers = _people(rng, 40, 1, dim=16)[0]
    with g:
        for rule in ({"far": 0.05}, {"raw": 0.6}, {"eer": True}):
            g.set_threshold(**rule)
            for a in g.identify_embeddings(np.concatenate([emb[::3], strangers])):
                assert (a.name is not None) == (a.score >= 0.5), (rule, a)


def test_an_unmeasurable_target_is_extrapolated_from_the_impostors():
    """Issue 27.4: 12 people of 3 photos give 36 nearest-stranger distances, too few to measure 1%: the
    threshold is kept under the 1% quantile of a normal fitted to them, and no more strangers get a name."""
    from scipy.stats import norm

    rng = np.random.default_rng(4)
    emb, labels, _ = _people(rng, 12, 3)
    cal, search = _calibrate(emb, labels, 0.01)
    gen, imp = th.identification_distances(emb, labels, *_own(emb, labels), search)
    assert len(imp) * 0.01 < 1 and cal.warning and "extrapolated" in cal.warning
    plain = th.choose_threshold(gen, imp, 0.01, extrapolate=False)
    assert cal.identify.threshold == pytest.approx(min(plain, imp.mean() + norm.ppf(0.01) * imp.std(ddof=1)))
    strangers, _, _ = _people(rng, 2000, 1)
    nearest = search(strangers, 1)[1][:, 0]
    assert (nearest <= cal.identify.threshold).mean() <= min((nearest <= plain).mean(), 0.02)
    # 36 distances spread evenly over 0.9-1.1: "under the nearest seen" says < 0.9; the normal's 1% point
    # (1.0 - 2.33 x 0.059) is lower, and that is the threshold; a measurable target is left alone
    even = np.linspace(0.9, 1.1, 36)
    assert th.choose_threshold(gen, even, 0.01, extrapolate=False) == pytest.approx(0.9)
    assert th.choose_threshold(gen, even, 0.01) == pytest.approx(1.0 - 2.3263 * even.std(ddof=1), abs=1e-4)
    assert th.choose_threshold(gen, even, 0.05) == th.choose_threshold(gen, even, 0.05, extrapolate=False)
