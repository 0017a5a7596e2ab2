"""``facegallery serve`` (the HTTP service and its page) and ``facegallery key`` (API keys)."""

from __future__ import annotations

import click

from facegallery.cli import main
from facegallery.cli.options import FilePath, chosen_detector, detector_options, model_option, shown
from facegallery.errors import UserError

SERVICE_HINT = "pip install 'facegallery[service]'"


@main.command("key")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False), help="Key file (created 0600).")
@click.option("--label", default="default", show_default=True, help="Whose key it is (one word).")
def key_cmd(path, label) -> None:
    """Make an API key: printed once, only its SHA-256 hash is stored in the key file."""
    from facegallery.service.auth import add_key

    key = add_key(path, label)
    click.echo(key)
    click.echo(f"(stored hashed in {path} as {label!r}; this is the only time the key is shown)", err=True)


@main.command("serve")
@click.option(
    "--gallery", required=True, type=FilePath(), help="Gallery to serve: a file, or postgresql://user@host/db."
)
@click.option("--create", is_flag=True, help="Create the gallery if it does not exist.")
@model_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--api-key-file",
    type=FilePath(),
    help="Keys accepted for writes (and reads) from `facegallery key`; without it reads are open and writes off.",
)
@click.option("--open-reads", is_flag=True, help="With --api-key-file: identify, verify and listing need no key.")
@click.option("--max-upload-mb", default=10.0, show_default=True, type=click.FloatRange(0.001), help="Per photo.")
@click.option("--max-request-mb", default=50.0, show_default=True, type=click.FloatRange(0.001), help="Per request.")
@click.option("--max-photos", default=16, show_default=True, type=click.IntRange(1), help="Photos per request.")
@click.option("--max-megapixels", default=25.0, show_default=True, type=click.FloatRange(0.01, 40), help="Per photo.")
@click.option(
    "--max-request-megapixels",
    default=100.0,
    show_default=True,
    type=click.FloatRange(0.01),
    help="All photos of one request together (read from their headers before decoding): bounds a request's work.",
)
@click.option(
    "--batch",
    default=64,
    show_default=True,
    type=click.IntRange(0),
    help="Faces of concurrent requests embedded together, at most; 0 embeds each request on its own.",
)
@detector_options
@click.option(
    "--detect-workers",
    default=0,
    type=click.IntRange(0),
    help="Photos decoded and detected at once over all requests (a bounded pool); 0: one per core.",
)
def serve_cmd(
    gallery, create, model, host, port, api_key_file, open_reads, max_upload_mb, max_request_mb, max_photos,
    max_megapixels, max_request_megapixels, batch, detector, min_face, detect_workers,
) -> None:  # fmt: skip
    """Serve a gallery over HTTP (API under /v1, docs at /docs, a web page at /)."""
    from pathlib import Path

    from facegallery.gallery.postgres import is_url

    try:
        import uvicorn

        from facegallery.service.app import ServiceConfig, create_app
        from facegallery.service.auth import KeyRing
    except ImportError as e:
        raise UserError(f"the service needs its extra ({e.name} is missing): {SERVICE_HINT}") from None
    keys = KeyRing.load(api_key_file) if api_key_file else None
    if open_reads and keys is None:
        raise UserError("--open-reads needs --api-key-file (without keys, reads are open already)")
    config = ServiceConfig(
        gallery=gallery if is_url(gallery) else Path(gallery),
        model=model,
        keys=keys,
        open_reads=open_reads,
        max_upload_bytes=int(max_upload_mb * 1e6),
        max_request_bytes=int(max_request_mb * 1e6),
        max_photos=max_photos,
        max_pixels=int(max_megapixels * 1e6),
        max_request_pixels=int(max_request_megapixels * 1e6),
        max_batch=batch,
        create=create,
        detector=chosen_detector(detector, min_face),
        detect_workers=detect_workers,
    )
    # open it here first: a missing gallery or a model mismatch is one line, before the server starts
    from facegallery.gallery import Gallery

    with Gallery.open(config.gallery, model=model, create=create, detector=config.detector) as g:
        _ = g.detector  # a gallery's recorded detector that cannot load is one line too
    writes = "writes need an API key" if keys else "writes OFF (no --api-key-file)"
    click.echo(f"facegallery: serving {shown(gallery)} on http://{host}:{port}/ ({writes})", err=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")
