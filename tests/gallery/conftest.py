"""Gallery fixtures: an enrolled gallery of the face tree, and a vectors-only embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegallery.alignment import PUBFIG83
from facegallery.gallery import Gallery


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
    template, spec = PUBFIG83, {}

    def embed(self, images, batch_size=256):
        raise AssertionError("this test stores precomputed vectors only")


@pytest.fixture
def fake_model() -> VectorsOnly:
    return VectorsOnly()


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path) -> str:
    """Where a new gallery lives, for each backend: a file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "gallery.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def enrolled_in(location, face_tree, tiny_model_dir) -> str:
    """``location`` holding the 4 people x 5 photos of ``face_tree``, for each backend."""
    with Gallery.open(location, model=tiny_model_dir, create=True) as g:
        g.enroll_folder(face_tree)
    return location
