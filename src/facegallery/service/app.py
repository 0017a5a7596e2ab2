"""The HTTP edge: a FastAPI application over one loaded model and one gallery.

Requests share the model and the gallery. Decoding and detection run on the server's worker threads
(FastAPI runs these plain ``def`` endpoints off the event loop); faces are embedded by one
:class:`~facegallery.service.batching.EmbedBatcher`, which batches concurrent requests; every touch of
the gallery (search, calibration, writes) holds one lock, so SQLite writes are serialised and each stays
one transaction (the gallery is in WAL mode: other processes may read it meanwhile; in PostgreSQL, other
replicas share it). User errors become JSON ``{"error": "<one line>"}`` with 403 / 404 / 409 / 413 / 422,
503 while the gallery's database cannot be reached (:mod:`facegallery.errors`); nothing a client
sends is a 500.
"""

import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, File, Form, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StrictBool, StrictFloat
from starlette.exceptions import HTTPException as StarletteHTTPException

from facegallery.answers import Skipped
from facegallery.detectors import Detector, describe
from facegallery.embedder import embed_faces
from facegallery.errors import Conflict, InvalidInput, NotFound, ReadOnly, TooLarge, Unavailable, UserError
from facegallery.faces import Face, face_at, not_one_face
from facegallery.gallery import Gallery
from facegallery.gallery.postgres import is_url, public_url
from facegallery.gallery.store import check_name
from facegallery.images import PhotoBytes, upright_size
from facegallery.pipeline import Finder, default_workers, embed_photos, recognize
from facegallery.service.auth import KeyRing
from facegallery.service.batching import EmbedBatcher
from facegallery.service.limits import BodyLimit

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
#: Error kind -> HTTP status; the first match wins (an image over the pixel limit is TooLarge first).
STATUS = (
    (Unavailable, 503),
    (NotFound, 404),
    (Conflict, 409),
    (ReadOnly, 403),
    (TooLarge, 413),
    (InvalidInput, 422),
    (UserError, 400),
)
Detect = Literal["auto", "on", "off"]


@dataclass
class ServiceConfig:
    """What ``facegallery serve`` sets; every limit is configurable."""

    gallery: Path | str  # a gallery file, or a PostgreSQL URL
    model: str | None = None
    keys: KeyRing | None = None  # None: reads open, writes refused
    open_reads: bool = False  # with keys: reads need none
    max_upload_bytes: int = 10_000_000
    max_request_bytes: int = 50_000_000
    max_photos: int = 16
    max_pixels: int = 25_000_000  # per photo
    max_request_pixels: int = 100_000_000  # all photos of one request together, from their headers
    max_batch: int = 64  # faces per forward pass; 0: each request embeds its own faces
    create: bool = False
    detector: str | Detector | None = None  # None: the gallery's own, else the default
    detect_workers: int = 0  # photos decoded and detected at once, over all requests; 0: one per core


def status_of(error: UserError) -> int:
    """The HTTP status a user error is answered with."""
    return next(code for kind, code in STATUS if isinstance(error, kind))


