import numpy as np
import pytest

from facegallery.datasets import PKSampler, discover, make_split, numbered_key, random_triplet_batch
from facegallery.errors import UserError


def test_discover_sorts_people_and_skips_junk(face_tree):
    with pytest.warns(UserWarning):
        f = discover(face_tree)
    assert f.names == [f"Person {i}" for i in range(4)]
    assert len(f) == 20 and all(p.suffix == ".jpg" for p in f.paths)
    assert np.bincount(f.labels).tolist() == [5, 5, 5, 5]


def test_missing_or_empty_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        discover(tmp_path / "nope")
    (tmp_path / "Empty Person").mkdir()
    with pytest.raises(UserError, match="no person folders"):
        discover(tmp_path)


def test_split_is_reproducible_and_disjoint(face_tree):
    f = discover(face_tree)
    s1, s2 = make_split(f, 1, 0.2, seed=3), make_split(f, 1, 0.2, seed=3)
    assert s1 == s2
    train, hold, imp = s1.parts(f)
    assert imp.names == list(s1.impostor_names) and len(imp) == 5
    assert set(train.paths).isdisjoint(hold.paths) and len(train) + len(hold) == 15
    assert train.names == hold.names and s1.impostor_names[0] not in train.names


def test_pk_sampler_batches_p_identities_k_each():
    labels = np.repeat(np.arange(10), 6)
    batch = PKSampler(labels, p=4, k=3, seed=0)()
    assert len(batch) == 12
    groups = labels[batch].reshape(4, 3)
    assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 4


def test_random_triplets_follow_the_original_recipe():
    labels = np.repeat(np.arange(5), 4)
    t = random_triplet_batch(labels, 200, np.random.default_rng(0))
    assert (labels[t[:, 0]] == labels[t[:, 1]]).all() and (t[:, 0] != t[:, 1]).all()
    assert (labels[t[:, 0]] != labels[t[:, 2]]).all()


def test_numbered_key_orders_numbers_numerically(tmp_path):
    names = ["10.jpg", "2.jpg", "1.jpg", "b.jpg"]
    assert [n for n in sorted(names, key=lambda n: numbered_key(tmp_path / n))] == ["1.jpg", "2.jpg", "10.jpg", "b.jpg"]


def test_last_holdout_takes_each_identitys_highest_numbered_photos(face_tree):
    f = discover(face_tree)
    split = make_split(f, 0, 0.4, seed=0, holdout="last")
    assert sorted(split.holdout_paths) == sorted(f"Person {p}/{n}.jpg" for p in range(4) for n in (4, 5))
    with pytest.raises(UserError):
        make_split(f, 0, 0.4, seed=0, holdout="sideways")
