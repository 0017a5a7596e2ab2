"""Moving a gallery's contents out and in: a portable ``.npz`` export (numeric arrays plus one JSON string,
no pickle) and its import, checked field by field before anything is written and merged in one
transaction that re-reads the gallery's model and photos under the write lock."""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegallery.errors import Conflict, InvalidInput, UserError
from facegallery.gallery.enrolment import EnrollResult
from facegallery.gallery.store import GalleryStore, check_name

EXPORT_FORMAT = 1
DETECT_MODES = ("auto", "on", "off")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def export_to(store: GalleryStore, out: str | os.PathLike) -> Path:
    """Write the gallery to ``out`` (embeddings, the person of each, and the people, photos and model as
    JSON), read in one snapshot. Refuses to overwrite."""
    out = Path(out)
    if out.exists():
        raise UserError(f"{out}: already exists (choose another name)")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such folder for {out.name}")
    with store.snapshot():
        people = store.people()
        photos = store.photos()
        labels, emb = store.embeddings()
        info = {
            "format": EXPORT_FORMAT,
            "model_name": store.meta("model_name"),
            "model_ref": store.meta("model_ref"),
            "model_fingerprint": store.meta("model_fingerprint"),
            "dimension": store.dimension,
            "threshold": {k: store.meta(k) for k in ("threshold_mode", "target_far", "threshold_raw")},
            "people": [{"name": p.name, "metadata": p.metadata, "created": p.created} for p in people],
            "photos": [{"source": p.source, "sha256": p.sha256, "detect": p.detect} for p in photos],
        }
    pos = {p.id: i for i, p in enumerate(people)}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                embeddings=emb.astype(np.float32),
                person=np.array([pos[int(l)] for l in labels], np.int64),
                info=np.array(json.dumps(info)),
            )
        os.replace(tmp, out)
    except OSError as e:  # a full disk, say: no debris, one line
        raise UserError(f"{out}: cannot write ({e.strerror or e}); nothing exported") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


@dataclass
class Export:
    """A checked export: embeddings (N, D) float32, the person (index into ``people``) of each, people
    ``{name, metadata}``, photos ``{source, sha256, detect}`` and the model's name, ref, fingerprint."""

    embeddings: np.ndarray
    person: np.ndarray
    people: list[dict]
    photos: list[dict]
    model: dict[str, str]

    @property
    def dimension(self) -> int:
        return int(self.embeddings.shape[1])


def read_export(path: str | os.PathLike) -> Export:
    """Read and check an export completely (every key and type), or raise one line naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            emb, person, raw = z["embeddings"], z["person"], z["info"]
            info = json.loads(str(raw)) if raw.ndim == 0 else None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: not a facegallery export ({e.__class__.__name__})") from None

    def bad(what: str) -> UserError:
        return UserError(f"{path}: not a facegallery export ({what}); nothing imported")

    if not isinstance(info, dict) or info.get("format") != EXPORT_FORMAT:
        raise bad(f"format {info.get('format') if isinstance(info, dict) else None!r}, this facegallery reads 1")
    model = {k: info.get(k) for k in ("model_name", "model_ref", "model_fingerprint")}
    if not all(isinstance(v, str) and v for v in model.values()):
        raise bad("model name, reference and fingerprint must be strings")
    people, photos = info.get("people"), info.get("photos")
    if not isinstance(people, list) or not isinstance(photos, list):
        raise bad("'people' and 'photos' must be lists")
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.floating):
        raise bad(f"embeddings of shape {emb.shape} and type {emb.dtype}, not a float matrix")
    if person.ndim != 1 or not np.issubdtype(person.dtype, np.integer) or not len(emb) == len(person) == len(photos):
        raise bad(f"{len(emb)} embeddings, {len(person)} owners and {len(photos)} photos")
    if len(person) and not 0 <= person.min() <= person.max() < len(people):
        raise bad("an embedding's owner is not among its people")
    if info.get("dimension") != emb.shape[1]:
        raise bad(f"says {info.get('dimension')!r}-D embeddings but holds {emb.shape[1]}-D ones")
    for i, p in enumerate(people):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise bad(f"person {i} has no name")
        if not isinstance(p.get("metadata"), (dict, type(None))):
            raise bad(f"person {p['name']!r}: metadata must be an object")
        check_name(p["name"])
    for i, p in enumerate(photos):
        if not isinstance(p, dict) or not isinstance(p.get("sha256"), str) or not _SHA256.fullmatch(p["sha256"]):
            raise bad(f"photo {i}: 'sha256' must be 64 hex digits")
        if not isinstance(p.get("source"), (str, type(None))) or p.get("detect", "off") not in DETECT_MODES:
            raise bad(f"photo {i}: 'source' must be a path or null and 'detect' one of {', '.join(DETECT_MODES)}")
    if not np.isfinite(emb).all():
        raise InvalidInput(f"{path}: embeddings hold NaN or infinite values; nothing imported")
    if len(emb) and not np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3):
        raise InvalidInput(
            f"{path}: embeddings are not unit vectors as every facegallery model's are; nothing imported"
        )
    people = [{"name": check_name(p["name"]), "metadata": p.get("metadata")} for p in people]
    photos = [{"source": p.get("source"), "sha256": p["sha256"], "detect": p.get("detect", "off")} for p in photos]
    return Export(emb.astype(np.float32), person.astype(np.int64), people, photos, model)


def import_into(
    store: GalleryStore, export: Export, where: str, model_dimension: int | None = None
) -> tuple[list[EnrollResult], int, list[int]]:
    """Merge a checked export in one transaction (people by name; photos already stored are skipped, so
    importing twice changes nothing). The gallery's model and dimension are read under the write lock:
    they must match, unless the gallery has no photos yet, in which case it adopts the export's model.
    ``model_dimension``: the dimension the export's model is known to produce, if known.
    Returns (results per person, generation before the write, people changed)."""
    dim = export.dimension
    if model_dimension is not None and model_dimension != dim:
        raise Conflict(
            f"{where}: {dim}-D embeddings, but its model {export.model['model_name']} makes "
            f"{model_dimension}-D ones; nothing imported"
        )
    results = [EnrollResult(p["name"]) for p in export.people]
    changed: list[int] = []
    with store.transaction() as write:
        if store.count("photos"):
            mine = store.meta("model_fingerprint")
            if mine != export.model["model_fingerprint"]:
                raise Conflict(
                    f"{where}: made with model {export.model['model_name']} ({export.model['model_fingerprint']}), "
                    f"this gallery uses {store.meta('model_name')} ({mine}); import into a new gallery and "
                    "`facegallery reembed` it"
                )
            if store.dimension != dim:
                raise Conflict(
                    f"{where}: {dim}-D embeddings, this gallery holds {store.dimension}-D ones; nothing imported"
                )
        for key, value in export.model.items():
            store.set_meta(key, value)
        store.set_meta("dimension", str(dim))
        for i, p in enumerate(export.people):
            rows = np.flatnonzero(export.person == i)
            ident = store.identity_id(p["name"])
            if ident is None:
                ident = store.add_identity(p["name"], p["metadata"])
            known = store.photo_hashes(ident)
            new, seen = [], set(known)
            for r in rows:
                sha = export.photos[r]["sha256"]
                if sha not in seen:
                    seen.add(sha)
                    new.append(int(r))
            results[i].duplicates = len(rows) - len(new)
            results[i].added = len(new)
            if new:
                photos = [
                    (export.photos[r]["source"], export.photos[r]["sha256"], export.photos[r]["detect"]) for r in new
                ]
                store.add_photos(ident, photos, export.embeddings[new])
                store.update_centroid(ident)
                changed.append(ident)
    return results, write.before, changed


#: Meta entries a migration carries over (the model, the threshold rule, the detectors).
CARRIED_META = (
    "model_name",
    "model_ref",
    "model_fingerprint",
    "dimension",
    "threshold_mode",
    "target_far",
    "threshold_raw",
    "detectors",
)


@dataclass
class Migration:
    """What a migration copied, and how many centroids differ from their photos' mean afterwards (0)."""

    people: int
    photos: int
    thumbnails: int
    centroids_off: int


