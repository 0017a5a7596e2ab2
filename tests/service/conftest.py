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


class LiveServer:
    """uvicorn serving an app on a free loopback port, in a thread of this process."""

    def __init__(self, app):
        import socket
        import threading

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 120  # start-up loads the model
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live_server():
    """``live_server(config)`` -> a started :class:`LiveServer` (stopped after the test)."""
    started = []

    def start(config: ServiceConfig) -> LiveServer:
        server = LiveServer(create_app(config)).__enter__()
        started.append(server)
        return server

    yield start
    for s in started:
        s.__exit__(None, None, None)
