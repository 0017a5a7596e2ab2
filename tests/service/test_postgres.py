"""The service over a PostgreSQL gallery: the same API; while the database is away, 503 with one line;
after it is back, answers again without a restart, and nothing acknowledged is lost."""

from __future__ import annotations

import os

import pytest

from facegallery.gallery.pgserver import new_database, private_server

from .conftest import jpeg


@pytest.fixture
def own_server():
    """A private server this test may stop and start (the shared one must stay up for the others)."""
    try:
        with private_server() as server:
            yield server
    except RuntimeError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is needed under CI=true: {e}")
        pytest.skip(str(e))


def test_an_outage_is_503_and_the_service_recovers(own_server, make_client, auth, make_face, caplog):
    url = new_database(own_server.url)
    client = make_client(gallery=url)
    photos = [("photos", (f"{i}.jpg", jpeg(make_face(1, i)), "image/jpeg")) for i in range(3)]
    r = client.post("/v1/people/Ada/photos?detect=off", files=photos, headers=auth)
    assert r.status_code == 201, r.text
    probe = [("photos", ("p.jpg", jpeg(make_face(1, 5)), "image/jpeg"))]
    r = client.post("/v1/identify?detect=off", files=probe, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["photos"][0]["faces"][0]["name"] == "Ada"
    assert url.split("?")[0] not in client.get("/v1/people", headers=auth).text

    own_server.stop()
    for call in (
        lambda: client.get("/v1/people", headers=auth),
        lambda: client.post("/v1/identify?detect=off", files=probe, headers=auth),
        lambda: client.post("/v1/people/Bob/photos?detect=off", files=photos, headers=auth),
    ):
        r = call()
        assert r.status_code == 503, r.text
        assert list(r.json()) == ["error"] and "\n" not in r.json()["error"]
        assert "unavailable" in r.json()["error"] or "cannot reach" in r.json()["error"]

    own_server.start()
    with caplog.at_level("WARNING", logger="facegallery.gallery.postgres"):
        assert [p["name"] for p in client.get("/v1/people", headers=auth).json()["people"]] == ["Ada"]
    assert any("reconnected" in m for m in caplog.messages)
    r = client.post("/v1/people/Bob/photos?detect=off", files=photos[:1], headers=auth)
    assert r.status_code == 201
    assert {p["name"]: p["photos"] for p in client.get("/v1/people", headers=auth).json()["people"]} == {
        "Ada": 3,
        "Bob": 1,
    }