def migrate(src: GalleryStore, dst: GalleryStore, batch: int = 1000) -> Migration:
    """Copy everything of ``src`` (people with metadata, photos, embeddings, thumbnails, the model, the
    threshold rule, the detectors) into the empty ``dst``, read in one snapshot and written in one
    transaction; then check the counts and that every centroid of ``dst`` is its photos' mean."""
    if dst.count("identities"):
        raise Conflict(f"{dst.name}: already holds people; migrate into an empty gallery")
    dst.check_writable()
    with src.snapshot():
        meta = {k: src.meta(k) for k in CARRIED_META}
        people = src.people()
        photos = src.photos()
        labels, emb = src.embeddings()
    by_person: dict[int, list[int]] = {}
    for i, p in enumerate(photos):
        by_person.setdefault(p.identity, []).append(i)
    thumbs = 0
    with dst.transaction():
        for key, value in meta.items():
            dst.set_meta(key, value)
        for s in range(0, len(people), batch):
            chunk = people[s : s + batch]
            ids = [photos[i].id for p in chunk for i in by_person.get(p.id, [])]
            jpegs = src.thumbnails(ids)
            thumbs += len(jpegs)
            for p in chunk:
                rows = by_person.get(p.id, [])
                ident = dst.add_identity(p.name, p.metadata)
                if rows:
                    dst.add_photos(
                        ident,
                        [(photos[i].source, photos[i].sha256, photos[i].detect) for i in rows],
                        emb[rows],
                        [jpegs.get(photos[i].id) for i in rows],
                    )
                    dst.update_centroid(ident)
    if (dst.count("identities"), dst.count("photos")) != (len(people), len(photos)):
        raise UserError(f"{dst.name}: holds {dst.count('photos')} photos after copying {len(photos)}")
    return Migration(len(people), len(photos), thumbs, centroids_off(dst))


def centroids_off(store: GalleryStore, atol: float = 1e-5) -> int:
    """How many people's stored centroid differs from the mean of their photos' embeddings (0 when sound)."""
    labels, emb = store.embeddings()
    cents = store.centroids()
    if not len(cents.ids):
        return int(len(labels) > 0)
    pos = {int(i): k for k, i in enumerate(cents.ids)}
    sums = np.zeros(cents.vectors.shape, np.float64)
    counts = np.zeros(len(cents.ids), np.int64)
    missing = set()  # people with photos but no centroid
    for label, v in zip(labels, emb):
        k = pos.get(int(label))
        if k is None:
            missing.add(int(label))
            continue
        sums[k] += v
        counts[k] += 1
    means = sums / np.maximum(counts, 1)[:, None]
    off = (np.abs(means - cents.vectors).max(1) > atol) | (counts != cents.counts)
    return int(off.sum()) + len(missing)
