"""Shared fixtures: small generated face-like trees and a tiny untrained checkpoint."""

from __future__ import annotations

import math
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegallery import checkpoints
from facegallery.models import create_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pubfig83"


def person_image(person: int, shot: int, size: int = 100) -> np.ndarray:
    """A synthetic 'face' whose colours and stripes depend on the person (shots vary slightly)."""
    rng = np.random.default_rng(person * 1000 + shot)
    base = np.random.default_rng(person).integers(30, 225, size=3)
    yy, xx = np.mgrid[:size, :size]
    stripes = ((xx // (6 + 3 * person) + yy // (9 + person)) % 2)[..., None] * 40
    img = base[None, None, :] + stripes + rng.normal(0, 6, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def make_face():
    """:func:`person_image` for tests that draw their own photos."""
    return person_image


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes caches under its own temp folder, never the user's."""
    monkeypatch.setenv("FACEGALLERY_CACHE", str(tmp_path_factory.mktemp("cache")))
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def make_fifo():
    """``make_fifo(path)`` makes a FIFO whose readers get an empty file instead of waiting forever for
    a writer (a thread keeps opening and closing its write end): code that wrongly opens one then fails
    a test on its message rather than hanging it."""
    fifos: list[Path] = []
    stop = threading.Event()

    def unblock() -> None:
        while not stop.wait(0.05):
            for path in list(fifos):
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:  # ENXIO: no reader waiting; ENOENT: its folder is gone
                    pass

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()

    def make(path: Path) -> Path:
        os.mkfifo(path)
        fifos.append(path)
        return path

    yield make
    stop.set()
    thread.join()


@pytest.fixture
def face_tree(tmp_path) -> Path:
    """ROOT/<Person k>/<n>.jpg for 4 people x 5 photos (the CLI tests' own has junk in it too:
    tests/cli/conftest.py)."""
    root = tmp_path / "people"
    for p in range(4):
        d = root / f"Person {p}"
        d.mkdir(parents=True)
        for n in range(5):
            Image.fromarray(person_image(p, n)).save(d / f"{n + 1}.jpg", quality=95)
    return root


@pytest.fixture
def junk_tree(face_tree) -> Path:
    """:func:`face_tree` with junk among the photos, as a real folder has it: a .DS_Store and a text file."""
    (face_tree / "Person 0" / ".DS_Store").write_bytes(b"\x00\x01junk")
    (face_tree / "Person 1" / "notes.txt").write_text("not a photo")
    return face_tree


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained resface64 checkpoint (deterministic weights), with a threshold."""
    torch.manual_seed(0)
    model = create_model("resface64")
    model.eval()
    folder = tmp_path_factory.mktemp("tiny_model")
    checkpoints.save_checkpoint(
        folder,
        model,
        {
            "name": "tiny",
            "arch": "resface64",
            "arch_kwargs": {},
            "input_size": 64,
            "embedding_dim": 128,
            "tta_flip": False,
            "label_map": [],
            "threshold": 0.5,
        },
    )
    return folder


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory) -> Path:
    """Another untrained resface64 (different weights, so a different fingerprint)."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("other_model")
    checkpoints.save_checkpoint(
        folder,
        create_model("resface64").eval(),
        {
            "name": "other",
            "arch": "resface64",
            "arch_kwargs": {},
            "input_size": 64,
            "embedding_dim": 128,
            "tta_flip": False,
            "label_map": [],
            "threshold": 0.7,
        },
    )
    return folder


@pytest.fixture(scope="session")
def pubfig() -> Path:
    """The real data, or skip when this machine does not have it."""
    if not (SHARED / "train").is_dir():
        pytest.skip("PubFig83 not available")
    return SHARED


@pytest.fixture(scope="session")
def dlib_models() -> Path:
    """The folder of dlib's CC0 model files (the ``face_recognition_models`` test extra), or skip."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    folder = Path(spec.submodule_search_locations[0]) / "models" if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / "dlib_face_recognition_resnet_model_v1.dat").is_file():
        pytest.skip("dlib's model files (face_recognition_models) not installed")
    return folder


@pytest.fixture(scope="session")
def lfw() -> Path:
    """LFW deep-funneled with its pair lists, or skip."""
    root = SHARED.parent / "lfw"
    if not (root / "pairs.txt").is_file():
        pytest.skip("LFW not available")
    return root


class DatWriter:
    """dlib's encodings (serialize.h), written independently of the reader under test."""

    def __init__(self):
        self.out = bytearray()

    def int(self, v: int) -> DatWriter:
        mag = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
        self.out += bytes([len(mag) | (0x80 if v < 0 else 0)]) + mag
        return self

    def bool(self, v: bool) -> DatWriter:
        self.out += b"1" if v else b"0"
        return self

    def str(self, s: str) -> DatWriter:
        self.int(len(s))
        self.out += s.encode()
        return self

    def float(self, x: float) -> DatWriter:
        m, e = math.frexp(x)
        return self.int(int(m * 2**24)).int(e - 24)

    def tensor(self, a: np.ndarray) -> DatWriter:
        dims = list(a.shape) + [1] * (4 - a.ndim)
        self.int(2)
        for d in dims:
            self.int(d)
        self.out += np.asarray(a, "<f4").tobytes()
        return self

    def alias(self, *dims: int) -> DatWriter:
        self.int(1)
        for d in dims:
            self.int(d)
        return self

    def wrapper_state(self, input_side: bool) -> None:
        self.bool(True).bool(False).bool(False)
        for _ in range(3):
            self.tensor(np.zeros((0, 0, 0, 0), np.float32))
        if input_side:
            self.int(1)


@pytest.fixture(scope="session")
def dat_writer() -> type[DatWriter]:
    """The writer of dlib's serialisation format, for synthetic model files."""
    return DatWriter


def run_without_dlib(body: str) -> None:
    """Run ``body`` (Python source that prints 'ok') in a fresh interpreter where dlib and its model
    package cannot be imported, as on a plain install; fail with its stderr otherwise."""
    import sys

    code = "import sys; sys.modules['dlib'] = None; sys.modules['face_recognition_models'] = None\n" + body
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.fixture
def without_dlib():
    """:func:`run_without_dlib`."""
    return run_without_dlib


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    """An admin URL of a real PostgreSQL server: the one .ci/run started (``FACEGALLERY_TEST_POSTGRES``),
    else a private one (:mod:`facegallery.gallery.pgserver`); without either, the tests that need it
    skip, and fail under ``CI=true``."""
    url = os.environ.get("FACEGALLERY_TEST_POSTGRES")
    if url:
        yield url
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        need_server("psycopg is not installed (pip install '.[postgres]')")
    from facegallery.gallery.pgserver import private_server

    try:
        with private_server() as server:
            yield server.url
    except RuntimeError as e:
        need_server(str(e))


@pytest.fixture
def postgres_url(postgres_admin) -> str:
    """A fresh, empty database of its own for one test."""
    from facegallery.gallery.pgserver import new_database

    return new_database(postgres_admin)


def need_server(why: str) -> None:
    """Fail under CI (where .ci/run provides a server), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is needed under CI=true: {why}")
    pytest.skip(f"no PostgreSQL server: {why}")
