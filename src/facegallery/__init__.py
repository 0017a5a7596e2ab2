"""facegallery: FaceNet-style face recognition of a library of people.

from facegallery import load_model, load_detector, Library
lib = Library.from_folder("people/", load_model())
lib.identify(["photo.jpg"])
lib = Library.from_folder("people/", load_model(), detector=load_detector("mmod", min_face=40))

with Gallery.open("people.db", create=True) as g:    # persistent, incremental
    g.enroll("Ada", ["ada1.jpg", "ada2.jpg"])
    g.identify("photo.jpg").name

groups = cluster(["pile/"])                        # unlabelled photos -> groups of one person each
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DEFAULT_MODEL", "FaceCache", "Gallery", "Library", "cluster", "load_detector", "load_model"]
#: Where each public name lives; imported on first use, so that ``facegallery --help`` and the light
#: commands start without PyTorch.
_HOMES = {
    "DEFAULT_MODEL": "facegallery.embedder",
    "load_model": "facegallery.embedder",
    "Gallery": "facegallery.gallery",
    "Library": "facegallery.library",
    "cluster": "facegallery.grouping",
    "load_detector": "facegallery.detectors",
    "FaceCache": "facegallery.facecache",
}

if TYPE_CHECKING:
    from facegallery.detectors import load_detector
    from facegallery.embedder import DEFAULT_MODEL, load_model
    from facegallery.facecache import FaceCache
    from facegallery.gallery import Gallery
    from facegallery.grouping import cluster
    from facegallery.library import Library


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'facegallery' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
