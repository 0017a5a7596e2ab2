"""Figures: the pieces they are computed from, and that each one writes a real PNG on tiny inputs."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from threadpoolctl import threadpool_limits

from facegallery import plots
from facegallery.datasets import FaceFolder
from facegallery.evaluation import Embedded, run_protocol, split_test
from facegallery.recognition import squared_distances


def clusters(n_people: int, per: int, seed: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(16)[offset : offset + n_people]
    x = np.repeat(centres, per, 0) + rng.normal(0, 0.05, (n_people * per, 16))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(n_people), per)


def tree(root: Path, names: list[str], labels: np.ndarray) -> FaceFolder:
    """Small real JPEGs (the train t-SNE shows three of them)."""
    paths = []
    for i, l in enumerate(labels):
        p = root / names[l] / f"{i + 1}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 20, 3), 40 * l + 20, np.uint8)).save(p)
        paths.append(p)
    return FaceFolder(root, names, paths, labels)


@pytest.fixture
def data(tmp_path):
    emb, lab = clusters(4, 8, 0)
    train = Embedded(tree(tmp_path / "train", [f"P{i}" for i in range(4)], lab), emb)
    k_emb, k_lab = clusters(4, 3, 1)
    u_emb, u_lab = clusters(2, 4, 2, offset=4)
    names = ["P0", "P1", "P2", "P3", "U0", "U1"]
    test = Embedded(tree(tmp_path / "test", names, np.concatenate([k_lab, u_lab + 4])), np.concatenate([k_emb, u_emb]))
    return split_test(train, test)


def test_identity_styles_are_distinct_for_pubfig_sized_galleries():
    styles = {plots.identity_style(l) for l in range(83)}
    assert len(styles) == 83


def test_subsample_caps_each_identity():
    labels = np.array([0] * 50 + [1] * 3)
    rows = plots.subsample(labels, 30, seed=0)
    assert np.bincount(labels[rows]).tolist() == [30, 3] and len(set(rows.tolist())) == 33


def test_hard_triplet_is_batch_hard():
    emb, lab = clusters(3, 5, 0)
    a, p, n = plots.hard_triplet(emb, lab, seed=0)
    d = squared_distances(emb[a : a + 1], emb)[0]
    assert lab[p] == lab[a] and p != a and lab[n] != lab[a]
    assert d[p] == d[lab == lab[a]].max() and d[n] == d[lab != lab[a]].min()


def test_tsne_valid_for_tiny_inputs():
    emb, _ = clusters(2, 3, 0)
    with threadpool_limits(1):
        xy = plots.tsne(emb, seed=0)
    assert xy.shape == (6, 2) and np.isfinite(xy).all()


def test_kmeans_sse_falls_to_near_zero_at_the_true_k():
    emb, _ = clusters(4, 10, 0)
    with threadpool_limits(1):
        sse = plots.kmeans_sse(emb, [1, 4], seed=0)
    assert sse[1] < 0.05 * sse[0]


def test_write_all_writes_five_pngs(data, tmp_path):
    metrics = run_protocol(data, None, seed=0)
    out = tmp_path / "figs"
    out.mkdir()
    with threadpool_limits(1):
        paths = plots.write_all(data, metrics, out, seed=0)
    assert sorted(p.name for p in paths) == sorted(plots.FILES.values())
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 500 and im.height > 400
