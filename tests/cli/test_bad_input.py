"""The bad-input corpus, end to end through the CLI: every case exits 2 with one line
(``facegallery: error: ...``, click's own usage errors included), no traceback, and leaves the gallery
byte for byte as it was."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facegallery.cli import main
from facegallery.images import max_file_bytes


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir, make_face, make_fifo):
    """A gallery of 4 people, its export, damaged exports, junk photos, a text file, a FIFO, image lists
    naming a FIFO or a Latin-1 file name, and a photo file too large to be one (sparse)."""
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
    fifo = make_fifo(root / "fifo.jpg")
    (root / "fifo.txt").write_text(f"{fifo}\n")
    latin1 = os.fsencode(root) + "/caf\N{LATIN SMALL LETTER E WITH ACUTE}.jpg".encode("latin-1")
    Image.fromarray(make_face(0, 0)).save(open(latin1, "wb"), "JPEG")  # noqa: SIM115  (closed by PIL)
    (root / "latin1.txt").write_bytes(latin1 + b"\n")
    huge = root / "huge.jpg"  # a real JPEG header, then zeros up to one byte over the limit: no disk used
    Image.fromarray(make_face(0, 0)).save(huge)
    os.truncate(huge, max_file_bytes() + 1)
    return {
        "root": root, "db": db, "people": people, "export": export, "bad": bad, "model": tiny_model_dir, "fifo": fifo
    }  # fmt: skip


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
    "verify a missing photo": lambda w: (
        "verify",
        "--gallery",
        w["db"],
        w["people"] / "Person 0" / "0.jpg",
        w["root"] / "absent.jpg",
    ),
    "cluster with a missing gallery": lambda w: (
        "cluster",
        "--out",
        w["root"] / "clusters",
        "--gallery",
        w["root"] / "absent.db",
        w["people"],
    ),
    "a click usage error": lambda w: ("identify", "--gallery", w["db"], "--top-k", "0", w["people"]),
    "gallery that is a FIFO": lambda w: ("people", "--gallery", w["fifo"]),
    "gallery that is /dev/zero": lambda w: ("people", "--gallery", "/dev/zero"),
    "import from a FIFO": lambda w: ("import", "--gallery", w["db"], w["fifo"]),
    "clusters.json that is a FIFO": lambda w: (
        "enroll",
        "--gallery",
        w["db"],
        "--from-clusters",
        w["fifo"],
        "--name",
        "0=A",
    ),
    "identify /dev/zero": lambda w: ("identify", "--gallery", w["db"], "/dev/zero"),
    "identify a FIFO": lambda w: ("identify", "--gallery", w["db"], w["fifo"]),
    "a list naming a FIFO": lambda w: ("identify", "--gallery", w["db"], f"@{w['root'] / 'fifo.txt'}"),
    "a list with a Latin-1 name": lambda w: ("identify", "--gallery", w["db"], f"@{w['root'] / 'latin1.txt'}"),
    "a list that is /dev/zero": lambda w: ("embed", "--model", w["model"], "--out", w["root"] / "e.npz", "@/dev/zero"),
    "a photo file too large to be one": lambda w: ("identify", "--gallery", w["db"], w["root"] / "huge.jpg"),
    "train on /dev/zero": lambda w: ("train", "--data", "/dev/zero", "--out", w["root"] / "m"),
}

#: What the error (or the warning before it) must say, where the one line alone does not show the fix.
SAYS = {
    "verify a missing photo": "absent.jpg: no such file",
    "cluster with a missing gallery": "absent.db: no such gallery",
    "a click usage error": "--top-k",
    "gallery that is a FIFO": "fifo.jpg: not a regular file (a FIFO)",
    "gallery that is /dev/zero": "/dev/zero: not a regular file (a character device)",
    "import from a FIFO": "fifo.jpg: not a regular file (a FIFO)",
    "clusters.json that is a FIFO": "fifo.jpg: not a regular file (a FIFO)",
    "identify /dev/zero": "skipping /dev/zero: not a regular file (a character device)",
    "identify a FIFO": "fifo.jpg: not a regular file (a FIFO)",
    "a list naming a FIFO": "fifo.jpg: not a regular file (a FIFO) (line 1 of",
    "a list with a Latin-1 name": "caf\N{REPLACEMENT CHARACTER}.jpg: its file name is not valid UTF-8",
    "a list that is /dev/zero": "/dev/zero: not a regular file (a character device)",
    "a photo file too large to be one": f"huge.jpg: {max_file_bytes() + 1:,} bytes is above the limit",
    "train on /dev/zero": "/dev/zero: not a folder",
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_the_gallery_is_untouched(world, case):
    before = world["db"].read_bytes()
    r = _run(*CASES[case](world))
    errors = [line for line in r.stderr.splitlines() if line.startswith("facegallery: error:")]
    assert r.exit_code == 2, (case, r.output)
    assert len(errors) == 1 and "Traceback" not in r.output and "Usage:" not in r.output, (case, r.output)
    assert SAYS.get(case, "") in r.stderr, (case, r.stderr)
    assert world["db"].read_bytes() == before, case
