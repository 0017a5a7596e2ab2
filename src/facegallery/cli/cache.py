"""``facegallery cache``: see and clear what is kept under the user cache folder."""

from __future__ import annotations

import json

import click

from facegallery.cli import main


@main.command("cache")
@click.option("--clear", is_flag=True, help="Delete every cached face and embedding.")
@click.option("--json", "as_json", is_flag=True, help="Print {path, entries: [{detector, model, photos, bytes}]}.")
def cache_cmd(clear: bool, as_json: bool) -> None:
    """Show the face cache (each photo's faces and embeddings, per detector and model), or clear it.
    Its folder is FACEGALLERY_CACHE or the user cache folder."""
    from facegallery.facecache import FaceCache

    cache = FaceCache()
    if clear:
        n = cache.clear()
        click.echo(f"cleared {n} cached photos from {cache.path}")
        return
    entries = cache.summary()
    if as_json:
        click.echo(json.dumps({"path": str(cache.path), "entries": entries}, indent=2))
        return
    total = sum(e["bytes"] for e in entries)
    click.echo(f"{cache.path}: {sum(e['photos'] for e in entries)} photos, {total / 1e6:.1f} MB")
    for e in entries:
        click.echo(f"  {e['photos']:7d} photos  {e['bytes'] / 1e6:8.1f} MB  {e['model']}  {e['detector'] or '(crops)'}")
