"""Options shared by several commands, defined once."""
from __future__ import annotations

import click

from facegallery.faces import DETECT_MODES

model_option = click.option("--model", default=None,
                            help="Shipped model name, checkpoint folder, or 'dlib' (default: best shipped).")
detect_option = click.option(
    "--detect", type=click.Choice(DETECT_MODES), default="auto", show_default=True,
    help="Face detection: 'on' finds and aligns every face; 'auto' also takes an image of at most "
         "250x250 without a found face whole as a face crop; 'off' treats every image as a face crop.")
