"""The web page end to end in headless Chromium (Debian's ``chromium``, driven by Playwright) against a
live server with the shipped default model and real PubFig83 photos: upload a photo and see the right
name; name an unknown face and see it recognised on the next upload; rename and remove from the list.
The screenshot in the README is this test's (``FACEGALLERY_SCREENSHOT=docs/service.png``)."""

from __future__ import annotations

import os
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


def side_by_side(left: Path, right: Path, out: Path) -> None:
    """One photo of two people: ``left`` and ``right`` at the same height, side by side."""
    from PIL import Image

    a, b = Image.open(left).convert("RGB"), Image.open(right).convert("RGB")
    height = min(a.height, b.height)
    a = a.resize((a.width * height // a.height, height))
    b = b.resize((b.width * height // b.height, height))
    both = Image.new("RGB", (a.width + b.width, height), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    both.save(out, quality=95)


def one_line(locator) -> None:
    """The element's text takes one line (it does not wrap)."""
    height, line = locator.evaluate(
        "el => [el.getBoundingClientRect().height, parseFloat(getComputedStyle(el).lineHeight) || 20]"
    )
    assert height < 2 * line, f"{locator}: {height:.0f}px tall, a line is {line:.0f}px"


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

    # the Remove and Rename buttons stay on their person's row, each on one line
    for button in (
        page.get_by_role("button", name=f"Remove {known}"),
        page.get_by_role("button", name=f"Rename {known}"),
    ):
        one_line(button)
        on_row = button.bounding_box()
        thumb = page.locator("#people li").first.locator("img").bounding_box()
        assert thumb["y"] <= on_row["y"] + on_row["height"] / 2 <= thumb["y"] + thumb["height"]

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

    # two people in one photo: each box carries the number its face has in the list below the photo
    composite = tmp_path / "two.jpg"
    side_by_side(shots(pubfig, newcomer, 3)[2], probe, composite)
    page.locator("#photos").set_input_files(str(composite))
    expect(page.locator("#status")).to_contain_text("Done: 2 faces", timeout=60_000)
    expect(page.locator("#results .box")).to_have_count(2)
    boxes = page.locator("#results .box")
    for i in range(2):
        box = boxes.nth(i)
        number = box.locator(".num")
        expect(number).to_be_visible()
        n = number.inner_text()
        item = page.locator(f"#results .faces li[data-face='{n}']")
        expect(item.locator(".who")).to_have_text(f"Face {n}: {box.locator('.tag').inner_text()}")
    assert sorted(boxes.locator(".num").all_inner_texts()) == ["1", "2"]
    # the newcomer was put on the left: the box named Alec B. is the left one
    named = next(i for i in range(2) if "Alec B." in boxes.nth(i).locator(".tag").inner_text())
    assert boxes.nth(named).bounding_box()["x"] < boxes.nth(1 - named).bounding_box()["x"]


def test_page_without_key_asks_for_it(browser, tmp_path, key_file, live_server, tiny_model_dir):
    """A server that needs a key: the first load asks for it (not the raw 401 message), the key field shows
    its whole placeholder, and a wrong key is said to be wrong."""
    from playwright.sync_api import expect

    server = live_server(
        ServiceConfig(gallery=tmp_path / "g.db", model=str(tiny_model_dir), keys=KeyRing.load(key_file[0]), create=True)
    )
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(server.url + "/")
    prompt = page.locator("#people .need-key")
    expect(prompt).to_contain_text("needs an API key")
    expect(prompt).to_contain_text("API key field")
    panel = page.locator("#people").inner_text()
    assert "401" not in panel and "X-API-Key" not in panel and "missing or wrong" not in panel
    expect(page.locator("#people .error")).to_have_count(0)
    prompt.get_by_role("button", name="Enter the key").click()
    expect(page.get_by_label("API key")).to_be_focused()
    fits = page.eval_on_selector(
        "#api-key",
        """input => {
            const style = getComputedStyle(input);
            const ctx = document.createElement("canvas").getContext("2d");
            ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
            const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return [ctx.measureText(input.placeholder).width, room];
        }""",
    )
    assert fits[0] <= fits[1], f"the key field's placeholder needs {fits[0]:.0f}px, has {fits[1]:.0f}px"

    page.get_by_label("API key").fill(key_file[1] + "x")
    expect(prompt).to_contain_text("not accepted")
    page.get_by_label("API key").fill(key_file[1])
    expect(page.locator("#people-count")).to_have_text("(0)")
    expect(page.locator("#people .need-key")).to_have_count(0)


def test_docs_page_renders_offline(browser, tmp_path, live_server, tiny_model_dir):
    """/docs renders the OpenAPI 3.1 schema (Swagger UI 5): the operations are listed, no version error,
    and the page asks nothing of any other host."""
    from playwright.sync_api import expect

    server = live_server(ServiceConfig(gallery=tmp_path / "g.db", model=str(tiny_model_dir), create=True))
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    elsewhere = []

    def only_this_server(route):
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(server.url + "/docs")
    path = ".opblock-summary-path[data-path='{}']"
    expect(page.locator(path.format("/v1/identify"))).to_have_text("/v1/identify", timeout=30_000)
    for operation in ("/v1/verify", "/v1/people/{name}/photos", "/v1/threshold"):
        expect(page.locator(path.format(operation)).first).to_be_visible()
    expect(page.locator(".info .title")).to_contain_text("facegallery")
    assert "valid version field" not in page.locator("body").inner_text()
    assert elsewhere == []
