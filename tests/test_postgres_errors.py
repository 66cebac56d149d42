"""A PostgreSQL gallery's bad URLs and failures: each gets its typed error and changes nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from pg_server import PASSWORD
from test_store import MODEL, embedding, face

from gallery.errors import DatabaseLoginRefused, DatabaseUnavailable, InvalidDatabaseUrl, SchemaTooNew
from gallery.store import Store
from gallery.store.schema import HEAD_REVISION


def open_refused(home: Path, url: str, error: type[Exception]) -> Exception:
    with pytest.raises(error) as raised:
        Store.open(home, model=MODEL, database_url=url)
    assert PASSWORD not in str(raised.value)  # a message never shows the password
    assert not home.exists() or list(home.iterdir()) == []  # no host id, no replica file
    return raised.value


def test_urls_that_name_no_usable_database_are_refused_with_their_own_error(postgres_server, tmp_path: Path) -> None:
    server = postgres_server
    open_refused(tmp_path / "a", "postgresql://u@/", InvalidDatabaseUrl)  # no database named
    open_refused(tmp_path / "b", "mysql://u:p@127.0.0.1/gallery", InvalidDatabaseUrl)
    open_refused(tmp_path / "c", "postgresql://u@host:notaport/db", InvalidDatabaseUrl)
    open_refused(tmp_path / "d", server.url(password="wrong-password"), DatabaseLoginRefused)
    open_refused(tmp_path / "e", server.url("no_such_database"), DatabaseLoginRefused)
    closed_port = server.url().replace(f":{server.port}/", ":1/")
    began = time.monotonic()
    open_refused(tmp_path / "f", closed_port, DatabaseUnavailable)
    assert time.monotonic() - began < 10  # refused, not hung


def test_a_database_of_a_newer_schema_is_refused_and_left_as_it_is(postgres_url: str, tmp_path: Path) -> None:
    with Store.open(tmp_path / "first", model=MODEL, database_url=postgres_url) as store:
        store.add_person_with_face("Ada", face(embedding(1)))
    with psycopg.connect(postgres_url) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    open_refused(tmp_path / "second", postgres_url, SchemaTooNew)
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999_from_the_future",)]
        assert connection.execute("SELECT name FROM people").fetchall() == [("Ada",)]
        connection.execute("UPDATE alembic_version SET version_num = %s", (HEAD_REVISION,))
    with Store.open(tmp_path / "first", model=MODEL, database_url=postgres_url) as store:
        assert [p.name for p in store.people()] == ["Ada"]


def test_a_connection_cut_in_the_middle_of_a_write_is_database_unavailable_and_writes_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "home", model=MODEL, database_url=postgres_url) as store:
        store.add_person_with_face("Ada", face(embedding(1)))
        generation = store.generation()
        outcome: list[BaseException | None] = []

        def enrol() -> None:
            try:
                store.add_person_with_face("Grace", face(embedding(2)))
                outcome.append(None)
            except BaseException as error:
                outcome.append(error)

        with psycopg.connect(postgres_url) as blocker, psycopg.connect(postgres_url, autocommit=True) as admin:
            blocker.execute("SELECT 1 FROM store_state WHERE id = 1 FOR UPDATE")  # the write stops at its bump
            writer = threading.Thread(target=enrol)
            writer.start()
            deadline = time.monotonic() + 30
            while not (
                row := admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'UPDATE store_state%%'"
                ).fetchone()
            ):
                assert time.monotonic() < deadline, "the write never reached its generation bump"
                time.sleep(0.01)
            admin.execute("SELECT pg_terminate_backend(%s)", row)  # the database vanishes under the write
            writer.join(timeout=30)
            blocker.rollback()
        assert len(outcome) == 1 and isinstance(outcome[0], DatabaseUnavailable), outcome
        assert [p.name for p in store.people()] == ["Ada"] and store.generation() == generation
        assert store.search(embedding(2), 1)[0][0].distance > 1.0
        store.add_person_with_face("Grace", face(embedding(2)))  # the next write gets a new connection
        assert [p.name for p in store.people()] == ["Ada", "Grace"]
        assert store.consistency_problems() == []
