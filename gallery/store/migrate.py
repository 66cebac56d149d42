"""The packaged Alembic migrations, programmatically, on any backend.

No ``alembic.ini`` is needed: the script location is found from the installed package
(``gallery.migrations``) or, in a source checkout, the repository's ``migrations/`` folder.
A backend runs them in its own way (``gallery.store.sqlite.upgrade``: one transaction with
foreign keys off, then checked).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect

from gallery.errors import NotAGallery, SchemaTooNew, StoreError


def migrations_dir() -> Path:
    """The folder holding ``env.py`` and ``versions/``, installed or in a source checkout."""
    spec = importlib.util.find_spec("gallery.migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged migrations, optionally bound to ``connection``."""
    config = Config()
    # ConfigParser interpolates '%', which a path may contain.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise StoreError(f"the packaged migrations have {len(heads)} heads; expected exactly one")
    return heads[0]


def current_revision(connection: Connection) -> str | None:
    """The database's schema revision, None for an empty database.

    Raises:
        NotAGallery: the database holds tables but no Alembic revision.
        SchemaTooNew: the revision is unknown to this code (written by a newer gallery).
    """
    heads = MigrationContext.configure(connection).get_current_heads()
    if not heads:
        tables = [
            t for t in inspect(connection).get_table_names() if not t.startswith("sqlite_") and t != "alembic_version"
        ]
        if tables:
            raise NotAGallery(f"the database holds tables {tables} but is not a gallery database")
        return None
    if len(heads) != 1:
        raise NotAGallery(f"the database records several schema revisions {list(heads)}")
    revision = heads[0]
    script = ScriptDirectory.from_config(alembic_config())
    try:
        known = script.get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        raise SchemaTooNew(
            f"the database has schema revision {revision!r}, newer than this gallery knows "
            f"(newest known: {head_revision()!r}); upgrade the gallery package to open it"
        )
    return revision


def run(connection: Connection, action: str, revision: str) -> None:
    """Run Alembic's ``upgrade`` or ``downgrade`` to ``revision`` in the connection's transaction.

    Each backend wraps this in its own transaction and checks (``sqlite.upgrade``).
    """
    config = alembic_config(connection)
    if action == "upgrade":
        command.upgrade(config, revision)
    elif action == "downgrade":
        command.downgrade(config, revision)
    else:
        raise ValueError(f"not a migration action: {action!r}")
