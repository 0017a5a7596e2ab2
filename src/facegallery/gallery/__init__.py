"""The persistent library of people: SQLite store, exact/FAISS search, per-gallery unknown threshold."""

from facegallery.gallery.gallery import EnrollResult, Gallery, Identification, Verification

__all__ = ["EnrollResult", "Gallery", "Identification", "Verification"]
