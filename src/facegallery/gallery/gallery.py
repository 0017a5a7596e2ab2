"""The library of people as a persistent product: enrol, identify, verify, manage, export.

A :class:`Gallery` joins the SQLite :mod:`~facegallery.gallery.store`, the search
:mod:`~facegallery.gallery.index` and the per-gallery :mod:`~facegallery.gallery.threshold`. Photos are
decoded and embedded first and written after, one transaction per person, so an interrupted enrolment
leaves every person either whole or absent.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facegallery.answers import Candidate, Identification, Recognition, Skipped
from facegallery.datasets import discover
from facegallery.detectors import Detector, describe, load_detector
from facegallery.errors import Conflict, InvalidInput, NotFound, UserError
from facegallery.facecache import FaceCache
from facegallery.faces import Face, not_one_face, only_face
from facegallery.gallery import threshold as th
from facegallery.gallery.calibrated import StoredCalibration
from facegallery.gallery.search import LiveIndex
from facegallery.gallery.store import Person, Store, check_name
from facegallery.gallery.store import Photo as StoredPhoto
from facegallery.images import MAX_PIXELS, PhotoBytes, photo_name, sha256_of, warn_skip
from facegallery.pipeline import BATCH, Finder, ReadPhoto, expand, read_photos, recognize
from facegallery.pipeline import Photo as ImageLike

if TYPE_CHECKING:  # the embedder (PyTorch) loads on first use: `facegallery people` needs none of it
    from facegallery.embedder import Embedder

EXPORT_FORMAT = 1


@dataclass
class Verification:
    """Are two photos the same person?"""

    same: bool
    distance: float
    score: float
    threshold: float


@dataclass
class EnrollResult:
    """What one person's enrolment did: photos added, already there (same bytes), or rejected (each
    rejected photo in ``problems``, with why)."""

    name: str
    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    problems: list[Skipped] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return self.duplicates + self.rejected


@dataclass
class ReembedReport:
    reembedded: int
    dropped: list[str] = field(default_factory=list)


def _emb() -> Any:
    """:mod:`facegallery.embedder`, imported when first needed."""
    from facegallery import embedder

    return embedder


def photo_source(photo: ImageLike) -> str | None:
    """What a gallery records as a photo's source: its absolute path, or None (bytes, files, arrays)."""
    return str(Path(photo).resolve()) if isinstance(photo, (str, os.PathLike)) else None


def _model_ref(model: str | os.PathLike | Embedder, embedder: Embedder) -> str:
    """How to find the model again later: an absolute checkpoint path, or its (shipped) name, with the
    precision ``embedder`` runs at (``@int8``/``@fp32``) so that it reloads as the same network."""
    if not isinstance(model, (str, os.PathLike)):
        return getattr(model, "reference", model.name)
    base, _ = _emb().split_precision(model)
    ref = str(Path(base).resolve()) if Path(base).exists() else str(base)
    precision = getattr(embedder, "precision", None)
    return f"{ref}@{precision}" if precision else ref


