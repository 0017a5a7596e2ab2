"""facegallery: FaceNet-style face recognition of a library of people.

    from facegallery import load_model, Library
    lib = Library.from_folder("people/", load_model())
    lib.identify(["photo.jpg"])

    with Gallery.open("people.db", create=True) as g:    # persistent, incremental
        g.enroll("Ada", ["ada1.jpg", "ada2.jpg"])
        g.identify("photo.jpg").name
"""
from facegallery.embedder import DEFAULT_MODEL, load_model
from facegallery.gallery import Gallery
from facegallery.library import Library

__all__ = ["DEFAULT_MODEL", "Gallery", "Library", "load_model"]
