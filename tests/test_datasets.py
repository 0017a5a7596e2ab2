import numpy as np
import pytest
from PIL import Image

from facegallery.datasets import (
    PKSampler,
    discover,
    discover_roots,
    make_split,
    numbered_key,
    random_triplet_batch,
    require_pairs,
)
from facegallery.errors import UserError
from facegallery.images import SkipWarning


def test_discover_sorts_people_and_skips_junk(junk_tree):
    with pytest.warns(SkipWarning) as seen:
        f = discover(junk_tree)
    said = sorted(str(w.message).rsplit("/", 1)[1] for w in seen)
    assert said == [".DS_Store: not an image file", "notes.txt: not an image file"]
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


def _tree(root, counts, make_face, offset=0):
    """ROOT/<id k>/<n>.jpg with ``counts[k]`` photos of person ``offset + k``."""
    for k, n in enumerate(counts):
        d = root / f"id {offset + k}"
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(make_face(offset + k, i)).save(d / f"{i + 1}.jpg")
    return root


def test_several_roots_pool_people_by_name_and_split_stably(tmp_path, make_face):
    a = _tree(tmp_path / "a", [3, 2], make_face)
    b = _tree(tmp_path / "b", [1, 4], make_face, offset=1)  # "id 1" is in both roots
    pooled = discover_roots([a, b])
    assert pooled.names == ["id 0", "id 1", "id 2"]
    assert np.bincount(pooled.labels).tolist() == [3, 3, 4]  # id 1: 2 photos in a + 1 in b
    split = make_split(pooled, 1, 0.3, seed=0)
    assert all(p.split("/")[0] in ("a", "b") for p in split.holdout_paths)  # relative to the common parent
    again = discover_roots([str(a), str(b)])
    assert again.fingerprint() == pooled.fingerprint()
    train, hold, imp = split.parts(again)
    assert len(train) + len(hold) + len(imp) == 10
    with pytest.raises(UserError, match="given twice"):
        discover_roots([a, a])


def test_a_root_with_nobody_photographed_twice_is_refused(tmp_path, make_face):
    good = _tree(tmp_path / "good", [2, 2], make_face)
    singles = _tree(tmp_path / "singles", [1, 1, 1], make_face, offset=5)
    require_pairs([good], discover_roots([good]))
    with pytest.raises(UserError, match=r"singles: no person with two or more photos"):
        require_pairs([good, singles], discover_roots([good, singles]))


def test_pk_sampler_adapts_k_and_keeps_one_photo_people_apart():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 3 + [3] + [4] + [5])  # 3, 4, 5: one photo each
    s = PKSampler(labels, p=3, k=4, seed=0, singles=2)
    for _ in range(20):
        groups, singles = s.groups()
        assert len(groups) == 3
        for g in groups:
            assert len(set(labels[g])) == 1 and len(set(g)) == len(g)  # one person, no photo twice
            assert len(g) == min(4, int((labels == labels[g[0]]).sum()))
            assert labels[g[0]] in (0, 1, 2)
        assert len(singles) == 2 and set(labels[singles]) <= {3, 4, 5} and len(set(singles)) == 2
    assert PKSampler(labels, p=3, k=4, seed=0).groups()[1].size == 0
