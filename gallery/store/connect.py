"""Which database a gallery uses: ``gallery.db`` in its home folder, or the one a URL names.

SQLite in the home folder is the default: nothing changes for a single machine. A
``postgresql://`` URL (``postgres://`` too, and ``postgresql+psycopg://``) names a database
shared by several hosts; each host's home folder then keeps only what is local to it (its
index replica, its host id). psycopg is imported only when a server is named.
"""

from __future__ import annotations

from pathlib import Path

from gallery.errors import InvalidDatabaseUrl
from gallery.store.backend import Backend
from gallery.store.sqlite import SqliteBackend

DATABASE_FILE = "gallery.db"
DATABASE_URL_ENV = "GALLERY_DATABASE_URL"


def open_backend(home: Path, database_url: str | None, *, lock_timeout: float) -> tuple[Backend, Path | None]:
    """The opened (and migrated) database, and its file when it is SQLite.

    Raises:
        InvalidDatabaseUrl: the URL is malformed or of an unsupported database; as well as
            each backend's own ``open`` errors.
    """
    if database_url is None:
        path = home / DATABASE_FILE
        return SqliteBackend.open(path, lock_timeout=lock_timeout), path
    if not isinstance(database_url, str) or not database_url.strip():
        raise InvalidDatabaseUrl(f"the database URL must be a non-empty string, not {database_url!r}")
    scheme = database_url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        path = Path(database_url.removeprefix("sqlite:///"))
        if not database_url.startswith("sqlite:///") or not path.name:
            raise InvalidDatabaseUrl("a SQLite URL names a file: sqlite:///relative/path or sqlite:////absolute/path")
        path = path.absolute()
        return SqliteBackend.open(path, lock_timeout=lock_timeout), path
    from gallery.store.postgres import PostgresBackend  # psycopg only for those who use it

    return PostgresBackend.open(database_url, lock_timeout=lock_timeout), None
