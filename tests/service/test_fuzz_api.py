"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis + hypothesis) against a
live server: whatever request is generated, with the key or without, the answer is not a 5xx, and the
server keeps serving."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from facegallery.service.app import ServiceConfig  # noqa: E402
from facegallery.service.auth import KeyRing  # noqa: E402


def _seed_photo() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_no_request_is_a_server_error(tmp_path, tiny_model_dir, key_file, live_server):
    keys, key = KeyRing.load(key_file[0]), key_file[1]
    server = live_server(ServiceConfig(gallery=tmp_path / "g.db", model=str(tiny_model_dir), keys=keys, create=True))
    seeded = httpx.post(
        f"{server.url}/v1/people/Seed/photos?detect=off",
        files=[("photos", ("s.jpg", _seed_photo(), "image/jpeg"))],
        headers={"X-API-Key": key},
    )
    assert seeded.status_code == 201
    schema = schemathesis.openapi.from_url(f"{server.url}/v1/openapi.json")
    failures: list[str] = []
    statuses: list[int] = []
    for path, methods in schema.raw_schema["paths"].items():
        for method in methods:

            @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=schema[path][method.upper()].as_strategy(), with_key=st.booleans())
            def run(case, with_key):
                response = case.call(base_url=server.url, headers={"X-API-Key": key} if with_key else {})
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                    )

            run()
    assert not failures, failures[:5]
    assert len(statuses) >= 100 and {200, 401, 422} <= set(statuses), sorted(set(statuses))  # it did probe
    assert httpx.get(f"{server.url}/v1/health").json() == {"status": "ok"}