class PathScrubber:
    """Takes the server's own filesystem paths out of messages before they are sent: the gallery's path
    (as given, absolute and resolved) becomes "the gallery", its folder "the gallery's folder", a model
    folder given as a path "the model". Messages from the gallery layer name the file they concern; a
    client must not learn where the server keeps it."""

    def __init__(self, gallery: str | os.PathLike, model: str | None = None):
        said: dict[str, str] = {}

        def add(path: Path, what: str, given_too: bool = True) -> None:
            forms = {os.path.abspath(path), str(path.resolve())} | ({str(path)} if given_too else set())
            for form in forms:
                if form.strip(os.sep + ".") and form not in said:
                    said[form] = what

        if is_url(gallery):  # a database: its URL (with and without the password) is "the gallery"
            for form in {str(gallery), public_url(str(gallery))}:
                said[form] = "the gallery"
        else:
            gallery = Path(gallery)
            add(gallery, "the gallery")
            for folder in (Path(os.path.abspath(gallery)).parent, gallery.resolve().parent):
                add(folder, "the gallery's folder", given_too=False)  # a relative folder ("data") is a word too
        if model and (os.sep in model or Path(model).exists()):
            add(Path(model), "the model")
        forms = sorted(said, key=len, reverse=True)  # longest first: a file before its folder
        # a path only where it stands whole: not inside a longer name ("big.db" keeps its "g.db")
        self.pattern = re.compile("|".join(rf"(?<![\w.\-/]){re.escape(f)}(?![\w\-]|\.\w)" for f in forms))
        self.said = said

    def __call__(self, message: str) -> str:
        """``message`` with every known server path replaced by what it is."""
        return self.pattern.sub(lambda m: self.said[m.group(0)], message)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Service:
    """The shared state: the gallery, its model, the batcher and the gallery lock."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.gallery = Gallery.open(config.gallery, model=config.model, create=config.create, detector=config.detector)
        self.embedder = self.gallery.embedder  # loaded now, not on the first request
        self.detector = self.gallery.detector
        # every request's photos are decoded and detected on one bounded pool: a burst of requests
        # queues for it instead of running dozens of detections at once
        self.pool = ThreadPoolExecutor(config.detect_workers or default_workers(), thread_name_prefix="detect")
        self.lock = threading.Lock()
        self.batcher = EmbedBatcher(self._embed_direct, config.max_batch) if config.max_batch > 0 else None

    def _embed_direct(self, faces: list[Face]):
        return embed_faces(self.embedder, faces)

    def embed(self, faces: list[Face]):
        return self.batcher.embed(faces) if self.batcher else self._embed_direct(faces)

    def finder(self, detect: str) -> Finder:
        """How this server finds faces under ``detect``: on the bounded pool, through the face cache."""
        finder = self.gallery.finder(detect)
        finder.pool = self.pool
        return finder

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.batcher:
            self.batcher.close()
        with self.lock:
            self.gallery.close()

    # ----- reading uploads ------------------------------------------------------------------------
    def uploads(self, files: list[UploadFile]) -> list[PhotoBytes]:
        """The uploaded photos as named bytes, within the photo-count and per-upload limits."""
        if len(files) > self.config.max_photos:
            raise TooLarge(f"{len(files)} photos in one request; the limit is {self.config.max_photos}")
        out = []
        for i, f in enumerate(files):
            name = f.filename or f"photo {i + 1}"
            data = f.file.read(self.config.max_upload_bytes + 1)
            if len(data) > self.config.max_upload_bytes:
                raise TooLarge(f"{name}: upload above the limit of {self.config.max_upload_bytes:,} bytes")
            out.append(PhotoBytes(name, data))
        self._check_request_pixels(out)
        return out

    def _check_request_pixels(self, photos: list[PhotoBytes]) -> None:
        """Refuse a request whose photos hold more than ``max_request_pixels`` together (read from their
        headers, before anything is decoded): decoding and detection cost grows with pixels, and one
        request must not hold the server for long. A photo above the per-photo limit, or without a
        readable header, is refused on its own later and is not counted."""
        limit, total = self.config.max_request_pixels, 0
        for photo in photos:
            size = upright_size(photo.data)
            if size is not None and size[0] * size[1] <= self.config.max_pixels:
                total += size[0] * size[1]
        if total > limit:
            raise TooLarge(
                f"{len(photos)} photos of {total:,} pixels in all: above the limit of {limit:,} pixels per "
                "request; send fewer or smaller photos per request"
            )

    def main_face(self, photo: PhotoBytes, detect: str) -> Face:
        """The largest face of one photo, embedded, or the photo's error."""
        finder = self.finder(detect)
        (got,) = embed_photos([photo], finder, self.embed, "largest", max_pixels=self.config.max_pixels)
        if isinstance(got, Skipped):
            raise got.error
        return got.faces[0]


def _first_error(skipped: list[Skipped]) -> UserError:
    return skipped[0].error


class Rename(BaseModel):
    name: str = Field(description="The new name (must be free).")


class ThresholdRule(BaseModel):
    """Exactly one of: a target false-accept rate, a raw identification distance, or the equal-error point."""

    far: StrictFloat | None = Field(None, description="Target false-accept rate, 0 < far < 1.")
    distance: StrictFloat | None = Field(None, description="Raw squared distance threshold, 0..4.")
    eer: StrictBool = Field(False, description="Use the equal-error point.")


def _person(p: Any) -> dict[str, Any]:
    return {"name": p.name, "photos": p.photos, "created": p.created}


