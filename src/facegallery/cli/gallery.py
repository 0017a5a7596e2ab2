"""Gallery commands: ``enroll``, ``people``, ``remove``, ``rename``, ``export``, ``import``, ``threshold``,
``migrate``, ``reembed`` (``identify --gallery`` lives with ``identify`` in :mod:`facegallery.cli.recognize`)."""

from __future__ import annotations

import json
import unicodedata
from typing import TYPE_CHECKING

import click

from facegallery.cli import main
from facegallery.cli.options import FilePath, chosen_detector, detect_option, detector_options, model_option, shown
from facegallery.errors import UserError

if TYPE_CHECKING:
    from facegallery.gallery import Gallery
    from facegallery.gallery.threshold import Fit

gallery_option = click.option(
    "--gallery",
    "gallery",
    required=True,
    type=FilePath(),
    help="The gallery: a file (SQLite), or a PostgreSQL database URL postgresql://user@host/db.",
)


def _open(path: str, model: str | None = None, create: bool = False, detector=None) -> Gallery:
    from facegallery.gallery import Gallery

    return Gallery.open(path, model=model, create=create, detector=detector)


def found_by(g: Gallery) -> str:
    """Which detectors found the gallery's faces, in words."""
    from facegallery.detectors import describe_text

    used = g.detectors()
    return "; ".join(describe_text(d) for d in used) if used else "no detector (face crops, or none enrolled)"


@main.command("enroll")
@gallery_option
@click.option("--create", is_flag=True, help="Create the gallery file if it does not exist.")
@click.option(
    "--name",
    "names",
    multiple=True,
    help="Enrol IMG... as this one person (otherwise DIR has one subfolder per person); with "
    "--from-clusters, CLUSTER=NAME, repeated.",
)
@click.option("--from-clusters", type=FilePath(exists=True), help="A clusters.json of `facegallery cluster` to name.")
@click.option(
    "--force",
    is_flag=True,
    help="With --from-clusters: add a cluster to an enrolled person even when it lies beyond the unknown "
    "threshold from them (it looks like someone else).",
)
@model_option
@detect_option
@detector_options
@click.argument("inputs", nargs=-1)
def enroll_cmd(gallery, create, names, from_clusters, force, model, detect, detector, min_face, inputs) -> None:
    """Add people: DIR with one subfolder per person, or --name NAME IMG... (photos or folders), or
    --from-clusters OUT/clusters.json --name 3="Ada Lovelace" (the faces of cluster 3).

    Photos already stored for that person are skipped, so running it again only adds what is new.
    """
    if from_clusters is not None:
        return _enroll_clusters(gallery, create, names, from_clusters, model, inputs, force)
    if len(names) > 1:
        raise UserError("--name is given once (several --name CLUSTER=NAME go with --from-clusters)")
    name = names[0] if names else None
    if not inputs:
        raise UserError("give a folder with a subfolder per person, --name NAME with photos, or --from-clusters")
    if name is None and len(inputs) != 1:
        raise UserError("give one folder with a subfolder per person, or --name NAME with photos")
    from facegallery.images import iter_images

    paths = list(iter_images(inputs)) if name is not None else None
    if paths is not None and not paths:
        raise UserError(f"no photos of {name!r} in {' '.join(inputs)}")
    with _open(gallery, model, create, chosen_detector(detector, min_face)) as g:
        results = (
            g.enroll_folder(inputs[0], detect, progress=True)
            if name is None
            else [g.enroll(name, paths, detect, progress=True)]
        )
        for r in results:
            click.echo(
                f"{r.name}: {r.added} added, {r.duplicates} already there"
                + (f", {r.rejected} rejected" if r.rejected else "")
            )
        added = sum(r.added for r in results)
        if not added and all(r.rejected for r in results):
            raise UserError(f"nothing enrolled into {shown(gallery)}: no usable photo (see warnings)")
        people = len(g.people())
        click.echo(f"{shown(gallery)}: {_count(added, 'photo')} added; {_count(people, 'person', 'people')} enrolled")


