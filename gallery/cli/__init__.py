"""The ``gallery`` command: a thin click layer over ``gallery.Gallery``.

Each command resolves its options, calls one ``Gallery`` method through ``CliContext.run``
(which turns a ``GalleryError`` into a one-line message and an exit code) and prints the
result as text or ``--json``. ``app`` holds the group and its options, ``context`` what every
command shares, ``people`` the day-to-day commands and ``admin`` the administrative ones.
Nothing here imports torch, FAISS or the store until a command runs.
"""

from gallery.cli import admin, hosts, keys, people, serve  # noqa: F401  (registers the commands on the group)
from gallery.cli.app import cli
from gallery.cli.context import (
    EXIT_ERASURE_PENDING,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NO_FACE,
    EXIT_NO_MATCH,
    EXIT_OK,
    EXIT_USAGE,
    CliContext,
)


def main() -> None:
    cli(prog_name="gallery")


__all__ = [
    "EXIT_ERASURE_PENDING",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NO_FACE",
    "EXIT_NO_MATCH",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliContext",
    "cli",
    "main",
]
