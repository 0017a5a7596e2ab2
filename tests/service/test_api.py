"""The HTTP API through FastAPI's test client: every endpoint, every limit, auth, the JSON shapes, and bad
input answered 4xx with one JSON line while what is stored stays as it was."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facegallery.service.auth import KeyRing, add_key

from .conftest import jpeg


def photos(*pairs, person_image) -> list:
    """Multipart 'photos' fields of synthetic people: (person, shot) pairs."""
    return [("photos", (f"p{p}-{s}.jpg", jpeg(person_image(p, s)), "image/jpeg")) for p, s in pairs]


@pytest.fixture
def filled(client, auth, make_face):
    """Three people enrolled with 3 photos each (detection off: the images are face crops)."""
    for p in range(3):
        r = client.post(
            f"/v1/people/Person {p}/photos?detect=off",
            files=photos(*[(p, s) for s in range(3)], person_image=make_face),
            headers=auth,
        )
        assert r.status_code == 201, r.text
    return client


def one_line_error(r, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and body["error"]
    return body["error"]


def test_health_version_docs_page(client):
    assert client.get("/v1/health").json() == {"status": "ok"}
    v = client.get("/v1/version").json()
    assert v["model"] == "tiny" and v["fingerprint"].startswith("tiny:") and v["facegallery"]
    assert {k: v["detector"][k] for k in ("name", "min_face", "threshold")} == {
        "name": "yunet",
        "min_face": 20,
        "threshold": 0.8,
    }
    schema = client.get("/v1/openapi.json").json()
    assert {"/v1/identify", "/v1/verify", "/v1/people", "/v1/people/{name}/photos", "/v1/threshold"} <= set(
        schema["paths"]
    )
    docs = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs  # nothing from the internet
    assert '"validatorUrl": null' in docs  # no validator badge fetched from the internet either
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        assert client.get(f"/docs-assets/{asset}").status_code == 200, asset
    page = client.get("/")
    assert page.status_code == 200 and 'id="photos"' in page.text and '<script src="app.js"' in page.text
    assert client.get("/app.js").status_code == 200 and client.get("/style.css").status_code == 200


def test_enrol_and_identify_shape(filled, auth, make_face):
    r = filled.post("/v1/identify?detect=off&top_k=2", files=photos((1, 4), person_image=make_face), headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert body["skipped"] == []
    (answer,) = body["photos"]
    assert answer["path"] == "p1-4.jpg"
    (face,) = answer["faces"]
    assert set(face) == {"box", "name", "distance", "score", "candidates"}  # detection off: no landmarks
    assert face["name"] == "Person 1" and face["box"] == [0.0, 0.0, 100.0, 100.0]
    assert len(face["candidates"]) == 2 and face["candidates"][0] == {"name": "Person 1", "distance": face["distance"]}
    assert 0.0 <= face["score"] <= 1.0
    r = filled.post("/v1/identify", files=photos((2, 4), person_image=make_face), headers=auth)
    (face,) = r.json()["photos"][0]["faces"]
    assert {"landmarks", "detection_score", "detected"} <= set(face)  # detection ran ('auto')
    assert face["name"] == "Person 2"


def test_identify_unknown_face(filled, auth, make_face):
    """A person not enrolled is answered unknown (name null) under a tight threshold."""
    assert filled.put("/v1/threshold", json={"distance": 0.05}, headers=auth).status_code == 200
    r = filled.post("/v1/identify?detect=off", files=photos((7, 0), person_image=make_face), headers=auth)
    (face,) = r.json()["photos"][0]["faces"]
    assert face["name"] is None and face["distance"] > 0.05 and face["candidates"]


def test_enrol_counts_duplicates_and_problems(filled, auth, make_face):
    again = filled.post(
        "/v1/people/Person 0/photos?detect=off", files=photos((0, 0), person_image=make_face), headers=auth
    )
    assert again.status_code == 200 and again.json()["added"] == 0 and again.json()["duplicates"] == 1
    files = photos((0, 5), person_image=make_face) + [("photos", ("notes.txt", b"not a photo", "text/plain"))]
    mixed = filled.post("/v1/people/Person 0/photos?detect=off", files=files, headers=auth)
    body = mixed.json()
    assert mixed.status_code == 201 and body["added"] == 1 and body["rejected"] == 1
    assert body["problems"][0]["path"] == "notes.txt" and "not a readable image" in body["problems"][0]["reason"]
    people = {p["name"]: p["photos"] for p in filled.get("/v1/people", headers=auth).json()["people"]}
    assert people == {"Person 0": 4, "Person 1": 3, "Person 2": 3}


def test_enrol_face_at_box(client, auth, make_face):
    """'box' picks the face to enrol (here the whole crop, as identify answers it with detection off)."""
    r = client.post(
        "/v1/people/Ada/photos?detect=off",
        files=photos((0, 0), person_image=make_face),
        data={"box": "0,0,100,100"},
        headers=auth,
    )
    assert r.status_code == 201 and r.json()["added"] == 1
    far = client.post(
        "/v1/people/Ada/photos?detect=off",
        files=photos((0, 1), person_image=make_face),
        data={"box": "300,300,400,400"},
        headers=auth,
    )
    assert "no face at the given box" in one_line_error(far, 422)
    assert "box" in one_line_error(
        client.post(
            "/v1/people/Ada/photos", files=photos((0, 2), person_image=make_face), data={"box": "1,2,x"}, headers=auth
        ),
        422,
    )


def test_people_detail_thumbnail_rename_remove(filled, auth):
    detail = filled.get("/v1/people/Person 1", headers=auth).json()
    assert detail["name"] == "Person 1" and detail["photos"] == 3 and len(detail["photo_list"]) == 3
    sha = detail["photo_list"][0]["sha256"]
    thumb = filled.get("/v1/people/Person 1/thumbnail", headers=auth)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (96, 96)
    assert filled.get(f"/v1/people/Person 1/thumbnail?photo={sha}", headers=auth).status_code == 200

    assert filled.patch("/v1/people/Person 1", json={"name": "Ada"}, headers=auth).json() == {"name": "Ada"}
    assert "already enrolled" in one_line_error(
        filled.patch("/v1/people/Ada", json={"name": "Person 2"}, headers=auth), 409
    )
    one_line_error(filled.patch("/v1/people/Nobody", json={"name": "X"}, headers=auth), 404)

    assert filled.delete(f"/v1/people/Ada/photos/{sha}", headers=auth).json() == {"removed": 1}
    one_line_error(filled.delete(f"/v1/people/Ada/photos/{sha}", headers=auth), 404)
    assert filled.delete("/v1/people/Ada", headers=auth).json() == {"removed": 2}
    one_line_error(filled.get("/v1/people/Ada", headers=auth), 404)
    one_line_error(filled.get("/v1/people/Ada/thumbnail", headers=auth), 404)
    assert [p["name"] for p in filled.get("/v1/people", headers=auth).json()["people"]] == ["Person 0", "Person 2"]


def test_threshold_get_and_set(filled, auth):
    cal = filled.get("/v1/threshold", headers=auth).json()
    assert {"identify", "verify", "method", "source"} <= set(cal)
    assert filled.put("/v1/threshold", json={"far": 0.05}, headers=auth).json()["method"] == "far=0.05"
    assert filled.put("/v1/threshold", json={"eer": True}, headers=auth).json()["method"] == "eer"
    raw = filled.put("/v1/threshold", json={"distance": 0.3}, headers=auth).json()
    assert raw["method"] == "raw" and raw["identify"]["threshold"] == 0.3
    assert "between 0 and 1" in one_line_error(filled.put("/v1/threshold", json={"far": 2}, headers=auth), 422)
    assert "exactly one" in one_line_error(
        filled.put("/v1/threshold", json={"far": 0.1, "eer": True}, headers=auth), 422
    )
    one_line_error(filled.put("/v1/threshold", json={"far": "lots"}, headers=auth), 422)
    for loose in ({"distance": "0.5"}, {"far": "0.05"}, {"eer": "true"}, {"eer": 1}, {"distance": True}):
        one_line_error(filled.put("/v1/threshold", json=loose, headers=auth), 422)  # numbers as numbers only
    assert filled.get("/v1/threshold", headers=auth).json()["method"] == "raw"  # the refused ones changed nothing
    assert filled.put("/v1/threshold", json={"distance": 1}, headers=auth).json()["identify"]["threshold"] == 1.0


def test_verify(filled, auth, make_face):
    same = filled.post(
        "/v1/verify?detect=off",
        files=[
            ("a", ("a.jpg", jpeg(make_face(1, 0)), "image/jpeg")),
            ("b", ("b.jpg", jpeg(make_face(1, 0)), "image/jpeg")),
        ],
        headers=auth,
    ).json()
    assert same["same"] is True and same["distance"] < 1e-3 and set(same) == {"same", "distance", "score", "threshold"}
    other = filled.post(
        "/v1/verify?detect=off",
        files=[
            ("a", ("a.jpg", jpeg(make_face(1, 0)), "image/jpeg")),
            ("b", ("b.jpg", jpeg(make_face(2, 0)), "image/jpeg")),
        ],
        headers=auth,
    ).json()
    assert other["distance"] > same["distance"]
    blank = np.full((400, 400, 3), 128, np.uint8)
    r = filled.post(
        "/v1/verify?detect=on",
        files=[("a", ("a.jpg", jpeg(blank), "image/jpeg")), ("b", ("b.jpg", jpeg(make_face(2, 0)), "image/jpeg"))],
        headers=auth,
    )
    assert "a.jpg: no face found" in one_line_error(r, 422)


def test_empty_gallery_identify_is_409(client, auth, make_face):
    r = client.post("/v1/identify?detect=off", files=photos((0, 0), person_image=make_face), headers=auth)
    assert "no one is enrolled" in one_line_error(r, 409)


def test_errors_name_no_server_path(client, auth, make_face, tmp_path):
    """The gallery layer names its file in messages; the service answers with "the gallery" instead, so a
    client never learns where the server keeps it (the gallery here is ``tmp_path / "g.db"``)."""
    where = {str(tmp_path), str(tmp_path.resolve())}
    answers = [
        client.post("/v1/identify?detect=off", files=photos((0, 0), person_image=make_face), headers=auth),
        client.delete("/v1/people/Nobody", headers=auth),
        client.delete("/v1/people/Nobody/photos/" + "0" * 64, headers=auth),
        client.get("/v1/people/Nobody", headers=auth),
    ]
    client.post("/v1/people/Ada/photos?detect=off", files=photos((0, 0), person_image=make_face), headers=auth)
    client.post("/v1/people/Bo/photos?detect=off", files=photos((1, 0), person_image=make_face), headers=auth)
    answers.append(client.patch("/v1/people/Ada", json={"name": "Bo"}, headers=auth))
    for r in answers:
        assert 400 <= r.status_code < 500, r.text
        assert not any(w in r.text for w in where), r.text
        assert "/" not in one_line_error(r, r.status_code), r.text
    assert "no one is enrolled" in answers[0].json()["error"]


def test_path_scrubber_replaces_only_whole_paths(tmp_path, monkeypatch):
    from facegallery.service.app import PathScrubber

    folder = tmp_path / "galleries"
    scrub = PathScrubber(folder / "g.db", model=str(tmp_path / "models" / "tiny"))
    assert scrub(f"{folder}/g.db: no one is enrolled yet") == "the gallery: no one is enrolled yet"
    assert scrub(f"'X': no such person in {folder / 'g.db'}.") == "'X': no such person in the gallery."
    assert scrub(f"{folder}/g.db-wal: locked") == "the gallery's folder/g.db-wal: locked"
    assert scrub(f"{tmp_path}/models/tiny/config.json: bad") == "the model/config.json: bad"
    assert scrub(f"{tmp_path}/elsewhere/g.db") == f"{tmp_path}/elsewhere/g.db"  # not the server's gallery
    monkeypatch.chdir(folder.parent)
    relative = PathScrubber("galleries/g.db")
    assert relative("galleries/g.db: x") == "the gallery: x" and relative(f"{folder}/g.db: x") == "the gallery: x"
    assert relative("big.db, galleries/g.db2 and galleries") == "big.db, galleries/g.db2 and galleries"


# ----- auth ----------------------------------------------------------------------------------------


def test_writes_need_the_key(filled, auth, make_face):
    files = photos((5, 0), person_image=make_face)
    assert "API key" in one_line_error(filled.post("/v1/people/Eve/photos?detect=off", files=files), 401)
    wrong = {"X-API-Key": auth["X-API-Key"] + "x"}
    one_line_error(filled.post("/v1/people/Eve/photos?detect=off", files=files, headers=wrong), 401)
    one_line_error(filled.delete("/v1/people/Person 0", headers=wrong), 401)
    one_line_error(filled.patch("/v1/people/Person 0", json={"name": "Z"}), 401)
    one_line_error(filled.put("/v1/threshold", json={"far": 0.1}), 401)
    one_line_error(filled.get("/v1/people"), 401)  # reads too, unless opened
    one_line_error(filled.post("/v1/identify?detect=off", files=files), 401)
    assert len(filled.get("/v1/people", headers=auth).json()["people"]) == 3


def test_open_reads_and_keyless_server(make_client, auth, make_face, key_file):
    opened = make_client(open_reads=True)
    assert opened.get("/v1/people").status_code == 200
    one_line_error(opened.post("/v1/people/Eve/photos", files=photos((5, 0), person_image=make_face)), 401)
    keyless = make_client(keys=None)
    assert keyless.get("/v1/people").status_code == 200
    r = keyless.post("/v1/people/Eve/photos", files=photos((5, 0), person_image=make_face), headers=auth)
    assert "writes are disabled" in one_line_error(r, 403)


def test_key_file_stores_only_hashes(tmp_path):
    path = tmp_path / "keys.txt"
    key = add_key(path, "camera-1")
    text = path.read_text()
    assert key not in text and text.startswith("camera-1 sha256:") and (path.stat().st_mode & 0o777) == 0o600
    second = add_key(path, "app")
    ring = KeyRing.load(path)
    assert ring.check(key) == "camera-1" and ring.check(second) == "app"
    assert ring.check(key[:-1]) is None and ring.check("") is None and ring.check(None) is None
    with pytest.raises(Exception, match="already has a key"):
        add_key(path, "app")
    (tmp_path / "bad.txt").write_text("label not-a-hash\n")
    with pytest.raises(Exception, match="bad.txt:1"):
        KeyRing.load(tmp_path / "bad.txt")


# ----- limits and bad input ------------------------------------------------------------------------


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's first line)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_limits(make_client, auth, make_face):
    c = make_client(max_upload_bytes=20_000, max_request_bytes=60_000, max_photos=2, max_pixels=5_000)
    small = jpeg(make_face(0, 0)[:60, :60])  # 3,600 pixels
    big_file = jpeg(np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8), quality=100)
    assert 20_000 < len(big_file) < 60_000
    r = c.post("/v1/people/A/photos?detect=off", files=[("photos", ("big.jpg", big_file, "image/jpeg"))], headers=auth)
    assert "big.jpg: upload above the limit" in one_line_error(r, 413)
    three = [("photos", (f"{i}.jpg", small, "image/jpeg")) for i in range(3)]
    assert "limit is 2" in one_line_error(c.post("/v1/people/A/photos?detect=off", files=three, headers=auth), 413)
    r = c.post("/v1/people/A/photos", content=b"x" * 70_000, headers={**auth, "content-type": "multipart/form-data"})
    assert "request body above the limit" in one_line_error(r, 413)

    def chunked():
        for _ in range(10):
            yield b"y" * 10_000

    r = c.post("/v1/identify", content=chunked(), headers={**auth, "content-type": "multipart/form-data; boundary=x"})
    assert "request body above the limit" in one_line_error(r, 413)
    pixels = jpeg(make_face(0, 0))  # 10,000 pixels > 5,000
    r = c.post("/v1/people/A/photos?detect=off", files=[("photos", ("wide.jpg", pixels, "image/jpeg"))], headers=auth)
    assert "wide.jpg: 100x100 pixels is above the limit" in one_line_error(r, 413)
    ok = c.post("/v1/people/A/photos?detect=off", files=[("photos", ("ok.jpg", small, "image/jpeg"))], headers=auth)
    assert ok.status_code == 201


def test_pixels_per_request_limit(make_client, auth, make_face):
    """All photos of one request together are bounded in pixels (from their headers, before decoding):
    413 naming the limit, for identify, verify and enrolment alike, and nothing stored."""
    c = make_client(max_request_pixels=25_000)  # each face crop is 100x100 = 10,000 pixels
    two = photos((0, 0), (0, 1), person_image=make_face)
    three = photos((0, 0), (0, 1), (0, 2), person_image=make_face)
    assert c.post("/v1/people/Ada/photos?detect=off", files=two, headers=auth).status_code == 201
    for url in ("/v1/identify?detect=off", "/v1/people/Ada/photos?detect=off", "/v1/people/Bo/photos?detect=off"):
        error = one_line_error(c.post(url, files=three, headers=auth), 413)
        assert "30,000 pixels" in error and "limit of 25,000 pixels per request" in error
    big = jpeg(make_face(0, 3, size=120))  # 14,400 pixels
    r = c.post(
        "/v1/verify?detect=off",
        files=[("a", ("a.jpg", big, "image/jpeg")), ("b", ("b.jpg", big, "image/jpeg"))],
        headers=auth,
    )
    assert "limit of 25,000 pixels per request" in one_line_error(r, 413)
    assert c.post("/v1/identify?detect=off", files=two, headers=auth).status_code == 200
    assert c.get("/v1/people", headers=auth).json()["people"][0]["photos"] == 2
    assert not any(p["name"] == "Bo" for p in c.get("/v1/people", headers=auth).json()["people"])


@pytest.mark.parametrize(
    "name, data, status, says",
    [
        ("bomb.png", png_bomb(60_000, 60_000), 413, "pixel count is above the limit"),
        ("wide.png", png_bomb(6_000, 6_000), 413, "6000x6000 pixels is above the limit"),
        ("notes.txt", b"just some text", 422, "not a readable image"),
        ("empty.jpg", b"", 422, "not a readable image"),
        ("cut.jpg", None, 422, "not a readable image"),  # truncated: filled in below
    ],
)
def test_bad_photos_are_4xx_and_change_nothing(make_client, auth, make_face, name, data, status, says):
    filled = make_client(max_pixels=30_000_000)
    for p in range(2):
        filled.post(
            f"/v1/people/Person {p}/photos?detect=off", files=photos((p, 0), person_image=make_face), headers=auth
        )
    if data is None:
        data = jpeg(make_face(0, 0))[:600]
    before = filled.get("/v1/people", headers=auth).json()
    for url in ("/v1/identify", "/v1/people/Person 0/photos", "/v1/people/Newcomer/photos"):
        r = filled.post(url, files=[("photos", (name, data, "image/jpeg"))], headers=auth)
        assert says in one_line_error(r, status) and name in r.json()["error"]
    assert filled.get("/v1/people", headers=auth).json() == before
    assert filled.get("/v1/health").status_code == 200  # and it keeps serving


def test_wrong_fields_and_bad_names(filled, auth, make_face):
    body = jpeg(make_face(0, 0))
    r = filled.post("/v1/identify", files=[("files", ("a.jpg", body, "image/jpeg"))], headers=auth)
    assert "photos" in one_line_error(r, 422)
    one_line_error(
        filled.post("/v1/identify?top_k=0", files=[("photos", ("a.jpg", body, "image/jpeg"))], headers=auth), 422
    )
    one_line_error(
        filled.post("/v1/identify?detect=maybe", files=[("photos", ("a.jpg", body, "image/jpeg"))], headers=auth), 422
    )
    one_line_error(filled.post("/v1/verify", files=[("a", ("a.jpg", body, "image/jpeg"))], headers=auth), 422)
    files = [("photos", ("a.jpg", body, "image/jpeg"))]
    assert "control characters" in one_line_error(
        filled.post("/v1/people/Eve%01/photos?detect=off", files=files, headers=auth), 422
    )
    r = filled.post("/v1/people/a%2Fb/photos?detect=off", files=files, headers=auth)  # no such route: the page's
    one_line_error(r, r.status_code if r.status_code in (404, 405) else 404)
    assert "path separator" in one_line_error(
        filled.patch("/v1/people/Person 0", json={"name": "a/b"}, headers=auth), 422
    )
    assert "empty" in one_line_error(filled.patch("/v1/people/Person 0", json={"name": " "}, headers=auth), 422)
    one_line_error(
        filled.patch("/v1/people/Person 0", content=b"{not json", headers={**auth, "content-type": "application/json"}),
        422,
    )
    one_line_error(filled.get("/v1/nothing-here"), 404)
    one_line_error(filled.delete("/v1/identify", headers=auth), 405)
    assert [p["name"] for p in filled.get("/v1/people", headers=auth).json()["people"]] == [
        "Person 0",
        "Person 1",
        "Person 2",
    ]


def test_the_server_detects_with_the_detector_it_was_given_and_records_it(make_client, auth):
    from facegallery.detectors import load_detector

    astronaut = pytest.importorskip("skimage.data").astronaut()
    client = make_client(detector=load_detector("mmod", 40), detect_workers=1)
    assert client.get("/v1/version").json()["detector"]["name"] == "mmod"
    r = client.post("/v1/people/Ada/photos", files=[("photos", ("a.jpg", jpeg(astronaut)))], headers=auth)
    assert r.status_code == 201, r.text
    (face,) = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(astronaut)))], headers=auth).json()[
        "photos"
    ][0]["faces"]
    assert face["name"] == "Ada" and face["detection_score"] > 0  # MMOD's window margin, not YuNet's 0..1 score
