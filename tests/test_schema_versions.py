"""Schema versions seen from the command line: a newer gallery is refused clearly, an older one migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner
from fakes import FakePipeline

from gallery.cli import EXIT_ERROR, EXIT_OK, cli
from gallery.gallery import Gallery
from gallery.store import SchemaTooNew, migrate, sqlite
from gallery.store.sqlite import make_engine


def _info(home: Path):
    return CliRunner().invoke(cli, ["--home", str(home), "info", "--json"])


def test_a_gallery_from_a_newer_version_is_refused_with_a_clear_message_and_exit_4(tmp_path: Path) -> None:
    home = tmp_path / "gallery"
    Gallery(home, pipeline=FakePipeline()).close()
    with sqlite3.connect(home / "gallery.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0042_from_the_future'")
    before = (home / "gallery.db").read_bytes()
    result = _info(home)
    assert result.exit_code == EXIT_ERROR
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message and "Traceback" not in message
    assert "0042_from_the_future" in message and "newer" in message and "upgrade" in message
    assert (home / "gallery.db").read_bytes() == before  # untouched
    assert issubclass(SchemaTooNew, Exception)


def test_a_gallery_from_an_older_version_is_migrated_when_opened(tmp_path: Path) -> None:
    home = tmp_path / "gallery"
    Gallery(home, pipeline=FakePipeline()).close()
    engine = make_engine(home / "gallery.db")
    with engine.connect() as connection:
        sqlite.downgrade(connection, "base")  # the oldest schema there is: none yet
    engine.dispose()
    result = _info(home)
    assert result.exit_code == EXIT_OK, result.output
    assert f'"schema_revision": "{migrate.head_revision()}"' in result.stdout
