"""The bad-input corpus, end to end through the CLI: every case exits 2 with one line
(``facegallery: error: ...``), no traceback, and leaves the gallery byte for byte as it was."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facegallery.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir, make_face):
    """A gallery of 4 people, its export, damaged exports, junk photos and a text file."""
    root = tmp_path_factory.mktemp("corpus")
    people = root / "people"
    for p in range(4):
        (people / f"Person {p}").mkdir(parents=True)
        for n in range(3):
            Image.fromarray(make_face(p, n)).save(people / f"Person {p}" / f"{n}.jpg")
    db = root / "g.db"
    r = _run("enroll", "--gallery", db, "--create", "--model", tiny_model_dir, "--detect", "off", people)
    assert r.exit_code == 0, r.output
    # one identification first: it caches the calibration in the gallery, a write no bad input may repeat
    assert _run("identify", "--gallery", db, "--detect", "off", people / "Person 0" / "0.jpg").exit_code == 0
    export = root / "g.npz"
    assert _run("export", "--gallery", db, export).exit_code == 0
    with np.load(export, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    nan = dict(
        arrays,
        embeddings=np.where(
            np.arange(arrays["embeddings"].size).reshape(arrays["embeddings"].shape) == 7, np.nan, arrays["embeddings"]
        ).astype(np.float32),
    )
    np.savez(root / "nan.npz", **nan)
    info = json.loads(str(arrays["info"]))
    del info["model_fingerprint"]
    np.savez(root / "nokeys.npz", **dict(arrays, info=np.array(json.dumps(info))))
    (root / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    bad = root / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    (bad / "b.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("hello")
    return {"root": root, "db": db, "people": people, "export": export, "bad": bad, "model": tiny_model_dir}


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


CASES = {
    "import NaN embeddings": lambda w: ("import", "--gallery", w["db"], w["root"] / "nan.npz"),
    "import without model keys": lambda w: ("import", "--gallery", w["db"], w["root"] / "nokeys.npz"),
    "import junk": lambda w: ("import", "--gallery", w["db"], w["root"] / "junk.npz"),
    "import missing file": lambda w: ("import", "--gallery", w["db"], w["root"] / "absent.npz"),
    "name with a control character": lambda w: (
        "enroll",
        "--gallery",
        w["db"],
        "--detect",
        "off",
        "--name",
        "Ada\x07",
        w["people"] / "Person 0" / "0.jpg",
    ),
    "name with a trailing space": lambda w: (
        "enroll",
        "--gallery",
        w["db"],
        "--detect",
        "off",
        "--name",
        "Ada ",
        w["people"] / "Person 0" / "0.jpg",
    ),
    "nothing readable to enrol": lambda w: ("enroll", "--gallery", w["db"], "--name", "Ghost", w["bad"]),
    "rename onto an existing person": lambda w: ("rename", "--gallery", w["db"], "Person 0", "Person 1"),
    "remove someone unknown": lambda w: ("remove", "--gallery", w["db"], "Nobody"),
    "threshold FAR out of range": lambda w: ("threshold", "--gallery", w["db"], "--far", "5"),
    "identify with a NaN threshold": lambda w: ("identify", "--gallery", w["db"], "--threshold", "nan", w["people"]),
    "identify a missing photo": lambda w: ("identify", "--gallery", w["db"], w["root"] / "absent.jpg"),
    "identify nothing readable": lambda w: ("identify", "--gallery", w["db"], w["bad"]),
    "export over an existing file": lambda w: ("export", "--gallery", w["db"], w["export"]),
    "export into a missing folder": lambda w: ("export", "--gallery", w["db"], w["root"] / "no" / "g.npz"),
    "identify with another model": lambda w: (
        "identify",
        "--gallery",
        w["db"],
        "--model",
        "resface64-pubfig83",
        w["people"] / "Person 0" / "0.jpg",
    ),
    "reembed with a missing model": lambda w: ("reembed", "--gallery", w["db"], "--model", w["root"] / "no-model"),
    "gallery that is a text file": lambda w: ("people", "--gallery", w["root"] / "notes.txt"),
    "embed into a missing folder": lambda w: (
        "embed",
        "--model",
        w["model"],
        "--out",
        w["root"] / "no" / "e.npz",
        w["people"],
    ),
    "train with zero steps": lambda w: ("train", "--data", w["people"], "--out", w["root"] / "m", "--steps", "0"),
    "LFW without its data": lambda w: ("evaluate", "--protocol", "lfw", "--data", w["bad"], "--out", w["root"] / "o"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_the_gallery_is_untouched(world, case):
    before = world["db"].read_bytes()
    r = _run(*CASES[case](world))
    errors = [line for line in r.stderr.splitlines() if line.startswith("facegallery: error:")] or [
        line for line in r.output.splitlines() if line.startswith("Error:")
    ]  # click's own usage errors
    assert r.exit_code == 2, (case, r.output)
    assert len(errors) == 1 and "Traceback" not in r.output, (case, r.output)
    assert world["db"].read_bytes() == before, case