class Gallery:
    """A persistent library of people (see module docstring). Open with :meth:`open`."""

    def __init__(
        self,
        store: Store,
        model: str | os.PathLike | Embedder | None,
        detector: str | Detector | None = None,
        cache: FaceCache | bool = True,
    ):
        self.store = store
        self.path = store.path
        self._model_arg = model
        self._embedder: Embedder | None = None
        self._detector_arg = detector
        self._detector: Detector | None = None
        self.cache = cache
        self.searcher = LiveIndex(store)
        self.thresholds = StoredCalibration(store, self.search, self._model_threshold)

    # ----- opening and closing --------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        model: str | os.PathLike | Embedder | None = None,
        create: bool = False,
        detector: str | Detector | None = None,
        cache: FaceCache | bool = True,
    ) -> Gallery:
        """Open the gallery at ``path`` (created empty when missing only with ``create``).

        ``model``: shipped name, checkpoint folder or embedder; None uses the gallery's own model
        (loaded when first needed). A model other than the one that made the stored embeddings is
        refused; ``reembed`` converts the gallery. ``detector``: a name or a detector; None uses the
        one the gallery was enrolled with (else the default). ``cache``: the face cache (True: the
        user's, False: none).
        """
        g = cls(Store.open(path, create=create), model, detector, cache)
        if model is not None:
            try:
                _ = g.embedder  # load and check now, so a mismatch is reported before any work
            except BaseException:
                g.close()
                raise
        return g

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Persist a large search index beside the file (:class:`~facegallery.gallery.search.LiveIndex`)
        and close."""
        self.searcher.save_if_current()
        self.store.close()

    # ----- the model ------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use and checked against the stored embeddings' model."""
        if self._embedder is None:
            self._embedder = self._check_model(self._load(self._model_arg))
        return self._embedder

    @property
    def detector(self) -> Detector:
        """The face detector: the one given, else the first one the gallery was enrolled with (name and
        settings), else the default."""
        if self._detector is None:
            if self._detector_arg is None and self.detectors():
                first = dict(self.detectors()[0])
                try:
                    self._detector = load_detector(first.pop("name"), **first)
                except UserError as e:
                    raise UserError(f"{self.path}: cannot load its detector ({e}); pass --detector") from None
            else:
                self._detector = load_detector(self._detector_arg)
        return self._detector

    def detectors(self) -> list[dict]:
        """The detectors (name and settings) the gallery's photos were found with, first used first."""
        try:
            found = json.loads(self.store.meta("detectors") or "[]")
        except ValueError:
            return []
        if not isinstance(found, list):
            return []
        return [d for d in found if isinstance(d, dict) and isinstance(d.get("name"), str)]

    def finder(self, detect: str) -> Finder:
        """How this gallery finds faces under ``detect``: its embedder, its detector, its face cache."""
        return Finder.of(self.embedder, detect, None if detect == "off" else self.detector, self.cache)

    def _record_detector(self, detector: dict | None) -> None:
        """Inside a write: add ``detector`` to the ones the gallery's photos were found with."""
        if detector is not None and detector not in self.detectors():
            self.store.set_meta("detectors", json.dumps([*self.detectors(), detector]))

    def _load(self, model: str | os.PathLike | Embedder | None) -> Embedder:
        if model is not None and not isinstance(model, (str, os.PathLike)):
            return model
        if model is None and self.store.meta("model_ref"):
            ref = self.store.meta("model_ref")
            # a reference without a precision predates int8 networks: its embeddings are float ones
            legacy = _emb().split_precision(ref)[1] == "auto" and self.store.count("photos")
            try:
                return _emb().load_model(ref, precision="fp32" if legacy else None)
            except UserError as e:
                raise UserError(f"{self.path}: cannot load its model {ref!r} ({e}); pass --model") from None
        return _emb().load_model(model)

    def _check_model(self, embedder: Embedder) -> Embedder:
        stored = self.store.meta("model_fingerprint")
        if stored and stored != embedder.fingerprint and self.store.count("photos"):
            raise Conflict(
                f"{self.path}: its embeddings come from model {self.store.meta('model_name')} ({stored}), not "
                f"{embedder.name} ({embedder.fingerprint}); convert them with "
                f"`facegallery reembed --gallery {self.path} "
                f"--model {_model_ref(self._model_arg or embedder, embedder)}`"
            )
        return embedder

    def _record_model(self, embedder: Embedder, dim: int) -> None:
        """Inside a write: make ``embedder`` the gallery's model if it has none (or no photos). Checked
        again here, under the write lock: another process may have enrolled with another model since
        this one loaded its embedder."""
        self._check_model(embedder)
        if self.store.meta("model_fingerprint") != embedder.fingerprint:
            self.store.set_meta("model_name", embedder.name)
            self.store.set_meta(
                "model_ref", _model_ref(self._model_arg if self._model_arg is not None else embedder, embedder)
            )
            self.store.set_meta("model_fingerprint", embedder.fingerprint)
        if self.store.dimension != dim:
            self.store.set_meta("dimension", str(dim))

    # ----- enrolment ------------------------------------------------------------------------------
    def enroll(
        self,
        name: str,
        images: ImageLike | Sequence[ImageLike],
        detect: str = "auto",
        metadata: dict | None = None,
        progress: bool = False,
    ) -> EnrollResult:
        """Add photos (paths, bytes, binary files or RGB uint8 arrays) of one person, creating the person
        if new.

        Idempotent: a photo whose bytes are already stored for this person is skipped. Photos that
        cannot be read, or show no face or several faces (with detection), are skipped with a warning
        and listed in the result's ``problems``. Everything is embedded first and written in one
        transaction.
        """
        if isinstance(images, (str, os.PathLike, bytes, PhotoBytes)) or (
            isinstance(images, np.ndarray) and images.ndim == 3
        ):
            images = [images]
        return self.enroll_many([(name, list(images))], detect, {name: metadata} if metadata else None, progress)[0]

    def enroll_folder(
        self, root: str | os.PathLike, detect: str = "auto", progress: bool = False
    ) -> list[EnrollResult]:
        """Enrol ``root/<Person Name>/<photos>``: one person per subfolder (junk files skipped, and a
        subfolder whose name cannot be a person's skipped with a warning)."""
        folder = discover(root)
        by_person: dict[int, list[Path]] = {}
        for p, label in zip(folder.paths, folder.labels):
            by_person.setdefault(int(label), []).append(p)
        people = []
        for i in sorted(by_person):
            try:
                people.append((check_name(folder.names[i]), by_person[i]))
            except UserError as e:
                warn_skip(Path(root) / folder.names[i], str(e))
        if not people:
            raise UserError(f"{root}: no subfolder is a person's name to enrol")
        return self.enroll_many(people, detect, progress=progress)

    def enroll_many(
        self,
        people: Sequence[tuple[str, Sequence[ImageLike]]],
        detect: str = "auto",
        metadata: dict[str, dict] | None = None,
        progress: bool = False,
    ) -> list[EnrollResult]:
        """Enrol several people; photos of many people are decoded and embedded in shared batches,
        and each person is written in its own transaction as soon as their photos are embedded."""
        from tqdm import tqdm

        merged: dict[str, list[ImageLike]] = {}
        for name, images in people:  # a name given twice is one person
            merged.setdefault(check_name(name), []).extend(images)
        embedder = self.embedder
        results: list[EnrollResult] = []
        bar = tqdm(
            total=sum(len(imgs) for imgs in merged.values()),
            unit="photo",
            disable=not progress,
            dynamic_ncols=True,
            desc="enrol",
        )
        chunk: list[tuple[str, Sequence[ImageLike]]] = []
        pending = 0
        for i, person in enumerate(merged.items()):
            chunk.append(person)
            pending += len(person[1])
            if pending >= BATCH or i == len(merged) - 1:
                results += self._enroll_chunk(chunk, self.finder(detect), metadata or {}, embedder, bar)
                chunk, pending = [], 0
        bar.close()
        return results

    def _enroll_chunk(
        self,
        people: list[tuple[str, Sequence[ImageLike]]],
        finder: Finder,
        metadata: dict[str, dict],
        embedder: Embedder,
        bar: Any,
    ) -> list[EnrollResult]:
        results, faces_kept, owners, read = [], [], [], []
        detect = finder.detect
        found_by = describe(finder.detector) if detect != "off" else None
        for name, images in people:
            res = EnrollResult(name)
            ident = self.store.identity_id(name)
            known = self.store.photo_hashes(ident) if ident is not None else set()
            rows = []
            for got in read_photos(list(images), finder, with_hash=True, known=known):
                bar.update(1)
                if isinstance(got, ReadPhoto) and got.sha256 in known:
                    res.duplicates += 1
                    continue
                face = self._one_face(got, res)
                if face is not None:
                    known.add(got.sha256)
                    rows.append((photo_source(got.photo), got.sha256, detect))
                    faces_kept.append(face)
                    read.append(got)
            owners.append(rows)
            results.append(res)
        emb = _emb().embed_faces(embedder, faces_kept) if faces_kept else np.zeros((0, 0), np.float32)
        finder.remember(read)
        thumbs = [f.thumbnail() for f in faces_kept]
        start = 0
        for (name, _), rows, res in zip(people, owners, results):
            vectors, jpegs = emb[start : start + len(rows)], thumbs[start : start + len(rows)]
            start += len(rows)
            if rows:
                res.added = self._write_person(name, rows, vectors, metadata.get(name), embedder, jpegs, found_by)
                res.duplicates += len(rows) - res.added
        return results

    @staticmethod
    def _one_face(got: ReadPhoto | Skipped, res: EnrollResult) -> Face | None:
        """The one face of an enrolment photo, or None with the photo counted as rejected (and warned)."""
        if isinstance(got, ReadPhoto):
            face = only_face(got.faces or [], Path(got.path))
            if face is not None:
                return face
            got = Skipped(got.path, InvalidInput(f"{got.path}: {not_one_face(got.faces or [])}"))
        else:
            warn_skip(Path(got.path), got.reason)
        res.rejected += 1
        res.problems.append(got)
        return None

    def _write_person(
        self,
        name: str,
        rows: list[tuple[str | None, str, str]],
        vectors: np.ndarray,
        metadata: dict | None,
        embedder: Embedder,
        thumbnails: list[bytes | None] | None = None,
        detector: dict | None = None,
    ) -> int:
        """One person's new photos in one transaction (identity, photos, embeddings, thumbnails, centroid);
        returns how many were added. Photos another process stored meanwhile are left out, not written
        twice."""
        before = self.store.generation()
        with self.store.transaction():
            self._record_model(embedder, vectors.shape[1])
            self._record_detector(detector)
            ident = self.store.identity_id(name)
            if ident is None:
                ident = self.store.add_identity(name, metadata)
            elif metadata:
                self.store.set_metadata(ident, metadata)
            stored = self.store.photo_hashes(ident)
            keep = [i for i, (_, sha, _) in enumerate(rows) if sha not in stored]
            jpegs = [thumbnails[i] for i in keep] if thumbnails else None
            self.store.add_photos(ident, [rows[i] for i in keep], vectors[keep], jpegs)
            self.store.update_centroid(ident)
        self._after_write(before, [ident])
        return len(keep)

    def enroll_faces(
        self,
        name: str,
        embeddings: np.ndarray,
        sources: Sequence[tuple[str | None, str]],
        fingerprint: str,
        detect: str = "auto",
        thumbnails: Sequence[bytes | None] | None = None,
        detector: dict | None = None,
    ) -> EnrollResult:
        """Add already-embedded faces of one person (e.g. a group from ``facegallery cluster``, or faces
        the HTTP service embedded): ``sources`` gives each face's photo path (None: not a file) and content
        hash, ``thumbnails`` optional JPEGs of the faces, ``detector`` the detector that found them (as
        :func:`~facegallery.detectors.describe` gives it). ``fingerprint`` is the model that made the
        embeddings: another model than the gallery's is refused, so that nothing mixes. A photo already
        stored for this person is skipped."""
        embedder = self.embedder
        if fingerprint != embedder.fingerprint:
            raise Conflict(
                f"these faces were embedded by another model ({fingerprint}) than {self.path}'s "
                f"{embedder.name} ({embedder.fingerprint}); group them again with --model {embedder.name}"
            )
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(sources):
            raise UserError(f"enroll_faces: {len(sources)} sources for embeddings of shape {embeddings.shape}")
        if thumbnails is not None and len(thumbnails) != len(sources):
            raise UserError(f"enroll_faces: {len(thumbnails)} thumbnails for {len(sources)} sources")
        res = EnrollResult(check_name(name))
        rows, keep, seen = [], [], set()
        for i, (source, sha) in enumerate(sources):
            if sha in seen:
                res.duplicates += 1
                continue
            seen.add(sha)
            rows.append((source, sha, detect))
            keep.append(i)
        if rows:
            jpegs = [thumbnails[i] for i in keep] if thumbnails is not None else None
            res.added = self._write_person(res.name, rows, embeddings[keep], None, embedder, jpegs, detector)
            res.duplicates += len(rows) - res.added
        return res

    def enroll_embeddings(self, names: Sequence[str], embeddings: np.ndarray, embedder: Embedder | None = None) -> int:
        """Bulk path: precomputed embeddings of new people (rows sharing a name are one person's photos),
        written in one transaction. ``embedder`` names the model that made them (default: the gallery's).
        Returns the number of people added."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(names):
            raise UserError(f"enroll_embeddings: {len(names)} names for embeddings of shape {embeddings.shape}")
        model = self._check_model(embedder) if embedder is not None else self.embedder
        dim = self.store.dimension
        if dim is not None and self.store.count("photos") and dim != embeddings.shape[1]:
            raise UserError(f"{self.path}: stores {dim}-d embeddings, not {embeddings.shape[1]}-d")
        with self.store.transaction():
            self._record_model(model, embeddings.shape[1])
            added = self.store.bulk_insert(list(names), embeddings)
        self.searcher.drop()  # rebuilt at the next search
        return added

    # ----- managing -------------------------------------------------------------------------------
    def people(self) -> list[Person]:
        """Everyone enrolled, sorted by name, with photo counts."""
        return self.store.people()

    def photos(self, name: str) -> list[StoredPhoto]:
        """One person's stored photos (source path or None, content sha256, detect mode)."""
        return self.store.photos(self.store.require_identity(name))

    def thumbnail(self, name: str, sha256: str | None = None) -> bytes | None:
        """A JPEG of one of the person's faces (of the photo ``sha256`` if given); None when the gallery
        holds none (photos enrolled before thumbnails were kept, or as bare embeddings)."""
        return self.store.thumbnail(self.store.require_identity(name), sha256)

    def remove(self, name: str, photo: str | os.PathLike | np.ndarray | None = None, sha256: str | None = None) -> int:
        """Remove a person, or only one of their photos: by path, by content if the file still exists,
        or by its content ``sha256`` (as :meth:`photos` lists it). Returns the number of photos removed."""
        ident = self.store.require_identity(name)
        before = self.store.generation()
        with self.store.transaction():
            if photo is None and sha256 is None:
                removed = len(self.store.photos(ident))
                self.store.delete_identity(ident)
            else:
                keys = [sha256] if sha256 is not None else []
                if isinstance(photo, np.ndarray):
                    keys.append(sha256_of(photo))
                elif photo is not None:
                    keys.append(str(Path(photo).resolve()))
                    if Path(photo).is_file():
                        keys.append(sha256_of(Path(photo).read_bytes()))
                hit = [p.id for p in self.store.photos(ident) if p.source in keys or p.sha256 in keys]
                if not hit:
                    raise NotFound(f"{photo if photo is not None else sha256}: not a stored photo of {name!r}")
                self.store.delete_photos(hit)
                self.store.update_centroid(ident)
                removed = len(hit)
        self._after_write(before, [ident])
        return removed

    def rename(self, old: str, new: str) -> None:
        """Rename a person (the new name must be free)."""
        new = check_name(new)
        ident = self.store.require_identity(old)
        if self.store.identity_id(new) is not None:
            raise Conflict(f"{new!r}: already enrolled in {self.path}")
        with self.store.transaction(bump=False):
            self.store.rename_identity(ident, new)

    def _after_write(self, before: int, changed: list[int]) -> None:
        """Our own write: the calibration is stale, the index follows (see ``LiveIndex.after_write``)."""
        self.thresholds.invalidate()
        self.searcher.after_write(before, changed)

    def search(self, embeddings: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(identity ids, :func:`~facegallery.recognition.centroid_distances`) of the k nearest centroids
        per row, nearest first; -1/inf pad."""
        return self.searcher.search(embeddings, k)

    # ----- threshold ------------------------------------------------------------------------------
    def calibration(self) -> th.Calibration:
        """The current calibration (cached in memory and in the gallery until it changes)."""
        return self.thresholds.current()

    def _model_threshold(self) -> float | None:
        """The model's own calibrated threshold, for galleries too small to calibrate."""
        try:
            return self.embedder.threshold
        except UserError:
            return None

    def set_threshold(self, far: float | None = None, raw: float | None = None, eer: bool = False) -> th.Calibration:
        """Choose how the unknown threshold is set: a target false-accept rate, the equal-error point,
        or a raw identification distance. Stored in the gallery; returns the resulting calibration."""
        return self.thresholds.choose(far, raw, eer)

    # ----- identify and verify --------------------------------------------------------------------
    def identify_embeddings(
        self, embeddings: np.ndarray, top_k: int = 5, threshold: float | None = None
    ) -> list[Identification]:
        """Identify precomputed embeddings (one per face) against the gallery."""
        # the index's length, not COUNT(*): that scans the table (20 ms at 100k people)
        if not len(self.searcher.current()):
            raise Conflict(f"{self.path}: no one is enrolled yet")
        ids, dist = self.searcher.search(embeddings, top_k)
        names = self.store.names_of(ids)
        cal = self.calibration().identify
        thr = cal.threshold if threshold is None else threshold
        scores = cal.score(dist[:, 0])
        out = []
        for row_ids, row_d, score in zip(ids, dist, scores):
            cands = [Candidate(names[int(i)], round(float(d), 6)) for i, d in zip(row_ids, row_d) if i >= 0]
            nearest = cands[0]
            out.append(
                Identification(
                    nearest.name if nearest.distance <= thr else None, nearest.distance, round(float(score), 6), cands
                )
            )
        return out

    def identify(
        self,
        images: ImageLike | Sequence[ImageLike],
        top_k: int = 5,
        threshold: float | None = None,
        detect: str = "auto",
    ) -> Identification | list[Identification]:
        """Who is in a photo (path or RGB array), or in each of a batch (list, or (N, H, W, 3)): its
        largest face under ``detect`` (as the CLI's; "off": the photo is a face crop). Every face of
        each photo, with boxes: :meth:`recognize`."""
        single = isinstance(images, (str, os.PathLike, bytes, PhotoBytes)) or (
            isinstance(images, np.ndarray) and images.ndim == 3
        )
        batch = [images] if single else list(images)
        res = self.identify_embeddings(self._embed_main_faces(batch, detect), top_k, threshold)
        return res[0] if single else res

    def _embed_main_faces(self, images: Sequence[ImageLike], detect: str) -> np.ndarray:
        """Embeddings of each photo's largest face; an unreadable photo, or one without a face, is an
        error (the caller chose it)."""
        faces, finder = [], self.finder(detect)
        for item in images:
            got = next(read_photos([item], finder))
            if isinstance(got, Skipped):
                raise got.error
            if not got.faces:
                where = "an array" if isinstance(item, np.ndarray) else photo_name(item)
                raise InvalidInput(f"{where}: no face found (detect={detect})")
            _emb().embed_faces(self.embedder, got.faces)  # all of them: the cache keeps whole photos
            finder.remember([got])
            faces.append(got.faces[0])
        return _emb().embed_faces(self.embedder, faces)

    def verify(self, a: ImageLike, b: ImageLike, detect: str = "auto") -> Verification:
        """Whether the largest faces of two photos show the same person, with the calibrated
        photo-vs-photo threshold."""
        ea, eb = self._embed_main_faces([a, b], detect)
        return self.verify_embeddings(ea, eb)

    def verify_embeddings(self, ea: np.ndarray, eb: np.ndarray) -> Verification:
        """:meth:`verify` for two precomputed face embeddings."""
        d = float(((np.asarray(ea) - np.asarray(eb)) ** 2).sum())
        fit = self.calibration().verify
        return Verification(d <= fit.threshold, round(d, 6), round(float(fit.score(d)), 6), fit.threshold)

    def recognize(
        self,
        photos: Sequence[ImageLike],
        top_k: int = 5,
        detect: str = "auto",
        threshold: float | None = None,
        progress: bool = False,
        max_pixels: int = MAX_PIXELS,
    ) -> Recognition:
        """Every face of every photo (files, folders, bytes, binary files, arrays) in the shared answer
        shape (:mod:`facegallery.answers`) with ``score`` per face, and the photos skipped with why
        (:func:`facegallery.pipeline.recognize`)."""
        thr = self.calibration().identify.threshold if threshold is None else threshold
        embedder = self.embedder
        return recognize(
            expand(photos),
            self.finder(detect),
            lambda faces: _emb().embed_faces(embedder, faces),
            lambda emb: self.identify_embeddings(emb, top_k, thr),
            max_pixels,
            progress,
        )

    # ----- export, import, re-embed ---------------------------------------------------------------
    def export_to(self, out: str | os.PathLike) -> Path:
        """Write a portable ``.npz`` (numeric arrays plus one JSON string; no pickle): embeddings,
        the person of each, and the people, photos and model as JSON. Refuses to overwrite."""
        out = Path(out)
        if out.exists():
            raise UserError(f"{out}: already exists (choose another name)")
        if not out.parent.is_dir():
            raise UserError(f"{out.parent}: no such folder for {out.name}")
        people = self.store.people()
        pos = {p.id: i for i, p in enumerate(people)}
        photos = self.store.photos()
        labels, emb = self.store.embeddings()
        info = {
            "format": EXPORT_FORMAT,
            "model_name": self.store.meta("model_name"),
            "model_ref": self.store.meta("model_ref"),
            "model_fingerprint": self.store.meta("model_fingerprint"),
            "dimension": self.store.dimension,
            "threshold": {k: self.store.meta(k) for k in ("threshold_mode", "target_far", "threshold_raw")},
            "people": [{"name": p.name, "metadata": p.metadata, "created": p.created} for p in people],
            "photos": [{"source": p.source, "sha256": p.sha256, "detect": p.detect} for p in photos],
        }
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

    def import_from(self, path: str | os.PathLike) -> list[EnrollResult]:
        """Merge an export into this gallery in one transaction (people by name; photos already stored
        are skipped, so importing twice changes nothing). The models must match, unless this gallery
        has no photos yet, in which case it adopts the export's model."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                emb, person, info = z["embeddings"], z["person"], json.loads(str(z["info"]))
            people, photos = info["people"], info["photos"]
            missing = [k for k in ("format", "model_name", "model_ref", "model_fingerprint") if k not in info]
            ok = (
                not missing
                and emb.ndim == 2
                and len(emb) == len(person) == len(photos)
                and (len(person) == 0 or 0 <= person.min() <= person.max() < len(people))
                and all(isinstance(p, dict) and "name" in p for p in people)
                and all(isinstance(p, dict) and "sha256" in p for p in photos)
            )
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"{path}: not a facegallery export ({e.__class__.__name__})") from None
        if not ok or info.get("format") != EXPORT_FORMAT:
            raise UserError(f"{path}: not a facegallery export (inconsistent arrays or format)")
        if not np.issubdtype(emb.dtype, np.floating) or not np.isfinite(emb).all():
            raise UserError(f"{path}: embeddings hold NaN, infinite or non-numeric values; nothing imported")
        if len(emb) and not np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3):
            raise UserError(
                f"{path}: embeddings are not unit vectors as every facegallery model's are; nothing imported"
            )
        dim = self.store.dimension
        if self.store.count("photos") and dim and emb.shape[1] != dim:
            raise UserError(f"{path}: {emb.shape[1]}-D embeddings, this gallery holds {dim}-D ones; nothing imported")
        if info.get("dimension") not in (None, emb.shape[1]):
            raise UserError(f"{path}: says {info['dimension']}-D embeddings but holds {emb.shape[1]}-D ones")
        for p in people:
            check_name(p["name"])
        mine = self.store.meta("model_fingerprint")
        if self.store.count("photos") and mine != info["model_fingerprint"]:
            raise UserError(
                f"{path}: made with model {info['model_name']} ({info['model_fingerprint']}), this "
                f"gallery uses {self.store.meta('model_name')} ({mine}); import into a new gallery "
                "and `facegallery reembed` it"
            )
        results = [EnrollResult(p["name"]) for p in people]
        before = self.store.generation()
        changed = []
        with self.store.transaction():
            for key in ("model_name", "model_ref", "model_fingerprint"):
                self.store.set_meta(key, info[key])
            self.store.set_meta("dimension", str(emb.shape[1]))
            for i, p in enumerate(people):
                rows = np.flatnonzero(person == i)
                ident = self.store.identity_id(p["name"])
                if ident is None:
                    ident = self.store.add_identity(p["name"], p["metadata"])
                known = self.store.photo_hashes(ident)
                new = [r for r in rows if photos[r]["sha256"] not in known]
                results[i].duplicates = len(rows) - len(new)
                results[i].added = len(new)
                if new:
                    self.store.add_photos(
                        ident, [(photos[r]["source"], photos[r]["sha256"], photos[r]["detect"]) for r in new], emb[new]
                    )
                    self.store.update_centroid(ident)
                    changed.append(ident)
        self._after_write(before, changed or [-1])
        self._embedder = None
        return results

    def reembed(
        self, model: str | os.PathLike | Embedder, drop_missing: bool = False, progress: bool = False
    ) -> ReembedReport:
        """Re-embed every stored photo from its source file with ``model`` and make it the gallery's model,
        in one transaction. Photos whose source is gone or changed (or that were enrolled from arrays)
        are reported; unless ``drop_missing`` nothing is changed then."""
        from tqdm import tqdm

        new = self._load(model)
        photos = self.store.photos()
        usable, missing = [], []
        for p in photos:
            if p.source is None or not Path(p.source).is_file():
                missing.append((p, "source gone" if p.source else "enrolled from an array"))
            elif sha256_of(Path(p.source).read_bytes()) != p.sha256:
                missing.append((p, "source changed since enrolment"))
            else:
                usable.append(p)
        faces_kept, kept = [], []
        bar = tqdm(total=len(usable), unit="photo", disable=not progress, dynamic_ncols=True, desc="reembed")
        for detect in sorted({p.detect for p in usable}):
            group = [p for p in usable if p.detect == detect]
            finder = Finder.of(new, detect, None if detect == "off" else self.detector, self.cache)
            for p, got in zip(group, read_photos([p.source for p in group], finder)):
                bar.update(1)
                faces = got.faces if isinstance(got, ReadPhoto) else None
                if faces is None or len(faces) != 1:
                    missing.append((p, "unreadable now" if faces is None else f"{len(faces)} faces now"))
                else:
                    faces_kept.append(faces[0])
                    kept.append(p)
        bar.close()
        for p, why in missing:
            warnings.warn(f"cannot re-embed {p.source or '<array>'} ({why})", stacklevel=2)
        if missing and not drop_missing:
            raise UserError(
                f"{self.path}: {len(missing)} photo(s) cannot be re-embedded (see warnings); "
                "nothing changed. Restore them, or pass --drop-missing to drop them"
            )
        emb = _emb().embed_faces(new, faces_kept) if faces_kept else np.zeros((0, 0), np.float32)
        self._model_arg = model
        with self.store.transaction():
            self.store.delete_photos([p.id for p, _ in missing])
            self.store.replace_embeddings([p.id for p in kept], emb)
            for key, value in (
                ("model_name", new.name),
                ("model_ref", _model_ref(model, new)),
                ("model_fingerprint", new.fingerprint),
            ):
                self.store.set_meta(key, value)
            if len(emb):
                self.store.set_meta("dimension", str(emb.shape[1]))
            for ident in {p.identity for p in photos}:
                self.store.update_centroid(ident)
        self._embedder = new
        self.thresholds.invalidate()
        self.searcher.drop()
        return ReembedReport(len(kept), [p.source or "<array>" for p, _ in missing])
