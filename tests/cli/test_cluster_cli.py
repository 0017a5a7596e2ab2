"""``facegallery cluster`` and ``enroll --from-clusters`` end to end: the files written, the cache, naming a
cluster into a gallery, and the one-line refusals."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facegallery.cli import main
from facegallery.clustering import CUT_SCALE
from facegallery.images import SkipWarning


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def model(tiny_model_dir, tmp_path_factory):
    """The tiny untrained model with a threshold its synthetic people fall apart at (they lie 0.8-1.3
    apart, near-copies of one photo within 0.003): the grouping cut is 0.17."""
    import shutil

    from facegallery import checkpoints

    folder = tmp_path_factory.mktemp("grouping_model") / "tiny"
    shutil.copytree(tiny_model_dir, folder)
    checkpoints.update_config(folder, threshold=0.1)
    return folder


@pytest.fixture
def pile(tmp_path, make_face):
    """Unlabelled photos: three near-copies of person 0, three of person 1, one of person 2, and junk."""
    d = tmp_path / "pile"
    d.mkdir()
    for p, n in [(0, 3), (1, 3), (2, 1)]:
        for k in range(n):
            Image.fromarray(make_face(p, 0)).save(d / f"p{p}-{k}.jpg", quality=80 + 5 * k)
    (d / ".DS_Store").write_bytes(b"\x00junk")
    return d


def test_cluster_writes_json_sheets_and_reuses_its_cache(pile, model, tmp_path, monkeypatch):
    out = tmp_path / "groups"
    r = _run("cluster", "--out", out, "--model", model, "--detect", "off", "--json", pile)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc == json.loads((out / "clusters.json").read_text())
    assert (
        doc["model"] == "tiny" and doc["algorithm"] == "agglomerative" and doc["cut"] == pytest.approx(0.1 * CUT_SCALE)
    )
    groups = [sorted(f["path"].rsplit("/", 1)[1][:2] for f in c["faces"]) for c in doc["clusters"]]
    assert sorted(groups) == [["p0"] * 3, ["p1"] * 3] and [u["path"][-8:] for u in doc["unassigned"]] == ["p2-0.jpg"]
    for c in doc["clusters"]:
        assert 0 <= c["representative"] < len(c["faces"]) and 0 <= c["cohesion"] < 0.05
        with Image.open(out / c["sheet"]) as im:
            assert im.size[0] > 300 and im.getextrema() != ((255, 255),) * 3  # thumbnails drawn
    assert (out / "overview.png").is_file() and np.load(out / "embeddings.npy").shape == (7, 128)
    assert "skipping" in r.stderr and ".DS_Store" in r.stderr

    from facegallery import detection

    calls = []
    real = detection.faces_in
    monkeypatch.setattr(detection, "faces_in", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = _run("cluster", "--out", tmp_path / "again", "--model", model, "--detect", "off", pile)
    assert again.exit_code == 0 and "7 faces in 7 photos: 2 clusters (6 faces), 1 unassigned" in again.stdout
    assert calls == []  # every photo's faces and embeddings came from the cache
    assert json.loads((tmp_path / "again" / "clusters.json").read_text())["clusters"] == doc["clusters"]


def test_naming_a_cluster_enrols_its_faces(pile, model, tmp_path):
    out = tmp_path / "groups"
    _run("cluster", "--out", out, "--model", model, "--detect", "off", pile)
    doc = json.loads((out / "clusters.json").read_text())
    k = next(c["id"] for c in doc["clusters"] if "p1-" in c["faces"][0]["path"])
    db = tmp_path / "g.db"
    args = ("enroll", "--gallery", db, "--create", "--model", model, "--from-clusters", out / "clusters.json")
    r = _run(*args, "--name", f"{k}=Ada Lovelace")
    assert r.exit_code == 0, r.output
    assert "Ada Lovelace: 3 added, 0 already there" in r.stdout
    people = json.loads(_run("people", "--gallery", db, "--json").stdout)
    assert people == [{"name": "Ada Lovelace", "photos": 3}]
    assert "0 added, 3 already there" in _run(*args, "--name", f"{k}=Ada Lovelace").stdout  # idempotent

    # clustering against the gallery: Ada's faces are labelled, the others grouped
    r = _run("cluster", "--out", tmp_path / "g2", "--gallery", db, "--detect", "off", "--json", pile)
    doc2 = json.loads(r.stdout)
    assert sorted(f["path"][-8:-6] for f in doc2["known"]) == ["p1"] * 3
    assert all(f["person"] == "Ada Lovelace" for f in doc2["known"])
    assert [sorted(f["path"][-8:-6] for f in c["faces"]) for c in doc2["clusters"]] == [["p0"] * 3]


def test_bad_cluster_names_and_files_are_one_line_errors_that_enrol_nothing(pile, model, other_model_dir, tmp_path):
    out = tmp_path / "groups"
    _run("cluster", "--out", out, "--model", model, "--detect", "off", pile)
    clusters = out / "clusters.json"
    db = tmp_path / "g.db"
    base = ("enroll", "--gallery", db, "--create", "--from-clusters", clusters)
    for args, message in [
        (("--model", model, "--name", "7=Nobody"), "no cluster 7"),
        (("--model", model, "--name", "Ada"), "CLUSTER=NAME"),
        (("--model", model), "at least one --name"),
        (("--model", other_model_dir, "--name", "0=Ada"), "grouped with model tiny"),
        (("--model", model, "--name", "0=a/b"), "name"),
    ]:
        r = _run(*base, *args)
        assert r.exit_code == 2 and message in r.stderr, (args, r.output)
        assert len(r.stderr.strip().splitlines()) == 1
    assert not db.exists() or json.loads(_run("people", "--gallery", db, "--json").stdout) == []
    (tmp_path / "junk.json").write_text('{"clusters": []}')
    r = _run("enroll", "--gallery", db, "--create", "--from-clusters", tmp_path / "junk.json", "--name", "0=Ada")
    assert r.exit_code == 2 and "not a clusters.json" in r.stderr


def test_a_folder_without_faces_gives_an_empty_grouping(model, tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    Image.fromarray(np.full((300, 400, 3), 40, np.uint8)).save(d / "wall.jpg")
    r = _run("cluster", "--out", tmp_path / "o", "--model", model, "--detect", "on", d)
    assert r.exit_code == 0 and "no face found in 1 photos" in r.stderr
    doc = json.loads((tmp_path / "o" / "clusters.json").read_text())
    assert doc["clusters"] == [] and doc["unassigned"] == []


def test_real_people_of_lfw_fall_into_their_own_clusters(lfw, tmp_path):
    folder = lfw / "lfw-deepfunneled"
    photos = [
        folder / p / f"{p}_{n:04d}.jpg" for p in ("Colin_Powell", "Tony_Blair", "Serena_Williams") for n in (1, 2, 3, 4)
    ]
    r = _run("cluster", "--out", tmp_path / "o", "--json", *photos)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    groups = sorted(sorted({f["path"].split("/")[-2] for f in c["faces"]}) for c in doc["clusters"])
    assert groups == [["Colin_Powell"], ["Serena_Williams"], ["Tony_Blair"]]
    assert sum(len(c["faces"]) for c in doc["clusters"]) >= 11  # a background face may stay unassigned


def test_evaluate_scores_every_algorithm_on_a_labelled_tree(model, tmp_path, make_face):
    root = tmp_path / "tree"
    for p in range(3):
        (root / f"Person {p}").mkdir(parents=True)
        for k in range(3):  # near-copies of one photo: each person is one tight group
            Image.fromarray(make_face(p, 0)).save(root / f"Person {p}" / f"{k}.jpg", quality=80 + 5 * k)
    r = _run("evaluate", "--protocol", "clusters", "--data", root, "--model", model, "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert (
        m["photos"] == 9
        and m["photos_without_face"] == 0
        and set(m["algorithms"])
        == {
            "agglomerative",
            "chinese-whispers",
            "hdbscan",
        }
    )
    for name in ("agglomerative", "chinese-whispers"):
        f = m["algorithms"][name]
        assert f["bcubed_f1"] == 1.0 and f["pairwise_f1"] == 1.0 and f["clusters"] == 3 and f["people"] == 3
    assert "BCubed" in r.stdout


def test_the_python_api_groups_and_enrols_like_the_cli(pile, model, tmp_path):
    from facegallery import Gallery, cluster

    with pytest.warns(SkipWarning, match=r"\.DS_Store: not an image file"):
        result = cluster([pile], model=model, detect="off")
    assert sorted(len(c.faces) for c in result.clusters) == [3, 3] and len(result.unassigned) == 1
    first = result.clusters[0]
    with Gallery.open(tmp_path / "g.db", model=model, create=True) as g:
        rows = [f.index for f in first.faces]
        r = g.enroll_faces(
            "Grace", result.embeddings[rows], [(f.path, f.sha256) for f in first.faces], result.fingerprint
        )
        assert r.added == 3 and [p.photos for p in g.people()] == [3]
        with pytest.raises(Exception, match="another model"):
            g.enroll_faces("Grace", result.embeddings[rows], [(f.path, f.sha256) for f in first.faces], "other:0")
        with pytest.warns(SkipWarning):
            again = cluster([pile], detect="off", gallery=g)  # the gallery's model; Grace's faces are known
        assert len(again.known) == 3 and {f.person for f in again.known} == {"Grace"}


def test_the_overview_numbers_each_cluster_as_name_takes_it(pile, model, monkeypatch):
    from PIL import ImageDraw

    from facegallery import grouping
    from facegallery.embedder import load_model

    faces, emb = grouping.find_faces(sorted(pile.glob("*.jpg")), load_model(model), "off")
    result = grouping.cluster_faces(faces, emb, load_model(model), "off")
    drawn: list[str] = []
    real = ImageDraw.ImageDraw.text
    monkeypatch.setattr(
        ImageDraw.ImageDraw, "text", lambda self, xy, text, *a, **k: drawn.append(text) or real(self, xy, text, *a, **k)
    )
    sheet = grouping.overview(result)
    assert drawn[0] == "2 clusters, numbered for --name N=NAME; 1 face in no cluster"
    assert sorted(drawn[1:]) == ["0", "1"]  # each thumbnail carries its cluster's id
    assert sheet.getpixel((4 + 2, 30 + 2)) == (0, 0, 0)  # on a dark label in the thumbnail's corner