def _enroll_clusters(gallery, create, names, from_clusters, model, inputs, force: bool) -> None:
    """Enrol named clusters of a clusters.json: checked whole (cluster numbers, the model) first."""
    from pathlib import Path

    from facegallery import grouping
    from facegallery.cli.cluster import parse_names

    if inputs:
        raise UserError("--from-clusters takes no photos: the clusters say which faces")
    if not names:
        raise UserError('--from-clusters needs at least one --name CLUSTER=NAME (e.g. --name 3="Ada Lovelace")')
    doc, emb = grouping.load(from_clusters)
    chosen = grouping.chosen_faces(doc, emb, parse_names(names), Path(from_clusters))
    with _open(gallery, model, create) as g:
        if doc.get("fingerprint") != g.embedder.fingerprint:
            raise UserError(
                f"{from_clusters}: grouped with model {doc.get('model')} ({doc.get('fingerprint')}), but "
                f"{shown(gallery)} uses {g.embedder.name} ({g.embedder.fingerprint}); run `facegallery cluster --model "
                f"{g.embedder.name}` again"
            )
        for name, vectors, sources in chosen:
            r = g.enroll_faces(
                name,
                vectors,
                sources,
                doc["fingerprint"],
                doc.get("detect", "auto"),
                detector=doc.get("detector"),
                force=force,
            )
            click.echo(f"{r.name}: {r.added} added, {r.duplicates} already there")
        click.echo(f"{shown(gallery)}: {_count(len(g.people()), 'person', 'people')} enrolled")


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 photo``, ``2 photos``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


@main.command("people")
@gallery_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {name, photos}.")
def people_cmd(gallery, as_json) -> None:
    """List the enrolled people with their photo counts."""
    with _open(gallery) as g:
        people = g.people()
        how = found_by(g)
    if as_json:
        click.echo(json.dumps([{"name": p.name, "photos": p.photos} for p in people], indent=2))
        return
    for p in people:
        click.echo(f"{p.name}\t{p.photos}")
    click.echo(f"faces found by: {how}", err=True)


@main.command("remove")
@gallery_option
@click.option("--photo", type=FilePath(), help="Remove only this photo of the person.")
@click.argument("name")
def remove_cmd(gallery, photo, name) -> None:
    """Remove a person (or one of their photos) from the gallery."""
    name = unicodedata.normalize("NFC", name)  # as the gallery keeps names: "José" typed either way
    with _open(gallery) as g:
        n = g.remove(name, photo)
        left = next((p.photos for p in g.people() if p.name == name), 0)
    click.echo(f"removed {n} photo(s) of {name}" + ("" if photo is None else f"; {left} left"))


@main.command("rename")
@gallery_option
@click.argument("old")
@click.argument("new")
def rename_cmd(gallery, old, new) -> None:
    """Rename a person."""
    with _open(gallery) as g:
        g.rename(old, new)
    click.echo(f"renamed {old} to {new}")


@main.command("export")
@gallery_option
@click.argument("out", type=click.Path(dir_okay=False))
def export_cmd(gallery, out) -> None:
    """Write the gallery to a portable .npz file (no pickle)."""
    with _open(gallery) as g:
        g.export_to(out)
        n = len(g.people())
    click.echo(f"exported {n} people to {out}")


@main.command("import")
@gallery_option
@click.option("--create", is_flag=True, help="Create the gallery file if it does not exist.")
@click.argument("source", type=FilePath(exists=True))
def import_cmd(gallery, create, source) -> None:
    """Merge an exported file into the gallery (photos already there are skipped)."""
    with _open(gallery, create=create) as g:
        results = g.import_from(source)
    click.echo(
        f"imported {sum(r.added for r in results)} photos of {len(results)} people "
        f"({sum(r.duplicates for r in results)} already there)"
    )


