"""Re-embedding a gallery with another model: every stored photo read again from its source file,
embedded by the new model, and written with the model's record in one transaction.

Embedding takes minutes and holds no lock, so others may enrol or remove meanwhile: the write checks,
under the lock, that the gallery is still at the generation its photo list was read at; if not, the
photos added since are embedded too and the write is tried again, so no photo is left with the old
model's vectors.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facegallery.answers import Skipped
from facegallery.errors import Conflict, UserError
from facegallery.gallery.binding import model_ref
from facegallery.gallery.store import GalleryStore, Photo
from facegallery.images import ImageReadError, photo_bytes, sha256_of
from facegallery.pipeline import Finder, Progress, ReadPhoto, embed_photos

if TYPE_CHECKING:
    from facegallery.embedder import Embedder

#: Times the write is tried again when others keep writing meanwhile.
ATTEMPTS = 5


@dataclass
class ReembedReport:
    reembedded: int
    dropped: list[str] = field(default_factory=list)


class _Moved(Exception):
    """The gallery changed since its photos were listed (rolls the write back)."""


def _usable(p: Photo) -> str | None:
    """Why a stored photo cannot be read again, or None."""
    if p.source is None:
        return "enrolled from an array or upload"
    if not Path(p.source).exists():
        return "source gone"
    try:
        if sha256_of(photo_bytes(p.source)) != p.sha256:
            return "source changed since enrolment"
    except ImageReadError as e:
        return f"unreadable now ({Skipped(p.source, e).reason})"
    return None


def reembed(
    store: GalleryStore,
    new: Embedder,
    model: str | os.PathLike | Embedder,
    finder_of: Callable[[str], Finder],
    embed: Callable,
    drop_missing: bool = False,
    progress: Progress | None = None,
) -> tuple[ReembedReport, int]:
    """Re-embed every stored photo with ``new`` (loaded from ``model``) and make it the gallery's model.
    ``finder_of(detect)`` finds faces as each photo was enrolled. Photos whose source is gone or
    changed are reported (warnings); unless ``drop_missing`` nothing is changed then.
    Returns (report, the generation before the write)."""
    done: dict[int, np.ndarray] = {}
    missing: dict[int, tuple[Photo, str]] = {}
    for _ in range(ATTEMPTS):
        listed_at = store.generation()
        photos = store.photos()
        todo = [p for p in photos if p.id not in done and p.id not in missing]
        usable = []
        for p in todo:
            why = _usable(p)
            if why is None:
                usable.append(p)
            else:
                missing[p.id] = (p, why)
        for detect in sorted({p.detect for p in usable}):
            group = [p for p in usable if p.detect == detect]
            for p, got in zip(
                group, embed_photos([p.source for p in group], finder_of(detect), embed, "only", progress=progress)
            ):
                if isinstance(got, ReadPhoto):
                    done[p.id] = got.faces[0].embedding
                else:
                    missing[p.id] = (p, got.reason)
        current = {p.id for p in photos}
        lost = [(p, why) for i, (p, why) in missing.items() if i in current]
        for p, why in lost:
            warnings.warn(f"cannot re-embed {p.source or '<array>'} ({why})", stacklevel=3)
        if lost and not drop_missing:
            raise UserError(
                f"{store.name}: {len(lost)} photo(s) cannot be re-embedded (see warnings); nothing changed. "
                "Restore them, or pass --drop-missing to drop them"
            )
        kept = [p for p in photos if p.id in done]
        try:
            with store.transaction() as write:
                if write.before != listed_at:
                    raise _Moved
                store.delete_photos([p.id for p, _ in lost])
                if kept:
                    vectors = np.stack([done[p.id] for p in kept])
                    store.replace_embeddings([p.id for p in kept], vectors)
                    store.set_meta("dimension", str(vectors.shape[1]))
                store.set_meta("model_name", new.name)
                store.set_meta("model_ref", model_ref(model, new))
                store.set_meta("model_fingerprint", new.fingerprint)
                for ident in {p.identity for p in photos}:
                    store.update_centroid(ident)
        except _Moved:
            continue
        return ReembedReport(len(kept), [p.source or "<array>" for p, _ in lost]), write.before
    raise Conflict(f"{store.name}: others kept writing while it was re-embedded ({ATTEMPTS} tries); nothing changed")
