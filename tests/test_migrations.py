"""The packaged Alembic migrations build exactly the models' schema, both ways, safely."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from gallery.errors import GalleryError
from gallery.store import NotAGallery, SchemaTooNew, Store, StoreError, migrate, sqlite
from gallery.store.schema import HEAD_REVISION, metadata
from gallery.store.sqlite import SqliteBackend, make_engine

MODEL = "test-model"


def schema_differences(path: Path) -> list:
    """What Alembic autogenerate would change to make the database match the models."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    return differences


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_upgrade_from_empty_matches_the_models(tmp_path: Path) -> None:
    SqliteBackend.open(tmp_path / "gallery.db").close()
    assert schema_differences(tmp_path / "gallery.db") == []


def test_downgrade_to_base_then_upgrade_again(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    database = SqliteBackend.open(path)
    engine = make_engine(path)
    with engine.connect() as connection:
        sqlite.downgrade(connection, "base")
    assert tables(path) - {"sqlite_sequence"} == {"alembic_version"}
    with engine.connect() as connection:
        assert migrate.current_revision(connection) is None
        connection.rollback()
        sqlite.upgrade(connection, "head")
    engine.dispose()
    database.close()
    assert schema_differences(path) == []
    assert SqliteBackend.open(path).schema_revision() == migrate.head_revision()


def test_an_older_database_is_upgraded_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    SqliteBackend.open(path).close()
    engine = make_engine(path)
    with engine.connect() as connection:
        sqlite.downgrade(connection, "base")
    engine.dispose()
    with Store.open(tmp_path, model=MODEL) as store:
        assert store.stats().schema_revision == migrate.head_revision()
    assert schema_differences(path) == []


def test_people_and_face_ids_are_never_reused(tmp_path: Path) -> None:
    SqliteBackend.open(tmp_path / "gallery.db").close()
    with sqlite3.connect(tmp_path / "gallery.db") as connection:
        sql = dict(connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    assert "AUTOINCREMENT" in sql["people"]
    assert "AUTOINCREMENT" in sql["faces"]


def test_a_database_from_a_newer_gallery_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    SqliteBackend.open(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00d_from_the_future'")
    with pytest.raises(SchemaTooNew, match=r"f00d_from_the_future.*upgrade the gallery"):
        Store.open(tmp_path, model=MODEL)
    assert issubclass(SchemaTooNew, StoreError) and issubclass(StoreError, GalleryError)
    with sqlite3.connect(path) as connection:  # untouched
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("f00d_from_the_future",)]


def test_a_foreign_sqlite_database_is_not_taken_for_a_gallery(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "gallery.db") as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with pytest.raises(NotAGallery, match="invoices"):
        Store.open(tmp_path, model=MODEL)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    (tmp_path / "gallery.db").write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(NotAGallery, match="not a readable gallery database"):
        Store.open(tmp_path, model=MODEL)


def test_opening_does_not_touch_the_hosts_logging(tmp_path: Path) -> None:
    host_logger = logging.getLogger("host.application")
    handlers_before = list(logging.root.handlers)
    level_before = logging.root.level
    Store.open(tmp_path, model=MODEL).close()
    assert not host_logger.disabled
    assert logging.root.handlers == handlers_before
    assert logging.root.level == level_before


def test_every_connection_has_the_gallery_pragmas(tmp_path: Path) -> None:
    database = SqliteBackend.open(tmp_path / "gallery.db")
    for _ in range(3):  # several pooled connections, held at once
        engine_connections = [database._engine.connect() for _ in range(3)]
        for connection in engine_connections:
            raw = connection.connection.driver_connection
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
            assert raw.execute("PRAGMA secure_delete").fetchone()[0] == 1
            assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        for connection in engine_connections:
            connection.close()
    database.close()


def test_migrations_keep_foreign_keys_on_afterwards_and_leave_data_intact(tmp_path: Path) -> None:
    database = SqliteBackend.open(tmp_path / "gallery.db")
    assert database._pragma("foreign_keys") == 1
    assert database.integrity_problems() == []
    assert set(inspect(create_engine(f"sqlite:///{tmp_path / 'gallery.db'}")).get_table_names()) >= {
        "people",
        "faces",
        "settings",
        "audit_log",
        "store_state",
    }
    database.close()


def test_the_head_revision_opening_checks_without_alembic_is_alembics_head() -> None:
    assert migrate.head_revision() == HEAD_REVISION
