"""Which model a gallery's embeddings come from, and keeping it that way.

A gallery records the model that made its embeddings (name, a reference to load it again with its
precision, its fingerprint, the dimension). :class:`ModelBinding` loads that model (or the one given),
refuses another model's embeddings, and records the model inside a write transaction, where it is
checked again under the lock: another process may have enrolled with another model, or re-embedded the
gallery, since this one loaded its embedder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegallery.errors import Conflict, UserError
from facegallery.gallery.store import GalleryStore

if TYPE_CHECKING:  # the embedder (PyTorch) loads on first use: `facegallery people` needs none of it
    from facegallery.embedder import Embedder


def embedder_module() -> Any:
    """:mod:`facegallery.embedder`, imported when first needed."""
    from facegallery import embedder

    return embedder


def model_ref(model: str | os.PathLike | Embedder, embedder: Embedder) -> str:
    """How to find the model again later: an absolute checkpoint path, or its (shipped) name, with the
    precision ``embedder`` runs at (``@int8``/``@fp32``) so that it reloads as the same network."""
    if not isinstance(model, (str, os.PathLike)):
        return getattr(model, "reference", model.name)
    base, _ = embedder_module().split_precision(model)
    ref = str(Path(base).resolve()) if Path(base).exists() else str(base)
    precision = getattr(embedder, "precision", None)
    return f"{ref}@{precision}" if precision else ref


class ModelBinding:
    """The model of one open gallery: ``embedder`` (loaded on first use and checked), ``load``,
    ``check`` and ``record`` (inside a write)."""

    def __init__(self, store: GalleryStore, model: str | os.PathLike | Embedder | None):
        self.store = store
        self.model = model
        self._embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use and checked against the stored embeddings' model."""
        if self._embedder is None:
            self._embedder = self.check(self.load(self.model))
        return self._embedder

    def forget(self) -> None:
        """Load the model again when next needed (the gallery's model may have changed)."""
        self._embedder = None

    def adopt(self, model: str | os.PathLike | Embedder, embedder: Embedder) -> None:
        """``embedder`` (loaded from ``model``) is the gallery's model from now on."""
        self.model, self._embedder = model, embedder

    def load(self, model: str | os.PathLike | Embedder | None) -> Embedder:
        """``model`` loaded (an embedder as is); None: the gallery's own."""
        if model is not None and not isinstance(model, (str, os.PathLike)):
            return model
        ref = self.store.meta("model_ref")
        if model is None and ref:
            # a reference without a precision predates int8 networks: its embeddings are float ones
            legacy = embedder_module().split_precision(ref)[1] == "auto" and self.store.count("photos")
            try:
                return embedder_module().load_model(ref, precision="fp32" if legacy else None)
            except UserError as e:
                raise UserError(f"{self.store.name}: cannot load its model {ref!r} ({e}); pass --model") from None
        return embedder_module().load_model(model)

    def check(self, embedder: Embedder) -> Embedder:
        """``embedder``, or a Conflict if the gallery holds another model's embeddings."""
        stored = self.store.meta("model_fingerprint")
        if stored and stored != embedder.fingerprint and self.store.count("photos"):
            raise Conflict(
                f"{self.store.name}: its embeddings come from model {self.store.meta('model_name')} ({stored}), "
                f"not {embedder.name} ({embedder.fingerprint}); convert them with "
                f"`facegallery reembed --gallery {self.store.name} "
                f"--model {model_ref(self.model or embedder, embedder)}`"
            )
        return embedder

    def record(self, embedder: Embedder, dim: int, model: str | os.PathLike | Embedder | None = None) -> None:
        """Inside a write: make ``embedder`` (loaded from ``model``, default this binding's) the gallery's
        model if it has none (or no photos); checked again here, under the write lock."""
        self.check(embedder)
        if self.store.meta("model_fingerprint") != embedder.fingerprint:
            source = model if model is not None else (self.model if self.model is not None else embedder)
            self.store.set_meta("model_name", embedder.name)
            self.store.set_meta("model_ref", model_ref(source, embedder))
            self.store.set_meta("model_fingerprint", embedder.fingerprint)
        if self.store.dimension != dim:
            self.store.set_meta("dimension", str(dim))
