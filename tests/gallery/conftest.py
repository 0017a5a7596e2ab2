"""Gallery fixtures: a second (different) tiny model, and an enrolled gallery of the face tree."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facegallery import checkpoints
from facegallery.gallery import Gallery
from facegallery.models import create_model


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory) -> Path:
    """Another untrained resface64 (different weights, so a different fingerprint)."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("other_model")
    checkpoints.save_checkpoint(folder, create_model("resface64").eval(), {
        "name": "other", "arch": "resface64", "arch_kwargs": {}, "input_size": 64, "embedding_dim": 128,
        "tta_flip": False, "label_map": [], "threshold": 0.7})
    return folder


@pytest.fixture
def enrolled(face_tree, tiny_model_dir, tmp_path) -> Path:
    """A gallery file holding the 4 people x 5 photos of ``face_tree``."""
    db = tmp_path / "g.db"
    with Gallery.open(db, model=tiny_model_dir, create=True) as g:
        g.enroll_folder(face_tree)
    return db


class VectorsOnly:
    """An embedder stand-in for galleries filled with precomputed vectors (it cannot embed photos)."""

    name, input_size, fingerprint, threshold = "vectors", 64, "vectors:0", 0.5

    def embed(self, images, batch_size=256):
        raise AssertionError("this test stores precomputed vectors only")


@pytest.fixture
def fake_model() -> VectorsOnly:
    return VectorsOnly()
