"""The one answer shape shared by the CLI, the Python API and the HTTP service:

{"path": str, "faces": [{"box": [x0, y0, x1, y1], "name": str | None, "distance": float,
                         "score": float (galleries), "candidates": [{"name", "distance"}, ...],
                         "landmarks", "detection_score", "detected" (when detection ran)}]}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegallery.faces import Face


def face_answer(
    face: Face,
    names: list[str],
    idx: np.ndarray,
    dist: np.ndarray,
    threshold: float | None,
    score: float | None = None,
    with_detection: bool = False,
) -> dict[str, Any]:
    """One face's answer from its top-k candidate indices/distances (nearest first).

    ``name`` is None (unknown) when the nearest distance exceeds ``threshold`` or there is no candidate.
    """
    cands = [{"name": names[int(i)], "distance": round(float(d), 6)} for i, d in zip(idx, dist)]
    nearest = cands[0] if cands else None
    known = nearest is not None and (threshold is None or nearest["distance"] <= threshold)
    out: dict[str, Any] = {
        "box": [round(float(v), 2) for v in face.box],
        "name": nearest["name"] if known else None,
        "distance": nearest["distance"] if nearest else None,
    }
    if score is not None:
        out["score"] = round(float(score), 6)
    out["candidates"] = cands
    if with_detection:
        out["landmarks"] = face.landmarks
        out["detection_score"] = face.detection_score
        out["detected"] = face.detected
    return out
