"""The ``gallery`` command group: its options build the ``CliContext`` every command runs in."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from gallery.cli.context import CliContext


@click.group()
@click.version_option(package_name="gallery")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GALLERY_HOME",
    help="Gallery folder (default: $GALLERY_HOME, else the user data directory).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    envvar="GALLERY_THREADS",
    help="CPU threads for the networks and the index (default: $GALLERY_THREADS, else all cores).",
)
@click.pass_context
def cli(ctx: click.Context, home: Path | None, threads: int | None) -> None:
    """One-shot face identification: enrol a person from one photo, identify them in others.

    \b
    Example:
        gallery enroll "Ada Lovelace" ada.jpg
        gallery identify door.jpg
    """
    given = ctx.obj if isinstance(ctx.obj, CliContext) else CliContext()
    ctx.obj = dataclasses.replace(given, home=home or given.home, threads=threads or given.threads)
