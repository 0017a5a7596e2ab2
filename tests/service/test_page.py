"""The web page end to end in headless Chromium (Debian's ``chromium``, driven by Playwright) against a
live server with the shipped default model and real PubFig83 photos: upload a photo and see the right
name; name an unknown face and see it recognised on the next upload; rename and remove from the list.
The screenshot in the README is this test's (``FACEGALLERY_SCREENSHOT=docs/service.png``)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from facegallery.service.app import ServiceConfig
from facegallery.service.auth import KeyRing

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium for the page tests (see .ci/run)")
        pytest.skip("chromium is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def shots(pubfig: Path, person: str, n: int) -> list[Path]:
    return sorted((pubfig / "train" / person).glob("*.jpg"))[:n]


def test_identify_enrol_rename_remove(browser, pubfig, tmp_path, key_file, live_server):
    from playwright.sync_api import expect

    known, newcomer = "Adam Sandler", "Alec Baldwin"
    server = live_server(ServiceConfig(gallery=tmp_path / "g.db", keys=KeyRing.load(key_file[0]), create=True))
    enrolled = httpx.post(
        f"{server.url}/v1/people/{known}/photos",
        files=[("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in shots(pubfig, known, 4)],
        headers={"X-API-Key": key_file[1]},
        timeout=120,
    )
    assert enrolled.status_code == 201 and enrolled.json()["added"] >= 3

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(server.url + "/")
    page.get_by_label("API key").fill(key_file[1])
    expect(page.locator("#people li")).to_have_count(1)
    expect(page.locator("#people")).to_contain_text(known)

    # a new photo of someone enrolled: the right name
    probe = sorted((pubfig / "train" / known).glob("*.jpg"))[6]
    page.locator("#photos").set_input_files(str(probe))
    expect(page.locator("#results .who")).to_contain_text(known, timeout=60_000)
    expect(page.locator("#status")).to_contain_text("Done: 1 face")

    # someone new: unknown, named on the page, recognised next time
    first, second = shots(pubfig, newcomer, 2)
    page.locator("#photos").set_input_files(str(first))
    expect(page.locator("#results .who.unknown")).to_have_count(1, timeout=60_000)
    page.get_by_label("Name this face").fill(newcomer)
    page.get_by_role("button", name="Enrol").click()
    expect(page.locator("#status")).to_contain_text(f"as {newcomer}", timeout=60_000)
    expect(page.locator("#people li")).to_have_count(2)
    page.locator("#photos").set_input_files(str(second))
    expect(page.locator("#results .who")).to_contain_text(newcomer, timeout=60_000)
    expect(page.locator("#results .box")).to_have_count(1)
    expect(page.locator("#people img[src^='blob:']")).to_have_count(2)  # thumbnails loaded with the key
    if os.environ.get("FACEGALLERY_SCREENSHOT"):
        page.screenshot(path=os.environ["FACEGALLERY_SCREENSHOT"], full_page=True)
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

    # rename and remove from the list, keyboard-reachable buttons with labels
    page.get_by_role("button", name=f"Rename {newcomer}").click()
    page.get_by_label(f"New name for {newcomer}").fill("Alec B.")
    page.get_by_label(f"New name for {newcomer}").press("Enter")
    expect(page.locator("#people")).to_contain_text("Alec B.")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Remove {known}").click()
    expect(page.locator("#people li")).to_have_count(1)
    people = httpx.get(f"{server.url}/v1/people", headers={"X-API-Key": key_file[1]}).json()["people"]
    assert [p["name"] for p in people] == ["Alec B."] and people[0]["photos"] == 1


def test_page_without_key_says_why(browser, tmp_path, key_file, live_server, tiny_model_dir):
    server = live_server(
        ServiceConfig(gallery=tmp_path / "g.db", model=str(tiny_model_dir), keys=KeyRing.load(key_file[0]), create=True)
    )
    page = browser.new_page()
    page.goto(server.url + "/")
    from playwright.sync_api import expect

    expect(page.locator("#people .error")).to_contain_text(re.compile("API key"))
    page.get_by_label("API key").fill(key_file[1])
    expect(page.locator("#people-count")).to_have_text("(0)")
