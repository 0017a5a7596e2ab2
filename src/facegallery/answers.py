"""The typed results shared by the CLI, the Python API and the HTTP service.

Per photo, one stable JSON shape::

    {"path": str, "faces": [{"box": [x0, y0, x1, y1], "name": str | None, "distance": float,
                             "score": float (galleries), "candidates": [{"name", "distance"}, ...],
                             "landmarks", "detection_score", "detected" (when detection ran)}]}

and per request a :class:`Recognition`: those answers plus the photos skipped, each with its reason and
the kind of error it was (:mod:`facegallery.errors`), so every interface reports them its own way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict

from facegallery.errors import UserError
from facegallery.faces import Face


class Candidate(NamedTuple):
    name: str
    distance: float


@dataclass
class Identification:
    """Who one face is: ``name`` None means unknown (nearest distance above the threshold). Distances are
    :func:`~facegallery.recognition.centroid_distances` to the people's centroids; ``score`` is the
    calibrated confidence (galleries: 0.5 at the threshold, see :mod:`facegallery.gallery.threshold`),
    else None."""

    name: str | None
    distance: float
    score: float | None
    candidates: list[Candidate]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distance": self.distance,
            "score": self.score,
            "candidates": [c._asdict() for c in self.candidates],
        }


def decide(candidates: list[Candidate], threshold: float | None, score: float | None = None) -> Identification:
    """The unknown rule, in one place: the nearest candidate's name when its distance is at most
    ``threshold`` (None: always), else unknown. ``candidates`` nearest first, at least one."""
    nearest = candidates[0]
    known = threshold is None or nearest.distance <= threshold
    return Identification(nearest.name if known else None, nearest.distance, score, candidates)


class CandidateAnswer(TypedDict):
    name: str
    distance: float


class FaceAnswer(TypedDict, total=False):
    box: list[float]
    name: str | None
    distance: float | None
    score: float
    candidates: list[CandidateAnswer]
    landmarks: list[list[float]] | None
    detection_score: float | None
    detected: bool


class PhotoAnswer(TypedDict):
    path: str
    faces: list[FaceAnswer]


def face_answer(face: Face, found: Identification, with_detection: bool = False) -> FaceAnswer:
    """One face's answer in the stable shape."""
    out: FaceAnswer = {
        "box": [round(float(v), 2) for v in face.box],
        "name": found.name,
        "distance": found.candidates[0].distance if found.candidates else None,
    }
    if found.score is not None:
        out["score"] = round(float(found.score), 6)
    out["candidates"] = [{"name": c.name, "distance": round(float(c.distance), 6)} for c in found.candidates]
    if with_detection:
        out["landmarks"] = face.landmarks
        out["detection_score"] = face.detection_score
        out["detected"] = face.detected
    return out


@dataclass
class Skipped:
    """A photo that could not be used, why, and the error it raised (its kind says how to report it)."""

    path: str
    error: UserError

    @property
    def reason(self) -> str:
        """The message without the photo's name in front."""
        text = str(self.error)
        return text.split(": ", 1)[1] if text.startswith(f"{self.path}: ") else text

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class Recognition:
    """The answers for the photos that could be read, in order, and the ones skipped. Iterating gives the
    answers (``for answer in lib.identify(paths)``)."""

    answers: list[PhotoAnswer] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def __iter__(self) -> Iterator[PhotoAnswer]:
        return iter(self.answers)

    def __len__(self) -> int:
        return len(self.answers)

    def __getitem__(self, i: int) -> PhotoAnswer:
        return self.answers[i]

    def as_dict(self) -> dict[str, Any]:
        return {"photos": self.answers, "skipped": [s.as_dict() for s in self.skipped]}
