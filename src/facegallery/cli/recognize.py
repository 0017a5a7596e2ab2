"""``facegallery embed`` and ``facegallery identify``."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from facegallery.cli import main
from facegallery.cli.options import detect_option, model_option
from facegallery.embedder import load_model
from facegallery.errors import UserError
from facegallery.images import iter_images
from facegallery.library import Library, embed_paths


def print_answers(results: list[dict], as_json: bool) -> None:
    """JSON array, or one readable line per face."""
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        if not r["faces"]:
            click.echo(f"{r['path']}: no face found")
        for f in r["faces"]:
            who = f["name"] if f["name"] is not None else "unknown"
            near = ", ".join(f"{c['name']} {c['distance']:.3f}" for c in f["candidates"][:3])
            score = f"  score {f['score']:.2f}" if "score" in f else ""
            click.echo(f"{r['path']}: {who}  (distance {f['distance']:.3f}{score}; nearest: {near})")


@main.command("embed")
@model_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npz (embeddings, paths).")
@click.argument("inputs", nargs=-1, required=True)
def embed_cmd(model, out, inputs) -> None:
    """Embed photos (files, folders, or @list.txt with one path per line) as face crops."""
    paths = []
    for item in inputs:
        if item.startswith("@"):
            listing = Path(item[1:])
            if not listing.is_file():
                raise UserError(f"{listing}: no such image list")
            paths += [Path(line.strip()) for line in listing.read_text().splitlines() if line.strip()]
        else:
            paths += list(iter_images([item]))
    if not paths:
        raise UserError("no photos to embed")
    embedder = load_model(model)
    emb, kept = embed_paths(embedder, paths)
    np.savez(out, embeddings=emb, paths=np.array([str(paths[i]) for i in kept]),
             model=np.array(embedder.fingerprint))
    click.echo(f"wrote {len(kept)} embeddings of dimension {emb.shape[1]} to {out}")


@main.command("identify")
@click.option("--library", type=click.Path(file_okay=False), help="Folder with one subfolder per person.")
@model_option
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1), help="Candidates per face.")
@click.option("--threshold", type=float, help="Unknown above this squared distance (default: calibrated).")
@detect_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array (stable shape).")
@click.argument("inputs", nargs=-1, required=True)
def identify_cmd(library, model, top_k, threshold, detect, as_json, inputs) -> None:
    """Say who is in each photo, or 'unknown'."""
    if not library:
        raise UserError("give --library DIR (one subfolder per person)")
    embedder = load_model(model)
    lib = Library.from_folder(library, embedder, threshold)
    print_answers(lib.identify(list(inputs), top_k, detect), as_json)
