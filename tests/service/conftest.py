"""Service fixtures: an app over a gallery of synthetic people (the tiny model, detection off), a key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from facegallery.service.app import ServiceConfig, create_app  # noqa: E402
from facegallery.service.auth import KeyRing, add_key  # noqa: E402


def jpeg(pixels, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture
def key_file(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "keys.txt"
    return path, add_key(path, "tests")


@pytest.fixture
def make_client(tmp_path, tiny_model_dir, key_file):
    """Build a TestClient over a fresh gallery; keyword arguments override :class:`ServiceConfig`."""
    made = []

    def make(**overrides) -> TestClient:
        config = ServiceConfig(
            gallery=tmp_path / "g.db", model=str(tiny_model_dir), keys=KeyRing.load(key_file[0]), create=True
        )
        for k, v in overrides.items():
            setattr(config, k, v)
        client = TestClient(create_app(config), raise_server_exceptions=False)
        client.__enter__()
        made.append(client)
        return client

    yield make
    for c in made:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def auth(key_file) -> dict[str, str]:
    return {"X-API-Key": key_file[1]}