@main.command("threshold")
@gallery_option
@model_option
@click.option("--far", type=float, help="Set the unknown threshold for this target false-accept rate.")
@click.option("--eer", is_flag=True, help="Set it at the equal-error point.")
@click.option(
    "--set",
    "raw",
    type=float,
    help="Set this raw threshold on the identification distance "
    "(squared, divided by 1 + 1/n for a person of n photos).",
)
@click.option("--json", "as_json", is_flag=True)
def threshold_cmd(gallery, model, far, eer, raw, as_json) -> None:
    """Show (or change) the gallery's calibrated unknown threshold and score."""
    with _open(gallery, model) as g:
        cal = g.set_threshold(far, raw, eer) if (far is not None or raw is not None or eer) else g.calibration()
        people = len(g.people())
        how, detectors = found_by(g), g.detectors()
    if cal.warning:
        click.echo(f"warning: {cal.warning}", err=True)
    if as_json:
        click.echo(json.dumps({**cal.to_json(), "detectors": detectors}, indent=2))
        return
    source = {
        "gallery": "calibrated from the gallery's own photos",
        "hand-set": "set by hand (threshold --set)",
    }.get(cal.source, "the model's threshold (too few people in the gallery to calibrate it)")
    click.echo(f"{shown(gallery)}: {people} people; unknown threshold {source}; method {cal.method}")
    click.echo(f"  faces found by: {how}")
    for what, f in (("identify (photo vs person)", cal.identify), ("verify (photo vs photo)", cal.verify)):
        click.echo(f"  {what}: threshold {f.threshold:.4f}; {rates_text(f, people)}; score 0.5 at the threshold")


def rates_text(f: Fit, people: int) -> str:
    """A fit's error rates as a line states them: the FAR with its interval and counts, or why none."""
    if f.far is None:
        frr = f"; FRR {f.frr:.4f}" if f.frr is not None else ""
        return f"FAR not estimable with {people} people{frr}"
    return (
        f"FAR {f.far:.4f} (95% interval {f.far_low:.4f}-{f.far_high:.4f}: {f.accepted} of {f.impostors} "
        f"impostor distances accepted), FRR {f.frr:.4f} ({f.genuine} genuine distances)"
    )


@main.command("migrate")
@gallery_option
@click.option(
    "--to", "target", required=True, help="The new gallery: a file or postgresql://user@host/db (created, empty)."
)
def migrate_cmd(gallery, target) -> None:
    """Copy a gallery to another place or backend (a file into PostgreSQL, or back): people, photos,
    embeddings, thumbnails, model and threshold rule, checked afterwards (counts, and every centroid
    the mean of its photos' embeddings)."""
    from facegallery.gallery.store import open_store
    from facegallery.gallery.transfer import migrate

    src = open_store(gallery)
    try:
        dst = open_store(target, create=True)
        try:
            m = migrate(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    if m.centroids_off:
        raise UserError(f"{shown(target)}: {m.centroids_off} centroid(s) differ from their photos' mean after copying")
    click.echo(
        f"{shown(target)}: {_count(m.people, 'person', 'people')}, {_count(m.photos, 'photo')} and "
        f"{_count(m.thumbnails, 'thumbnail')} copied from {shown(gallery)}; every centroid is its photos' mean"
    )


@main.command("reembed")
@gallery_option
@click.option("--model", required=True, help="The new model: shipped name or checkpoint folder.")
@click.option("--drop-missing", is_flag=True, help="Drop photos whose source file is gone or changed.")
def reembed_cmd(gallery, model, drop_missing) -> None:
    """Re-embed every stored photo from its source file with a new model."""
    with _open(gallery) as g:
        report = g.reembed(model, drop_missing, progress=True)
    click.echo(
        f"re-embedded {report.reembedded} photos with {model}"
        + (f"; dropped {len(report.dropped)}" if report.dropped else "")
    )


@main.command("verify")
@gallery_option
@model_option
@detect_option
@detector_options
@click.option("--json", "as_json", is_flag=True, help="Print {same, distance, score, threshold}.")
@click.argument("first", type=FilePath(exists=True))
@click.argument("second", type=FilePath(exists=True))
def verify_cmd(gallery, model, detect, detector, min_face, as_json, first, second) -> None:
    """Do two photos show the same person? (Their largest faces, at the gallery's photo-vs-photo threshold.)"""
    with _open(gallery, model, detector=chosen_detector(detector, min_face)) as g:
        v = g.verify(first, second, detect=detect)
    if as_json:
        click.echo(json.dumps({"same": v.same, "distance": v.distance, "score": v.score, "threshold": v.threshold}))
        return
    click.echo(
        f"{'same person' if v.same else 'different people'}  (distance {v.distance:.4f}, threshold "
        f"{v.threshold:.4f}, score {v.score:.2f})"
    )
