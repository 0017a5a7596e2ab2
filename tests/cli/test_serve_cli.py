"""``facegallery key`` and ``facegallery serve``: a real server process on loopback."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from facegallery.cli import main

pytest.importorskip("uvicorn")


def test_key_prints_once_and_stores_the_hash(tmp_path):
    r = CliRunner().invoke(main, ["key", "--file", str(tmp_path / "k.txt"), "--label", "cam"])
    assert r.exit_code == 0
    key = r.stdout.strip()
    assert key.startswith("fg_") and key not in (tmp_path / "k.txt").read_text()
    again = CliRunner().invoke(main, ["key", "--file", str(tmp_path / "k.txt"), "--label", "cam"])
    assert again.exit_code == 2 and "already has a key" in again.stderr


def test_serve_refuses_bad_setup_in_one_line(tmp_path):
    missing = CliRunner().invoke(main, ["serve", "--gallery", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "no such gallery" in missing.stderr
    nokeys = CliRunner().invoke(
        main, ["serve", "--gallery", str(tmp_path / "g.db"), "--create", "--api-key-file", str(tmp_path / "k.txt")]
    )
    assert nokeys.exit_code == 2 and "no such key file" in nokeys.stderr


def test_serve_answers_over_http(tmp_path, tiny_model_dir):
    key = CliRunner().invoke(main, ["key", "--file", str(tmp_path / "k.txt")]).stdout.strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "facegallery", "serve", "--gallery", str(tmp_path / "g.db"), "--create"]
    cmd += ["--model", str(tiny_model_dir), "--port", str(port), "--api-key-file", str(tmp_path / "k.txt")]
    cmd += ["--max-request-megapixels", "0.02"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(f"{url}/v1/people", headers={"X-API-Key": key}).json() == {"people": []}
        assert httpx.get(f"{url}/v1/people").status_code == 401
        big = io.BytesIO()
        Image.new("RGB", (200, 200)).save(big, format="PNG")
        files = [("photos", ("big.png", big.getvalue(), "image/png"))]
        r = httpx.post(f"{url}/v1/identify", files=files, headers={"X-API-Key": key})
        assert r.status_code == 413 and "pixels per request" in r.json()["error"]
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert key not in out  # the key is never logged
