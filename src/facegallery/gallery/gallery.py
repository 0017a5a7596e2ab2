"""The library of people as a persistent product: enrol, identify, verify, manage, export.

A :class:`Gallery` is a thin front over the rooms that do the work: its
:mod:`~facegallery.gallery.store` (SQLite embedded), the model :mod:`~facegallery.gallery.binding`,
two-step :mod:`~facegallery.gallery.enrolment` (prepare without a lock, commit in one transaction per
person that re-reads what it depends on), the search :mod:`~facegallery.gallery.search` index, the
per-gallery :mod:`~facegallery.gallery.calibrated` threshold, :mod:`~facegallery.gallery.transfer`
(export/import) and :mod:`~facegallery.gallery.reembed`. Photos reach every route through
:func:`facegallery.pipeline.embed_photos`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facegallery.answers import Candidate, Identification, Recognition, Skipped, decide
from facegallery.datasets import discover
from facegallery.detectors import Detector, describe, load_detector
from facegallery.errors import Conflict, NotFound, UserError
from facegallery.facecache import FaceCache
from facegallery.gallery import enrolment, transfer
from facegallery.gallery import reembed as reembedding
from facegallery.gallery import threshold as th
from facegallery.gallery.binding import ModelBinding, embedder_module
from facegallery.gallery.calibrated import StoredCalibration
from facegallery.gallery.enrolment import EnrollResult, Prepared
from facegallery.gallery.reembed import ReembedReport
from facegallery.gallery.search import LiveIndex
from facegallery.gallery.store import GalleryStore, Person, check_name, open_store
from facegallery.gallery.store import Photo as StoredPhoto
from facegallery.images import MAX_PIXELS, ImageReadError, PhotoBytes, photo_bytes, photo_name, sha256_of, warn_skip
from facegallery.pipeline import BATCH, Embed, Finder, Progress, embed_photos, expand, recognize
from facegallery.pipeline import Photo as ImageLike

if TYPE_CHECKING:  # the embedder (PyTorch) loads on first use: `facegallery people` needs none of it
    from facegallery.embedder import Embedder

__all__ = ["EnrollResult", "Gallery", "Prepared", "ReembedReport", "Verification"]


@dataclass
class Verification:
    """Are two photos the same person?"""

    same: bool
    distance: float
    score: float
    threshold: float


class Gallery:
    """A persistent library of people (see module docstring). Open with :meth:`open`."""

    def __init__(
        self,
        store: GalleryStore,
        model: str | os.PathLike | Embedder | None,
        detector: str | Detector | None = None,
        cache: FaceCache | bool = True,
    ):
        self.store = store
        self.path = store.name
        self.binding = ModelBinding(store, model)
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
        """Open the gallery at ``path`` (created empty when missing only with ``create``; one that cannot
        be written opens read-only: reads work, writes raise :class:`~facegallery.errors.ReadOnly`).

        ``model``: shipped name, checkpoint folder or embedder; None uses the gallery's own model
        (loaded when first needed). A model other than the one that made the stored embeddings is
        refused; ``reembed`` converts the gallery. ``detector``: a name or a detector; None uses the
        one the gallery was enrolled with (else the default). ``cache``: the face cache (True: the
        user's, False: none).
        """
        g = cls(open_store(path, create=create), model, detector, cache)
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

    # ----- the model and the detector -------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use and checked against the stored embeddings' model."""
        return self.binding.embedder

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
        return enrolment.detectors(self.store)

    def finder(self, detect: str, embedder: Embedder | None = None) -> Finder:
        """How this gallery finds faces under ``detect``: the embedder (default its own), its detector,
        its face cache."""
        return Finder.of(embedder or self.embedder, detect, None if detect == "off" else self.detector, self.cache)

    def _embed(self, faces: list) -> np.ndarray:
        return embedder_module().embed_faces(self.embedder, faces)

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
        if _single(images):
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
        """Enrol several people; photos of many people are decoded and embedded in shared batches, and
        each person is written in its own transaction as soon as their photos are embedded."""
        from tqdm import tqdm

        self.store.check_writable()
        merged: dict[str, list[ImageLike]] = {}
        for name, images in people:  # a name given twice is one person
            merged.setdefault(check_name(name), []).extend(images)
        finder = self.finder(detect)
        results: list[EnrollResult] = []
        total = sum(len(imgs) for imgs in merged.values())
        with tqdm(total=total, unit="photo", disable=not progress, dynamic_ncols=True, desc="enrol") as bar:
            chunk: list[tuple[str, list[ImageLike]]] = []
            for i, person in enumerate(merged.items()):
                chunk.append(person)
                if sum(len(p) for _, p in chunk) >= BATCH or i == len(merged) - 1:
                    results += [self.commit(p) for p in self.prepare(chunk, finder, metadata, bar.update)]
                    chunk = []
        for res in results:
            for problem in res.problems:
                warn_skip(Path(problem.path), problem.reason)
        return results

    def prepare(
        self,
        people: Sequence[tuple[str, Sequence[ImageLike]]],
        finder: Finder,
        metadata: dict[str, dict] | None = None,
        progress: Progress | None = None,
        embed: Embed | None = None,
        max_pixels: int = MAX_PIXELS,
        choose: enrolment.Choose | None = None,
        skip_known: bool = True,
    ) -> list[Prepared]:
        """Enrolment's first step (:func:`~facegallery.gallery.enrolment.prepare`): each person's photos
        read, found and embedded (``embed``, default the gallery's embedder), without any lock."""
        found_by = describe(finder.detector) if finder.detect != "off" else None
        return list(
            enrolment.prepare(
                self.store,
                people,
                finder,
                embed or self._embed,
                found_by,
                metadata,
                max_pixels,
                progress,
                choose,
                skip_known,
            )
        )

    def commit(self, prep: Prepared, near: float | None = None) -> EnrollResult:
        """Enrolment's second step (:func:`~facegallery.gallery.enrolment.commit`): one person written in
        one transaction; the search index and calibration follow."""
        res, before, ident = enrolment.commit(self.store, self.binding, self.embedder, prep, near)
        if ident is not None:
            self._after_write(before, [ident])
        return res

    def enroll_faces(
        self,
        name: str,
        embeddings: np.ndarray,
        sources: Sequence[tuple[str | None, str]],
        fingerprint: str,
        detect: str = "auto",
        thumbnails: Sequence[bytes | None] | None = None,
        detector: dict | None = None,
        force: bool = False,
    ) -> EnrollResult:
        """Add already-embedded faces of one person (e.g. a group from ``facegallery cluster``):
        ``sources`` gives each face's photo path (None: not a file) and content hash, ``thumbnails``
        optional JPEGs of the faces, ``detector`` the detector that found them (as
        :func:`~facegallery.detectors.describe` gives it). ``fingerprint`` is the model that made the
        embeddings: another model than the gallery's is refused, so that nothing mixes. A photo already
        stored for this person is skipped. Faces whose mean lies beyond the unknown threshold from an
        existing person are refused (they look like someone else) unless ``force``."""
        self.store.check_writable()
        prep = enrolment.faces_of(name, embeddings, sources, fingerprint, detect, thumbnails, detector)
        near = None
        if not force and self.store.identity_id(prep.name) is not None:
            near = self.calibration().identify.threshold
        return self.commit(prep, near)

    def enroll_embeddings(self, names: Sequence[str], embeddings: np.ndarray, embedder: Embedder | None = None) -> int:
        """Bulk path: precomputed embeddings of new people (rows sharing a name are one person's photos),
        written in one transaction. ``embedder`` names the model that made them (default: the gallery's).
        Returns the number of people added."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(names):
            raise UserError(f"enroll_embeddings: {len(names)} names for embeddings of shape {embeddings.shape}")
        model = self.binding.check(embedder) if embedder is not None else self.embedder
        with self.store.transaction():
            dim = self.store.dimension
            if dim is not None and self.store.count("photos") and dim != embeddings.shape[1]:
                raise UserError(f"{self.path}: stores {dim}-d embeddings, not {embeddings.shape[1]}-d")
            self.binding.record(model, embeddings.shape[1], model)
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
        self.store.check_writable()
        keys = [sha256] if sha256 is not None else []
        if isinstance(photo, np.ndarray):
            keys.append(sha256_of(photo))
        elif photo is not None:
            keys.append(str(Path(photo).resolve()))
            if Path(photo).is_file():
                try:
                    keys.append(sha256_of(photo_bytes(photo)))
                except ImageReadError:  # not a photo one could have enrolled: matched by its path only
                    pass
        with self.store.transaction() as write:
            ident = self.store.require_identity(name)
            if photo is None and sha256 is None:
                removed = len(self.store.photos(ident))
                self.store.delete_identity(ident)
            else:
                hit = [p.id for p in self.store.photos(ident) if p.source in keys or p.sha256 in keys]
                if not hit:
                    raise NotFound(f"{photo if photo is not None else sha256}: not a stored photo of {name!r}")
                self.store.delete_photos(hit)
                self.store.update_centroid(ident)
                removed = len(hit)
        self._after_write(write.before, [ident])
        return removed

    def rename(self, old: str, new: str) -> None:
        """Rename a person (the new name must be free)."""
        new = check_name(new)
        with self.store.transaction(bump=False):
            ident = self.store.require_identity(old)
            if self.store.identity_id(new) is not None:
                raise Conflict(f"{new!r}: already enrolled in {self.path}")
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
        or a distance set by hand. Stored in the gallery; returns the resulting calibration."""
        return self.thresholds.choose(far, raw, eer)

    # ----- identify and verify --------------------------------------------------------------------
    def identify_embeddings(
        self, embeddings: np.ndarray, top_k: int = 5, threshold: float | None = None
    ) -> list[Identification]:
        """Identify precomputed embeddings (one per face) against the gallery."""
        embeddings = np.atleast_2d(np.asarray(embeddings, np.float32))
        # the index's length, not COUNT(*): that scans the table (20 ms at 100k people); its width, not the
        # stored dimension (a query): rows are searchable_centroids, two wider than the embeddings
        index = self.searcher.current()
        if not len(index):
            raise Conflict(f"{self.path}: no one is enrolled yet")
        if embeddings.shape[1] != index.dim - 2:
            raise Conflict(
                f"{self.path}: holds {index.dim - 2}-D embeddings, these faces have {embeddings.shape[1]}-D ones"
            )
        cal = self.calibration().identify
        thr = cal.threshold if threshold is None else threshold
        ids, dist, names = self._named_search(embeddings, top_k)
        scores = cal.score(dist[:, 0])
        out = []
        for row_ids, row_d, score in zip(ids, dist, scores):
            cands = [Candidate(names[int(i)], round(float(d), 6)) for i, d in zip(row_ids, row_d) if int(i) in names]
            if not cands:
                raise Conflict(f"{self.path}: no one is enrolled any more")
            out.append(decide(cands, thr, round(float(score), 6)))
        return out

    def _named_search(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """(ids, distances, names) of the k nearest people. A person removed by another process between
        the search and the name lookup makes the search run again on the index as it is now; one removed
        again in that instant is left out of the candidates (the answer stays right, only shorter)."""
        for _ in range(2):
            ids, dist = self.searcher.search(embeddings, k)
            names = self.store.names_of(ids)
            if all(int(i) in names for i in np.unique(ids) if i >= 0):
                break
            self.searcher.look_again()  # its removal may not have been announced yet
        return ids, dist, names

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
        single = _single(images)
        batch = [images] if single else list(images)
        res = self.identify_embeddings(self._embed_main_faces(batch, detect), top_k, threshold)
        return res[0] if single else res

    def _embed_main_faces(self, images: Sequence[ImageLike], detect: str) -> np.ndarray:
        """Embeddings of each photo's largest face; an unreadable photo, or one without a face, is an
        error (the caller chose it)."""
        out = []
        for item, got in zip(images, embed_photos(list(images), self.finder(detect), self._embed, "largest")):
            if isinstance(got, Skipped):
                where = "an array" if isinstance(item, np.ndarray) else photo_name(item)
                raise type(got.error)(f"{where}: {got.reason}")
            out.append(got.faces[0].embedding)
        return np.stack(out).astype(np.float32)

    def verify(self, a: ImageLike, b: ImageLike, detect: str = "auto") -> Verification:
        """Whether the largest faces of two photos show the same person, at the model's photo-vs-photo
        threshold (:mod:`~facegallery.gallery.threshold`: it does not depend on who is enrolled)."""
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
        return recognize(
            expand(photos),
            self.finder(detect),
            self._embed,
            partial(self.identify_embeddings, top_k=top_k, threshold=thr),
            max_pixels,
            progress,
        )

    # ----- export, import, re-embed ---------------------------------------------------------------
    def export_to(self, out: str | os.PathLike) -> Path:
        """Write a portable ``.npz`` (:mod:`~facegallery.gallery.transfer`). Refuses to overwrite."""
        return transfer.export_to(self.store, out)

    def import_from(self, path: str | os.PathLike) -> list[EnrollResult]:
        """Merge an export into this gallery in one transaction (people by name; photos already stored
        are skipped, so importing twice changes nothing). The models must match, unless this gallery
        has no photos yet, in which case it adopts the export's model."""
        self.store.check_writable()
        export = transfer.read_export(path)
        results, before, changed = transfer.import_into(self.store, export, str(path), self._export_dimension(export))
        self._after_write(before, changed or [-1])
        self.binding.forget()
        return results

    def _export_dimension(self, export: transfer.Export) -> int | None:
        """The dimension the export's model makes, where that model is this gallery's or can be loaded."""
        try:
            model = self.binding.load(export.model["model_ref"])
        except UserError:
            return None
        if model.fingerprint != export.model["model_fingerprint"]:
            return None
        return int(model.spec.get("embedding_dim", export.dimension))

    def reembed(
        self, model: str | os.PathLike | Embedder, drop_missing: bool = False, progress: bool = False
    ) -> ReembedReport:
        """Re-embed every stored photo from its source file with ``model`` and make it the gallery's model,
        in one transaction (:mod:`~facegallery.gallery.reembed`). Photos whose source is gone or changed
        (or that were enrolled from arrays) are reported; unless ``drop_missing`` nothing is changed then."""
        from tqdm import tqdm

        self.store.check_writable()
        new = self.binding.load(model)
        with tqdm(total=len(self.store.photos()), unit="photo", disable=not progress, desc="reembed") as bar:
            report, _ = reembedding.reembed(
                self.store,
                new,
                model,
                partial(self.finder, embedder=new),
                partial(embedder_module().embed_faces, new),
                drop_missing,
                bar.update,
            )
        self.binding.adopt(model, new)
        self.thresholds.invalidate()
        self.searcher.drop()
        return report


def _single(images: object) -> bool:
    """Whether ``images`` is one photo rather than a sequence of them."""
    return isinstance(images, (str, os.PathLike, bytes, PhotoBytes)) or (
        isinstance(images, np.ndarray) and images.ndim == 3
    )
