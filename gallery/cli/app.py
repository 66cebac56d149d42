"""The ``gallery`` command group: its options build the ``CliContext`` every command runs in."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click

from gallery.cli.context import API_KEY_ENV, DEBUG_ENV, SERVER_ENV, CliContext, fail, fail_unexpected, interrupted
from gallery.errors import GalleryError


class GalleryGroup(click.Group):
    """The group, and the last word on how a command ends: no exception leaves with exit 1 ("no match").

    ``CliContext.run`` turns a ``GalleryError`` into its exit code; whatever else escapes a
    command ends here (see ``gallery.cli.context`` for the codes): Ctrl-C exits 130 (click
    would say "Aborted!" and exit 1), any other exception 4, in one line.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors (2) and click's own exits are click's to report
        except KeyboardInterrupt:
            interrupted()
        except GalleryError as err:  # raised outside CliContext.run (e.g. while printing a result)
            fail(err)
        except Exception as err:
            fail_unexpected(err, debug=bool(ctx.params.get("debug")))


@click.group(cls=GalleryGroup)
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
@click.option(
    "--audit",
    type=click.Choice(["best-effort", "required"]),
    envvar="GALLERY_AUDIT",
    help="When an audit event cannot be written: answer and warn (best-effort, the default), or refuse "
    "with exit 4 (required). Default: $GALLERY_AUDIT.",
)
@click.option(
    "--db",
    "database_url",
    envvar="GALLERY_DATABASE_URL",
    help="The gallery's database: postgresql://user@host:port/db for one shared by several machines "
    "(default: $GALLERY_DATABASE_URL, else gallery.db in the gallery folder).",
)
@click.option(
    "--server",
    metavar="URL",
    envvar=SERVER_ENV,
    help=f"Ask the gallery service at URL (http(s)://host:port) instead of a gallery here: identify, verify, "
    f"enroll, remove, list, info and log. Its key comes from ${API_KEY_ENV}, never the command line. "
    f"Default: ${SERVER_ENV}.",
)
@click.option(
    "--debug",
    is_flag=True,
    envvar=DEBUG_ENV,
    help=f"Print the traceback of an unexpected error (default: ${DEBUG_ENV}).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path | None,
    threads: int | None,
    audit: str | None,
    database_url: str | None,
    server: str | None,
    debug: bool,
) -> None:
    """One-shot face identification: enrol a person from one photo, identify them in others.

    \b
    Example:
        gallery enroll "Ada Lovelace" ada.jpg
        gallery identify door.jpg
    """
    given = ctx.obj if isinstance(ctx.obj, CliContext) else CliContext()
    server = server or given.server
    if server:
        # Said on the command line, a local option with a server is a mistake; set in the
        # environment (a desk's shell may keep $GALLERY_HOME) it is simply not this call's.
        options = {"home": "--home", "threads": "--threads", "audit": "--audit", "database_url": "--db"}
        local = [option for name, option in options.items() if _on_command_line(ctx, name)]
        if local:
            raise click.UsageError(f"{', '.join(local)} apply to a gallery here, not with --server")
    ctx.obj = dataclasses.replace(
        given,
        home=home or given.home,
        threads=threads or given.threads,
        audit="required" if audit == "required" else "best_effort" if audit else given.audit,
        database_url=database_url or given.database_url,
        server=server or None,
        api_key=os.environ.get(API_KEY_ENV) or given.api_key,
    )


def _on_command_line(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
