"""The gallery's calibration, kept in its store: the chosen rule (target FAR, equal error, or a raw
threshold), and the :class:`~facegallery.gallery.threshold.Calibration` computed for the gallery as it
is, cached in memory and in the gallery's meta until the gallery, the rule or
:data:`~facegallery.gallery.threshold.VERSION` changes. The arithmetic is
:mod:`facegallery.gallery.threshold`'s; this piece chooses what to feed it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from facegallery.errors import InvalidInput, ReadOnly
from facegallery.gallery import threshold as th
from facegallery.gallery.store import GalleryStore


class StoredCalibration:
    """``current()`` calibration of a gallery; ``choose()`` its rule. ``search(q, k)`` searches its
    centroids; ``model_threshold()`` is the model's own threshold (the fallback for small galleries)."""

    def __init__(self, store: GalleryStore, search: th.Search, model_threshold: Callable[[], float | None]):
        self.store, self.search, self.model_threshold = store, search, model_threshold
        self._cal: th.Calibration | None = None
        self._version = -1  # the store's data version when ``_cal`` was last checked

    def invalidate(self) -> None:
        """Forget the in-memory calibration (the gallery changed)."""
        self._cal = None

    def settings(self) -> tuple[float | None, float | None]:
        """(target FAR or None for equal-error, raw threshold or None) from meta."""
        mode = self.store.meta("threshold_mode", "far")
        far = float(self.store.meta("target_far", str(th.DEFAULT_FAR)))
        raw = self.store.meta("threshold_raw")
        return (None if mode == "eer" else far), (float(raw) if mode == "raw" and raw else None)

    @staticmethod
    def _raw_of(cal: th.Calibration) -> float | None:
        return cal.identify.threshold if cal.method == "raw" else None

    def current(self) -> th.Calibration:
        """The current calibration, cached in memory and in meta until the gallery (or :data:`th.VERSION`)
        changes. While no one else has written (the store's data version) and we have not, the one in
        memory is returned without a query."""
        version = self.store.data_version()
        if self._cal is not None and version == self._version:
            return self._cal
        gen = self.store.generation()
        far, raw = self.settings()
        method = "raw" if raw is not None else ("eer" if far is None else f"far={far:g}")
        key = (gen, method, raw)
        if self._cal is not None and (self._cal.generation, self._cal.method, self._raw_of(self._cal)) == key:
            self._version = version
            return self._cal
        cached = self.store.meta("calibration")
        cal = th.Calibration.from_json(json.loads(cached)) if cached else None
        if cal is None or (cal.generation, cal.method, self._raw_of(cal)) != key:
            cal = self._calibrate(far, raw)
            cal.generation = gen
            try:
                with self.store.transaction(bump=False):
                    self.store.set_meta("calibration", json.dumps(cal.to_json()))
            except ReadOnly:
                pass  # recomputed next time
        self._cal, self._version = cal, version
        return cal

    def _calibrate(self, far: float | None, raw: float | None) -> th.Calibration:
        """Calibrate on whole people drawn at random (seeded) up to ``th.MAX_SAMPLES`` photos."""
        if self.store.count("centroids") <= th.MAX_SAMPLES:
            people = self.store.centroids()
        else:  # large: sample people first, then read only theirs
            all_ids = np.array(self.store.identity_ids())
            people = self.store.centroids(np.random.default_rng(0).permutation(all_ids)[: th.MAX_SAMPLES // 2].tolist())
        total = self.store.count("centroids")
        cent = {int(i): (int(n), v) for i, n, v in zip(people.ids, people.counts, people.vectors)}
        order = np.random.default_rng(0).permutation(sorted(cent))
        chosen, photos = [], 0
        for ident in order:
            if photos >= th.MAX_SAMPLES:
                break
            chosen.append(int(ident))
            photos += cent[ident][0]
        labels, emb = self.store.embeddings(chosen) if chosen else (np.zeros(0, np.int64), np.zeros((0, 0)))
        model_thr = self.model_threshold()
        if not len(emb):
            return th.calibrate(emb, labels, emb, np.zeros(0), self.search, total, model_thr, far, raw)
        own_c = np.stack([cent[int(l)][1] for l in labels])
        own_n = np.array([cent[int(l)][0] for l in labels])
        return th.calibrate(emb, labels, own_c, own_n, self.search, total, model_thr, far, raw)

    def choose(self, far: float | None = None, raw: float | None = None, eer: bool = False) -> th.Calibration:
        """Choose how the unknown threshold is set: a target false-accept rate, the equal-error point,
        or a raw identification distance. Stored in the gallery; returns the resulting calibration."""
        if sum(x is not None and x is not False for x in (far, raw, eer or None)) != 1:
            raise InvalidInput("give exactly one of a target FAR, a raw threshold, or equal-error")
        if far is not None and not 0 < far < 1:
            raise InvalidInput(f"{far}: a target false-accept rate must be between 0 and 1")
        if raw is not None and not 0 <= raw <= 4:
            raise InvalidInput(f"{raw}: a squared distance between unit vectors lies in [0, 4]")
        self.store.check_writable()
        seen = self.current().identify.impostors
        if far is not None and seen and far < th.far_floor(seen) / th.EXTRAPOLATE_MAX:
            raise InvalidInput(
                f"{far:g}: a target FAR this small cannot be told from zero with the gallery's {seen} impostor "
                f"distances (the smallest it can measure is {th.far_floor(seen):.2g}, extrapolated "
                f"{th.EXTRAPOLATE_MAX:g}x below at most); choose a larger one"
            )
        with self.store.transaction(bump=False):
            self.store.set_meta("threshold_mode", "eer" if eer else ("raw" if raw is not None else "far"))
            if far is not None:
                self.store.set_meta("target_far", repr(far))
            if raw is not None:
                self.store.set_meta("threshold_raw", repr(raw))
        self._cal = None
        return self.current()
