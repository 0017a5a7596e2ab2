"""Exports read back field by field: a malformed one is one line and leaves the gallery as it was."""

import json

import numpy as np
import pytest

from facegallery.errors import UserError
from facegallery.gallery import Gallery


@pytest.fixture
def export(enrolled, tmp_path):
    out = tmp_path / "g.npz"
    with Gallery.open(enrolled) as g:
        g.export_to(out)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def _write(path, parts, info=None, **arrays):
    data = {**parts, **arrays}
    if info is not None:
        data["info"] = np.array(json.dumps(info))
    np.savez(path, **data)
    return path


def _info(parts):
    return json.loads(str(parts["info"]))


def _edit(parts, **changes):
    info = _info(parts)
    for key, value in changes.items():
        info[key] = value
    return info


@pytest.mark.parametrize(
    "broken",
    [
        lambda p: {"info": _edit(p, photos=[{**ph, "sha256": [1, 2]} for ph in _info(p)["photos"]])},
        lambda p: {"info": _edit(p, photos=[{**ph, "detect": "sideways"} for ph in _info(p)["photos"]])},
        lambda p: {"info": _edit(p, people=[{"metadata": None}] * len(_info(p)["people"]))},
        lambda p: {"info": _edit(p, people=[{**pe, "metadata": [1]} for pe in _info(p)["people"]])},
        lambda p: {"info": _edit(p, model_fingerprint=None)},
        lambda p: {"info": _edit(p, format=2)},
        lambda p: {"info": [1, 2, 3]},
        lambda p: {"person": p["person"] + 100},
        lambda p: {
            "embeddings": p["embeddings"][:, :3] / np.linalg.norm(p["embeddings"][:, :3], axis=1, keepdims=True)
        },
        lambda p: {"embeddings": np.full_like(p["embeddings"], np.nan)},
    ],
    ids=["sha-list", "detect", "no-name", "metadata-list", "no-model", "format", "info-list", "owner", "3d", "nan"],
)
def test_malformed_exports_are_one_line_and_change_nothing(export, tmp_path, tiny_model_dir, broken):
    """Issue 27.7: each malformed export is refused with one line naming the file, before any write."""
    change = broken(export)
    info = change.pop("info", None)
    bad = _write(tmp_path / "bad.npz", {k: v for k, v in export.items() if k != "info" or info is None}, info, **change)
    db = tmp_path / "target.db"
    with Gallery.open(db, model=tiny_model_dir, create=True) as g:
        gen = g.store.generation()
        with pytest.raises(UserError) as e:
            g.import_from(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
        assert g.store.generation() == gen and g.people() == []


def test_three_d_vectors_that_claim_to_be_three_d_are_refused_for_a_128_d_model(export, tmp_path, tiny_model_dir):
    """Issue 27.7: unit 3-D vectors with the right fingerprint and a matching "dimension" would break every
    identify after import: the export's model is loaded and its dimension checked."""
    e3 = export["embeddings"][:, :3] / np.linalg.norm(export["embeddings"][:, :3], axis=1, keepdims=True)
    bad = _write(tmp_path / "bad.npz", export, _edit(export, dimension=3), embeddings=e3)
    with Gallery.open(tmp_path / "target.db", create=True) as g:
        with pytest.raises(UserError, match="3-D embeddings, but its model"):
            g.import_from(bad)
        assert g.people() == []


def test_optional_fields_may_be_missing(export, tmp_path):
    """Missing ``metadata``, ``source`` and ``detect`` (a hand-made export) read as none, none and off."""
    info = _info(export)
    info["people"] = [{"name": p["name"]} for p in info["people"]]
    info["photos"] = [{"sha256": p["sha256"]} for p in info["photos"]]
    ok = _write(tmp_path / "ok.npz", {k: v for k, v in export.items() if k != "info"}, info)
    with Gallery.open(tmp_path / "target.db", create=True) as g:
        assert sum(r.added for r in g.import_from(ok)) == 20
        assert {p.detect for p in g.photos("Person 0")} == {"off"}
