"""The gallery's folder: created private, and known by identity so that a moved or deleted one is noticed.

SQLite keeps reading and writing a database file that was deleted or moved, and the index
would be saved into whatever folder now has the gallery's path; comparing the folder's and the
database file's (device, inode) with those seen at open, two ``stat`` calls (about a
microsecond each), stops both.
"""

from __future__ import annotations

import os
from pathlib import Path

from gallery.errors import GalleryVanished, StorageFailure

Identity = tuple[tuple[int, int], tuple[int, int] | None]


def make_home(home: Path) -> Path:
    """``home`` as an absolute path, created private (0700, whatever the umask) if missing.

    An existing folder keeps its owner's mode.

    Raises:
        StorageFailure: the folder cannot be created, or a file has its name.
    """
    home = home.absolute()  # a later chdir must not move the gallery under the store
    try:
        if not home.is_dir():
            home.parent.mkdir(parents=True, exist_ok=True)
            try:
                home.mkdir()
            except FileExistsError:
                pass  # another process created it meanwhile (or a file has its name: below)
            else:
                os.chmod(home, 0o700)
    except OSError as error:
        raise StorageFailure(f"cannot create the gallery folder {home}: {error}") from error
    if not home.is_dir():
        raise StorageFailure(f"cannot create the gallery folder {home}: a file has its name")
    return home


class HomeIdentity:
    """What the folder and its database file (SQLite; None for a server) were when the gallery was opened."""

    def __init__(self, home: Path, database: Path | None) -> None:
        self._home = home
        self._database = database
        self._seen = self._current()
        if self._seen is None:
            raise GalleryVanished(f"the gallery folder {home} vanished while it was being opened")

    def check(self) -> None:
        """Raises ``GalleryVanished`` when the folder or its database was deleted, moved or replaced."""
        if self._current() != self._seen:
            raise GalleryVanished(
                f"the gallery folder {self._home} or its database was deleted, moved or replaced while open;"
                " nothing was done: reopen the gallery where it now is"
            )

    def _current(self) -> Identity | None:
        try:
            return _identity(self._home), None if self._database is None else _identity(self._database)
        except OSError:
            return None


def _identity(path: Path) -> tuple[int, int]:
    """What names one file: its device and inode (a moved, deleted or replaced file has other ones)."""
    found = os.stat(path)
    return found.st_dev, found.st_ino
