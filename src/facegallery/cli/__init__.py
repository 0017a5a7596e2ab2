"""The ``facegallery`` command: thin wrappers that parse, call the API and print text or JSON.

User mistakes (:class:`facegallery.errors.UserError`) print ``facegallery: error: <what>`` and exit 2.
Each command group lives in its own module and registers itself on :data:`main`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import NoReturn

import click

from facegallery.errors import UserError


def _usage_error(e: click.UsageError) -> NoReturn:
    """Click's own usage errors (a missing argument, a bad option value) in the one-line form too,
    instead of click's usage, hint and error lines; ``facegallery`` alone still shows the help."""
    if isinstance(e, click.exceptions.NoArgsIsHelpError):
        raise e
    where = e.ctx.command_path if e.ctx is not None else "facegallery"
    message = " ".join(e.format_message().split())
    click.echo(f"facegallery: error: {message} (see '{where} --help')", err=True)
    sys.exit(2)


class _Group(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            _usage_error(e)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"facegallery: error: {e}", err=True)
            sys.exit(2)
        except click.UsageError as e:
            _usage_error(e)
        except KeyboardInterrupt:
            click.echo("facegallery: interrupted", err=True)
            sys.exit(130)


def _warning_line(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line each (``facegallery: warning: skipping x.jpg: ...``), printed above a progress
    bar rather than glued to it."""
    from tqdm import tqdm

    tqdm.write(f"facegallery: warning: {message}", file=sys.stderr)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="facegallery")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """FaceNet-style face recognition of a library of people."""
    warnings.showwarning = _warning_line
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s")


from facegallery.cli import cache, cluster, evaluate, gallery, recognize, serve, train  # noqa: E402,F401  (register the commands)
