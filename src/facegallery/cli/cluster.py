"""``facegallery cluster``: group the faces of unlabelled photos into people."""

from __future__ import annotations

import json

import click

from facegallery.cli import main
from facegallery.cli.options import (
    FilePath,
    chosen_detector,
    detect_option,
    detector_options,
    expand_inputs,
    model_option,
)
from facegallery.clustering import ALGORITHMS, DEFAULT_ALGORITHM
from facegallery.errors import UserError


@main.command("cluster")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for clusters.json and sheets.")
@model_option
@detect_option
@detector_options
@click.option(
    "--algorithm", type=click.Choice(list(ALGORITHMS)), default=DEFAULT_ALGORITHM, show_default=True, help="Grouping."
)
@click.option("--gallery", type=FilePath(), help="Label faces this gallery knows.")
@click.option("--json", "as_json", is_flag=True, help="Also print clusters.json to stdout.")
@click.argument("inputs", nargs=-1, required=True)
def cluster_cmd(out, model, detect, detector, min_face, algorithm, gallery, as_json, inputs) -> None:
    """Find every face of PHOTOS_OR_DIRS, group the faces into people, and write OUT/clusters.json, a
    contact sheet per cluster (OUT/cluster-NNN.png) and OUT/overview.png. Name a cluster with
    `facegallery enroll --gallery G --from-clusters OUT/clusters.json --name 3="Ada Lovelace"`."""
    from facegallery import grouping
    from facegallery.embedder import load_model

    paths = expand_inputs(inputs)
    detector = chosen_detector(detector, min_face)
    g = None
    if gallery is not None:
        from facegallery.gallery import Gallery

        g = Gallery.open(gallery, model=model, detector=detector)
        embedder = g.embedder
        detector = g.detector if detect != "off" else None
    else:
        embedder = load_model(model)
    try:
        faces, emb = grouping.find_faces(paths, embedder, detect, progress=True, detector=detector)
        result = grouping.cluster_faces(faces, emb, embedder, detect, algorithm, g, detector)
    finally:
        if g is not None:
            g.close()
    path = grouping.write(result, out)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=1))
    if not faces:
        click.echo(f"no face found in {len(paths)} photos; {path} lists no cluster", err=True)
        return
    grouped = sum(len(c.faces) for c in result.clusters)
    known = f", {len(result.known)} of people the gallery knows" if g is not None else ""
    click.echo(
        f"{len(faces)} faces in {len(paths)} photos: {len(result.clusters)} clusters ({grouped} faces), "
        f"{len(result.unassigned)} unassigned{known}; written to {path}",
        err=as_json,
    )


def parse_names(values: tuple[str, ...]) -> dict[int, str]:
    """``N=Name`` pairs of ``enroll --from-clusters``; a malformed one is a one-line error."""
    names: dict[int, str] = {}
    for v in values:
        number, sep, name = v.partition("=")
        if not sep or not number.strip().isdigit() or not name.strip():
            raise UserError(f'--name {v!r}: with --from-clusters, give CLUSTER=NAME (e.g. 3="Ada Lovelace")')
        if int(number) in names:
            raise UserError(f"--name: cluster {int(number)} is named twice")
        names[int(number)] = name.strip()
    return names
