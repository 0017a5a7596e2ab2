"""``facegallery embed`` and ``facegallery identify``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from facegallery.cli import main
from facegallery.cli.options import (
    FilePath,
    chosen_detector,
    detect_option,
    detector_options,
    expand_inputs,
    model_option,
    output_file,
    threshold_option,
)
from facegallery.errors import UserError


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
            where = " [face at " + ",".join(f"{v:.0f}" for v in f["box"]) + "]" if len(r["faces"]) > 1 else ""
            click.echo(f"{r['path']}{where}: {who}  (distance {f['distance']:.3f}{score}; nearest: {near})")


@main.command("embed")
@model_option
@detect_option
@detector_options
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="Output .npz (embeddings, paths, boxes, model)."
)
@click.argument("inputs", nargs=-1, required=True)
def embed_cmd(model, detect, detector, min_face, out, inputs) -> None:
    """Embed every face of photos (files, folders, or @list.txt with one path per line): one row per
    face, with its photo's path and its box. With --detect off each photo is one face crop."""
    import numpy as np

    from facegallery.embedder import embed_faces, load_model
    from facegallery.images import warn_skip
    from facegallery.pipeline import Finder, ReadPhoto, read_photos

    out = output_file(out)
    paths = expand_inputs(inputs)
    if not paths:
        raise UserError("no photos to embed")
    embedder = load_model(model)
    finder = Finder.of(embedder, detect, chosen_detector(detector, min_face))
    rows: list[tuple[str, list[float]]] = []
    vectors, read = [], 0
    from tqdm import tqdm

    for got in tqdm(read_photos(paths, finder), total=len(paths), unit="photo", desc="embed", dynamic_ncols=True):
        if not isinstance(got, ReadPhoto):
            warn_skip(Path(got.path), got.reason)
            continue
        read += 1
        if not got.faces:
            warn_skip(Path(got.path), "no face found")
            continue
        vectors.append(embed_faces(embedder, got.faces))
        finder.remember([got])
        rows += [(got.path, f.box) for f in got.faces]
    if not rows:
        raise UserError(f"no face in the {len(paths)} photos ({read} readable); nothing written")
    emb = np.concatenate(vectors)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                embeddings=emb,
                paths=np.array([p for p, _ in rows]),
                boxes=np.array([b for _, b in rows], np.float32).reshape(-1, 4),
                model=np.array(embedder.fingerprint),
            )
        os.replace(tmp, out)
    except OSError as e:  # a full disk, say: one line, no debris
        raise UserError(f"{out}: cannot write ({e.strerror or e}); nothing written") from None
    finally:
        tmp.unlink(missing_ok=True)
    photos = len({p for p, _ in rows})
    click.echo(f"wrote {len(rows)} embeddings of dimension {emb.shape[1]} ({photos} photos) to {out}")


def show_answers(results: list[dict], as_json: bool, annotate: str | None) -> None:
    """Print the answers and, with ``annotate``, write each photo with its boxes and names drawn
    (``OUT_DIR/<path relative to the inputs' common folder>.png``)."""
    print_answers(results, as_json)
    if not annotate or not results:
        return
    from facegallery.detection import draw_faces
    from facegallery.images import load_image

    paths = [Path(r["path"]).resolve() for r in results]
    common = Path(os.path.commonpath([p.parent for p in paths]))
    # x.jpg -> x.jpg.png: never an input's own name, and x.jpg and x.png do not collide
    outs = [Path(annotate).resolve() / p.relative_to(common).with_name(p.name + ".png") for p in paths]
    clash = next((o for o in outs if o in set(paths)), None)
    if clash is not None:
        raise UserError(f"{clash}: --annotate would overwrite an input photo; choose another folder")
    for r, p, out in zip(results, paths, outs):
        out.parent.mkdir(parents=True, exist_ok=True)
        draw_faces(load_image(p), r["faces"]).save(out)


@main.command("identify")
@click.option("--library", type=click.Path(file_okay=False), help="Folder with one subfolder per person.")
@click.option("--gallery", type=FilePath(), help="A gallery made by `facegallery enroll` (a file or postgresql://...).")
@model_option
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1), help="Candidates per face.")
@threshold_option
@detect_option
@detector_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array (stable shape).")
@click.option("--annotate", type=click.Path(file_okay=False), help="Also write each photo with boxes and names here.")
@click.argument("inputs", nargs=-1, required=True)
def identify_cmd(
    library, gallery, model, top_k, threshold, detect, detector, min_face, as_json, annotate, inputs
) -> None:
    """Say who is in each photo, or 'unknown'."""
    if bool(library) == bool(gallery):
        raise UserError("give exactly one of --library DIR (one subfolder per person) or --gallery G.db")
    paths = [str(p) for p in expand_inputs(inputs)]  # before the minutes a library may take to embed
    if not paths:
        raise UserError("no photos to identify")
    if gallery:
        from facegallery.gallery import Gallery

        with Gallery.open(gallery, model=model, detector=chosen_detector(detector, min_face)) as g:
            found = g.recognize(paths, top_k, detect, threshold, progress=True)
    else:
        from facegallery.embedder import load_model
        from facegallery.library import Library

        embedder = load_model(model)
        # library photos are detected like the probes, but a crop-sized one is always taken whole ('auto')
        lib = Library.from_folder(
            library,
            embedder,
            threshold,
            detect="off" if detect == "off" else "auto",
            progress=True,
            detector=chosen_detector(detector, min_face),
        )
        found = lib.identify(paths, top_k, detect, progress=True)
    from facegallery.images import warn_skip

    for s in found.skipped:
        warn_skip(Path(s.path), s.reason)
    results = found.answers
    show_answers(results, as_json, annotate)
    if not results:
        raise UserError(f"none of the {len(paths)} photos could be read")
