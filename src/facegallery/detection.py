"""Finding the faces of a photo: a detector (:mod:`facegallery.detectors`, chosen by the caller) gives
:class:`~facegallery.detectors.Detection` records, and each becomes a :class:`~facegallery.faces.Face`
whose crop is aligned into the embedder's template, here and nowhere else.

A face is aligned by dlib's 5-point shape predictor run in its box and, where the template places that
detector's points (YuNet's five in dlib's chip: eye centres, nose tip, mouth corners), by the
detector's own landmarks too: one similarity fitted to all of them (:func:`landmarks_of` says why).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facegallery.alignment import DLIB_5, PUBFIG83, Template, align_by
from facegallery.detectors import Detection, Detector, load_detector
from facegallery.errors import TooLarge, UserError
from facegallery.faces import Face, whole_faces
from facegallery.images import MAX_PIXELS, PhotoBytes, PhotoFile, load_image, photo_bytes, photo_name, upright_size

#: JPEG reductions libjpeg decodes at directly (draft mode).
REDUCTIONS = (1, 2, 4, 8)
#: A face is cut from pixels in which its box spans at least this fraction of the template's side
#: (a face box fills about 2/3 of dlib's chip and of a PubFig83 crop): never upsampled into its crop.
CHIP_FACE = 0.7

#: In ``auto`` mode an image without a detected face is taken whole as a face crop when neither side
#: exceeds this (a face crop such as PubFig83's 100x100); larger photos without a face give no face.
WHOLE_IMAGE_MAX_SIDE = 250


#: The shape predictor reads pixels near its box only: each face's is given the box and this many box
#: sides around it (its features lie well inside; tests/test_landmarks.py checks the points are equal).
AROUND = 1.0


def dlib_landmarks(pixels: np.ndarray, boxes: list) -> list[np.ndarray]:
    """dlib's 5 points of the face in each box, the predictor given only the part of the photo around
    the box (a 24 MP photo with three faces is not turned grey three times over)."""
    from facegallery.landmarks import shipped

    h, w = pixels.shape[:2]
    parts, local, offsets = [], [], []
    for x0, y0, x1, y1 in boxes:
        mx, my = AROUND * (x1 - x0), AROUND * (y1 - y0)
        left, top = min(max(0, int(x0 - mx)), w - 1), min(max(0, int(y0 - my)), h - 1)
        right, bottom = max(min(w, int(np.ceil(x1 + mx))), left + 1), max(min(h, int(np.ceil(y1 + my))), top + 1)
        parts.append(pixels[top:bottom, left:right])
        local.append((x0 - left, y0 - top, x1 - left, y1 - top))
        offsets.append((left, top))
    return [m + off for m, off in zip(shipped().predict_many(parts, local), offsets)]


def landmarks_of(
    pixels: np.ndarray, detections: list[Detection], detector: Detector, template: Template
) -> list[list[tuple[np.ndarray, str]]]:
    """The point sets each face is aligned by, each with its scheme: the detector's own where ``template``
    places them, and always dlib's shape predictor's in the face's box (mapped to the box convention that
    predictor was trained on where the detector frames faces otherwise: ``detector.dlib_box``).

    Why both for YuNet (RESULTS 14a): aligned by YuNet's five points alone, LFW scored 99.27% but PubFig83
    test's tight crops grouped worse (BCubed F1 0.952); by dlib's points in YuNet's box alone, 99.05% and
    0.9595; fitted to all ten, 99.20% and 0.964 (the MMOD port's pipeline in the same run: 99.25%)."""
    own = detector.landmark_scheme if template.places(detector.landmark_scheme) else None
    to_dlib = getattr(detector, "dlib_box", None)
    dlib_points = dlib_landmarks(pixels, [to_dlib(d.box) if to_dlib else d.box for d in detections])
    return [
        ([(d.landmarks, own)] if own is not None and d.landmarks is not None else []) + [(marks, DLIB_5)]
        for d, marks in zip(detections, dlib_points)
    ]


def aligned_faces(
    pixels: np.ndarray, detections: list[Detection], detector: Detector, template: Template
) -> list[Face]:
    """Each detection of ``pixels`` as a :class:`Face` aligned into ``template``, largest first; a face
    reports the detector's own landmarks where it placed some, else dlib's."""
    h, w = pixels.shape[:2]
    detections = sorted(detections, key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    faces = []
    for d, sets in zip(detections, landmarks_of(pixels, detections, detector, template)):
        marks, scheme = sets[0]
        faces.append(
            Face(
                crop=align_by(pixels, sets, template),
                box=[round(min(max(v, 0.0), float(side)), 2) for v, side in zip(d.box, (w, h, w, h))],
                template=template.name,
                detected=True,
                landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in marks],
                detection_score=round(d.score, 4),
                scheme=scheme,
            )
        )
    return faces


def detect_faces(
    pixels: np.ndarray, mode: str = "auto", detector: str | Detector | None = None, template: Template = PUBFIG83
) -> list[Face]:
    """Every face of an RGB uint8 photo, aligned into ``template`` (the embedder's), largest first.

    ``detector``: a name (:func:`~facegallery.detectors.load_detector`) or a detector; left out, the
    default (``FACEGALLERY_DETECTOR``, else ``yunet``). A face cut by the photo's border is reported with
    its box clipped to the photo. ``mode='on'``: only detected faces (maybe none). ``mode='auto'``: as
    'on', but an image no larger than :data:`WHOLE_IMAGE_MAX_SIDE` without a detected face is taken whole.
    """
    if mode not in ("auto", "on"):
        raise UserError(f"detection mode {mode!r}: use auto or on here")
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise UserError(f"expected an RGB uint8 image (H, W, 3), got {pixels.dtype} {pixels.shape}")
    h, w = pixels.shape[:2]
    if h * w > MAX_PIXELS:
        raise TooLarge(f"a {w}x{h} image is above the limit of {MAX_PIXELS:,} pixels")
    pixels = np.ascontiguousarray(pixels)
    det = load_detector(detector)
    faces = aligned_faces(pixels, det.detect(pixels), det, template)
    if not faces and mode == "auto" and max(h, w) <= WHOLE_IMAGE_MAX_SIDE:
        return whole_faces(pixels, template)
    return faces


def faces_in(
    pixels: np.ndarray, detect: str = "off", template: Template = PUBFIG83, detector: str | Detector | None = None
) -> list[Face]:
    """The faces of a decoded photo under a detection mode ("off": the whole image is one crop, aligned
    into ``template`` by the landmarks found where a PubFig83-framed crop holds the face)."""
    if detect == "off":
        return whole_faces(pixels, template)
    return detect_faces(pixels, detect, detector, template)


def read_faces(
    source: PhotoFile,
    detect: str = "off",
    template: Template = PUBFIG83,
    detector: str | Detector | None = None,
    max_pixels: int = MAX_PIXELS,
) -> list[Face]:
    """Decode a photo file (path, bytes or binary file; one-line :class:`~facegallery.images.ImageReadError`
    if it is not a picture) and return its faces.

    A JPEG is decoded only as large as the detector scans it (libjpeg's draft mode: 1/2, 1/4 or 1/8 of
    its size; a 24 MP photo costs a fraction of its full decode), then the faces are cut from a decode
    fine enough that none is upsampled into its crop (:data:`CHIP_FACE`): the same decode when the faces
    are large, full resolution for small ones. Boxes and landmarks are in the full photo's pixels."""
    if detect == "off":
        return whole_faces(load_image(source, max_pixels), template)
    det = load_detector(detector)
    data = photo_bytes(source)
    named = PhotoBytes(photo_name(source), data)
    size = upright_size(data)
    if size is None or not size[2] or size[0] * size[1] > max_pixels:  # not a JPEG, or load_image refuses it
        return detect_faces(load_image(named, max_pixels), detect, det, template)
    w, h = size[:2]
    scan = det.scan_scale(h, w)
    reduce = max(r for r in REDUCTIONS if scan * r <= 1.0 or r == 1)
    pixels = load_image(named, max_pixels, reduce)
    if pixels.shape[1] == w:  # not reduced after all
        return detect_faces(pixels, detect, det, template)
    fx, fy = w / pixels.shape[1], h / pixels.shape[0]
    found = [d.scaled(fx, fy) for d in det.detect(pixels, 1.0 / fx)]
    if not found:
        return []  # a photo reduced for scanning is larger than a whole-crop 'auto' image
    smallest = min(min(d.box[2] - d.box[0], d.box[3] - d.box[1]) for d in found)
    fine = max(r for r in REDUCTIONS if r == 1 or (r <= reduce and smallest / r >= CHIP_FACE * template.size))
    if fine != reduce:
        pixels = load_image(named, max_pixels, fine)
        fx, fy = w / pixels.shape[1], h / pixels.shape[0]
    faces = aligned_faces(pixels, [d.scaled(1 / fx, 1 / fy) for d in found], det, template)
    for f in faces:
        f.box = [round(min(v * k, side), 2) for v, k, side in zip(f.box, (fx, fy, fx, fy), (w, h, w, h))]
        f.landmarks = [[round(x * fx, 2), round(y * fy, 2)] for x, y in f.landmarks or []]
    return faces


# ----- drawing ---------------------------------------------------------------------------------


def draw_faces(pixels: np.ndarray, faces: list[dict]) -> Image.Image:
    """The photo with each answered face's box, landmarks and name (or 'unknown') drawn on it."""
    im = Image.fromarray(pixels)
    draw = ImageDraw.Draw(im)
    side = max(im.size)
    width = max(2, side // 300)
    font = ImageFont.load_default(size=max(12, side // 45))
    for f in faces:
        known = f.get("name") is not None
        colour = (40, 220, 60) if known else (255, 60, 40)
        x0, y0, x1, y1 = f["box"]
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        for x, y in f.get("landmarks") or []:
            draw.ellipse([x - width, y - width, x + width, y + width], fill=colour)
        label = f["name"] if known else "unknown"
        if f.get("distance") is not None:
            label += f" {f['distance']:.2f}"
        tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), label, font=font)
        ty = y0 - (ty1 - ty0) - 2 * width if y0 - (ty1 - ty0) - 2 * width >= 0 else y1
        draw.rectangle([x0, ty, x0 + tx1 - tx0 + 2 * width, ty + ty1 - ty0 + 2 * width], fill=colour)
        draw.text((x0 + width - tx0, ty + width - ty0), label, fill=(0, 0, 0), font=font)
    return im
