"""Options shared by several commands, defined once."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from facegallery.errors import UserError
from facegallery.faces import DETECT_MODES

model_option = click.option(
    "--model", default=None, help="Shipped model name, checkpoint folder, or 'dlib' (default: best shipped)."
)
detect_option = click.option(
    "--detect",
    type=click.Choice(DETECT_MODES),
    default="auto",
    show_default=True,
    help="Face detection: 'on' finds and aligns every face; 'auto' also takes an image of at most "
    "250x250 without a found face whole as a face crop; 'off' treats every image as a face crop.",
)


def _detector_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from facegallery.detectors import detector_names

    if value is not None and value not in detector_names():
        raise UserError(f"--detector {value!r}: unknown face detector; known: {', '.join(detector_names())}")
    return value


def detector_options(f):
    """``--detector NAME`` and ``--min-face PX``: which detector finds faces, and the smallest face it
    looks for. Left out: a gallery's own, else ``FACEGALLERY_DETECTOR`` / ``FACEGALLERY_MIN_FACE``, else
    yunet and its default."""
    f = click.option(
        "--min-face",
        type=click.IntRange(8, 4096),
        default=None,
        help="Smallest face side looked for, in pixels (default: the detector's; smaller scans more pixels).",
    )(f)
    return click.option(
        "--detector",
        default=None,
        callback=_detector_name,
        help="Face detector: yunet (default: fast, small and turned faces), mmod (dlib's CNN, thorough, "
        "slow), dlib-hog or dlib-cnn (the dlib extra).",
    )(f)


def chosen_detector(name: str | None, min_face: int | None):
    """The detector the options chose, or None when neither was given (a gallery's own, else the
    default)."""
    if name is None and min_face is None:
        return None
    from facegallery.detectors import load_detector

    return load_detector(name, min_face)


def _distance(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0.0 <= value <= 4.0):
        raise UserError(f"--threshold {value}: a distance between unit vectors lies in 0..4")
    return value


threshold_option = click.option(
    "--threshold",
    type=float,
    callback=_distance,
    help="Unknown above this distance (squared, divided by 1 + 1/n for a person of n photos; 0..4; "
    "default: calibrated).",
)


def expand_inputs(inputs: tuple[str, ...] | list[str]) -> list[Path]:
    """Photo paths from files, folders (recursively, junk skipped with a warning) and ``@list.txt``
    files of one path per line; a missing file or folder, or list, is a one-line error, before any work.

    A list's lines are file names as the file system holds them: bytes, decoded as ``os.fsdecode``
    decodes names (UTF-8, with any other byte kept as itself), so a Latin-1 name in a list still names
    its file. A listed path that is not a regular file (missing, a folder, a FIFO, a device) is skipped
    with a warning naming it and the line, never opened."""
    from facegallery.images import iter_images, not_a_file, warn_skip

    paths: list[Path] = []
    for item in inputs:
        if item.startswith("@"):
            listing = Path(item[1:])
            why = not_a_file(listing)
            if why is not None:
                raise UserError(f"{listing}: {'no such image list' if why == 'no such file' else why}")
            try:
                lines = listing.read_bytes().splitlines()
            except OSError as e:
                raise UserError(f"{listing}: cannot read ({e.strerror or e})") from None
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                path = Path(os.fsdecode(line.strip()))
                why = not_a_file(path)
                if why is None:
                    paths.append(path)
                else:
                    warn_skip(path, f"{why} (line {number} of {listing})")
        elif not Path(item).exists():
            raise UserError(f"{item}: no such file or folder")
        else:
            paths += list(iter_images([item]))
    return paths


class FilePath(click.ParamType):
    """A file's path, looked at (never opened) when given: a folder, a FIFO or a device is a one-line
    error naming it, and so is a missing file where ``exists``."""

    name = "file"

    def __init__(self, exists: bool = False):
        self.exists = exists

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from facegallery.images import not_a_file

        if not self.exists and not os.path.lexists(value):
            return value
        why = not_a_file(value)
        if why is not None:
            raise UserError(f"{value}: {why}")
        return value


def output_file(out: str | Path) -> Path:
    """An output file's path, checked before any work: its folder must exist and it must not be one."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give a file name")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such folder for {out.name}")
    return out


def shown(gallery: str) -> str:
    """A gallery as messages show it: a file's path, a database URL without its password."""
    from facegallery.gallery.postgres import public_url

    return public_url(gallery)
