"""facegallery: FaceNet-style face recognition of a library of people.

    from facegallery import load_model, Library
    lib = Library.from_folder("people/", load_model())
    lib.identify(["photo.jpg"])
"""
from facegallery.embedder import DEFAULT_MODEL, load_model
from facegallery.library import Library

__all__ = ["DEFAULT_MODEL", "Library", "load_model"]