def create_app(config: ServiceConfig) -> FastAPI:
    """The application; the gallery and model are opened at start-up and closed at shutdown."""
    service: dict[str, Service] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service["s"] = Service(config)
        try:
            yield
        finally:
            service.pop("s").close()

    app = FastAPI(
        title="facegallery",
        version=package_version("facegallery"),
        description="Face recognition of a library of people: identify, verify, enrol, manage.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/v1/openapi.json",
    )
    app.add_middleware(BodyLimit, max_bytes=config.max_request_bytes)
    scrub = PathScrubber(config.gallery, config.model)

    def svc() -> Service:
        return service["s"]

    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from `facegallery key`.")

    def read_access(key: Annotated[str | None, Security(key_header)]) -> None:
        if config.keys is None or config.open_reads:
            return
        if config.keys.check(key) is None:
            raise _Refused(401, "missing or wrong API key (send it in the X-API-Key header)")

    def write_access(key: Annotated[str | None, Security(key_header)]) -> None:
        if config.keys is None:
            raise _Refused(403, "writes are disabled: this server was started without --api-key-file")
        if config.keys.check(key) is None:
            raise _Refused(401, "missing or wrong API key (send it in the X-API-Key header)")

    Reader = Depends(read_access)
    Writer = Depends(write_access)

    # ----- errors ---------------------------------------------------------------------------------
    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return _error(status_of(exc), scrub(str(exc)))

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return _error(422, scrub(f"{where or 'request'}: {first.get('msg', 'invalid request')}"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, scrub(str(exc.detail)))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal error")

    # ----- health, version, docs ------------------------------------------------------------------
    @app.get("/v1/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness: the model is loaded and the gallery open."""
        return {"status": "ok"}

    @app.get("/v1/version", tags=["service"])
    def version() -> dict[str, Any]:
        """The software, the model and the detector this server answers with."""
        e = svc().embedder
        return {
            "facegallery": package_version("facegallery"),
            "model": e.name,
            "fingerprint": e.fingerprint,
            "detector": describe(svc().detector),
        }

    docs_assets = _docs_assets()

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI 5 (it reads the OpenAPI 3.1 schema), served from this server: nothing is fetched
        from elsewhere, and no validator badge is asked of the internet."""
        if docs_assets is None:
            raise _Refused(503, "the API docs need the fastapi-offline package (pip install 'facegallery[service]')")
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="facegallery API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    # ----- recognition ----------------------------------------------------------------------------
    @app.post("/v1/identify", tags=["recognition"], dependencies=[Reader])
    def identify(
        photos: Annotated[list[UploadFile], File(description="One or more photos.")],
        top_k: Annotated[int, Query(ge=1, le=100, description="Candidates per face.")] = 5,
        detect: Annotated[
            Detect,
            Query(
                description="auto: find faces, a small crop without one is taken whole; "
                "on: only found faces; off: each photo is a face crop."
            ),
        ] = "auto",
    ) -> dict[str, Any]:
        """Who is in each photo: every face with its box, name (null: unknown), distance, score and
        candidates; photos that could not be read are listed under ``skipped`` with why."""
        s = svc()
        uploads = s.uploads(photos)

        def match(emb):
            with s.lock:
                return s.gallery.identify_embeddings(emb, top_k)

        found = recognize(uploads, s.finder(detect), s.embed, match, s.config.max_pixels)
        if not found.answers and found.skipped:
            raise _first_error(found.skipped)
        return found.as_dict()

    @app.post("/v1/verify", tags=["recognition"], dependencies=[Reader])
    def verify(
        a: Annotated[UploadFile, File(description="The first photo.")],
        b: Annotated[UploadFile, File(description="The second photo.")],
        detect: Annotated[Detect, Query()] = "auto",
    ) -> dict[str, Any]:
        """Do two photos show the same person? Their largest faces, at the model's photo-vs-photo
        threshold (it does not depend on who is enrolled)."""
        s = svc()
        pa, pb = s.uploads([a, b])
        ea, eb = s.main_face(pa, detect).embedding, s.main_face(pb, detect).embedding
        with s.lock:
            v = s.gallery.verify_embeddings(ea, eb)
        return {"same": v.same, "distance": v.distance, "score": v.score, "threshold": v.threshold}

    # ----- people ---------------------------------------------------------------------------------
    @app.get("/v1/people", tags=["people"], dependencies=[Reader])
    def people() -> dict[str, Any]:
        """Everyone enrolled, by name, with photo counts."""
        s = svc()
        with s.lock:
            return {"people": [_person(p) for p in s.gallery.people()]}

    @app.get("/v1/people/{name}", tags=["people"], dependencies=[Reader])
    def person(name: str) -> dict[str, Any]:
        """One person and their photos (content sha256 and detection mode each)."""
        s = svc()
        with s.lock:
            name = check_name(name)
            p = next((p for p in s.gallery.people() if p.name == name), None)
            if p is None:
                raise NotFound(f"{name!r}: no such person")
            photos = [{"sha256": ph.sha256, "detect": ph.detect} for ph in s.gallery.photos(name)]
        return {**_person(p), "photo_list": photos}

    @app.get(
        "/v1/people/{name}/thumbnail",
        tags=["people"],
        dependencies=[Reader],
        responses={200: {"content": {"image/jpeg": {}}, "description": "A JPEG of one of their faces."}},
        response_class=Response,
    )
    def thumbnail(name: str, photo: Annotated[str | None, Query(description="A photo's sha256.")] = None):
        """A small JPEG of one of the person's faces (of one photo, with ``photo``)."""
        s = svc()
        with s.lock:
            jpeg = s.gallery.thumbnail(check_name(name), photo)
        if jpeg is None:
            raise NotFound(f"{name!r}: no thumbnail stored")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/people/{name}/photos", tags=["people"], dependencies=[Writer], status_code=201)
    def enroll(
        name: str,
        response: Response,
        photos: Annotated[list[UploadFile], File(description="Photos of this one person.")],
        detect: Annotated[Detect, Query()] = "auto",
        box: Annotated[
            str | None,
            Form(
                description="x0,y0,x1,y1: enrol the face at this box (as /v1/identify answered it) "
                "in a photo of several people."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Enrol photos under a name (the person is created if new). Each photo must show one face, or
        ``box`` says which; photos already stored are counted as duplicates. 201 when something was
        added, 200 when everything was there already."""
        s = svc()
        name = check_name(name)
        where = _parse_box(box)
        uploads = s.uploads(photos)
        choose = partial(_enrolment_face, box=where)
        (prep,) = s.gallery.prepare(
            [(name, uploads)],
            s.finder(detect),
            embed=s.embed,
            max_pixels=s.config.max_pixels,
            choose=choose,
            skip_known=False,  # the store is read under the lock only: commit counts duplicates
        )
        problems = prep.result.problems
        if not prep.rows:
            raise problems[0].error
        with s.lock:
            res = s.gallery.commit(prep)
        if not res.added:
            response.status_code = 200
        return {
            "name": res.name,
            "added": res.added,
            "duplicates": res.duplicates,
            "rejected": len(problems),
            "problems": [p.as_dict() for p in problems],
        }

    @app.patch("/v1/people/{name}", tags=["people"], dependencies=[Writer])
    def rename(name: str, body: Rename) -> dict[str, Any]:
        """Rename a person (409 if the new name is taken)."""
        s = svc()
        with s.lock:
            s.gallery.rename(check_name(name), body.name)
        return {"name": check_name(body.name)}

    @app.delete("/v1/people/{name}", tags=["people"], dependencies=[Writer])
    def remove(name: str) -> dict[str, Any]:
        """Remove a person and all their photos."""
        s = svc()
        with s.lock:
            return {"removed": s.gallery.remove(check_name(name))}

    @app.delete("/v1/people/{name}/photos/{sha256}", tags=["people"], dependencies=[Writer])
    def remove_photo(name: str, sha256: str) -> dict[str, Any]:
        """Remove one photo of a person, by its content sha256."""
        s = svc()
        with s.lock:
            return {"removed": s.gallery.remove(check_name(name), sha256=sha256)}

    # ----- threshold ------------------------------------------------------------------------------
    @app.get("/v1/threshold", tags=["threshold"], dependencies=[Reader])
    def get_threshold() -> dict[str, Any]:
        """The calibrated unknown threshold (photo vs person) and verification threshold (photo vs photo),
        with the rule that set them."""
        s = svc()
        with s.lock:
            return s.gallery.calibration().to_json()

    @app.put("/v1/threshold", tags=["threshold"], dependencies=[Writer])
    def set_threshold(rule: Annotated[ThresholdRule, Body()]) -> dict[str, Any]:
        """Choose the rule: a target false-accept rate, a raw distance, or the equal-error point."""
        s = svc()
        with s.lock:
            return s.gallery.set_threshold(rule.far, rule.distance, rule.eer).to_json()

    # ----- the page -------------------------------------------------------------------------------
    if docs_assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=docs_assets), name="docs-assets")
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app


def _docs_assets() -> Path | None:
    """The folder of Swagger UI's files as the fastapi-offline package ships them (Swagger UI 5), or None
    when it is not installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


class _Refused(Exception):
    """An authentication refusal (401 / 403)."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def _parse_box(box: str | None) -> list[float] | None:
    if box is None or not box.strip():
        return None
    try:
        values = [float(v) for v in box.split(",")]
    except ValueError:
        values = []
    if (
        len(values) != 4
        or not all(v == v and abs(v) < 1e7 for v in values)
        or not (values[0] < values[2] and values[1] < values[3])
    ):
        raise InvalidInput(f"box {box[:60]!r}: give x0,y0,x1,y1 with x0 < x1 and y0 < y1")
    return values


def _enrolment_face(faces: list[Face], box: list[float] | None) -> tuple[Face | None, str]:
    """The face to enrol from a photo's faces: the one at ``box``, else its only one; or None with why."""
    if box is not None:
        face = face_at(faces, box)
        return face, "no face at the given box"
    if len(faces) == 1:
        return faces[0], ""
    return None, not_one_face(faces) + ", or send the box of one"
