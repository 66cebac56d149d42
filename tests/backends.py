"""The two databases a gallery runs on, for tests that must hold on both.

The ``database`` fixture (tests/conftest.py) gives each test a ``Database``: SQLite in the
home folder, or a fresh database on the session's PostgreSQL server (``tests/pg_server.py``).
A store on a server learns of another store's writes through its follower (a wake-up, or the
periodic check), not before each search as on SQLite: ``caught_up`` waits for that, bounded,
so one test reads the same on both.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from gallery.store import Store

CATCH_UP_S = 5.0  # how long a follower may take to apply a change (a correctness bound, not a speed goal)


class Database:
    """Where a test's gallery keeps its rows: ``url`` None for ``gallery.db`` in the home folder."""

    def __init__(self, url: str | None, server: Any = None) -> None:
        self.url = url
        self._server = server  # tests/pg_server.PostgresServer, for another database

    @property
    def kind(self) -> str:
        return "sqlite" if self.url is None else "postgresql"

    def open(self, home: Path | str, *, model: str, **options: Any) -> Store:
        """``Store.open`` on this database, with this host's replica in ``home``."""
        return Store.open(home, model=model, database_url=self.url, **options)

    def another(self) -> Database:
        """A second, separate gallery (SQLite: the same, since each home folder holds its own)."""
        return self if self.url is None else Database(self._server.new_database(), self._server)

    def execute(self, home: Path, sql: str) -> None:
        """Run ``sql`` behind the store's back, as another program would."""
        if self.url is None:
            with sqlite3.connect(home / "gallery.db") as connection:
                connection.execute(sql)
            return
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(sql)  # type: ignore[arg-type]  # a test's literal statement


def wait_for(condition: Callable[[], bool], timeout_s: float = CATCH_UP_S) -> float:
    """Poll ``condition`` until it holds; returns the seconds it took.

    Raises:
        AssertionError: it did not hold within ``timeout_s``.
    """
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"not within {timeout_s:g} s: {condition}")
        time.sleep(0.01)
    return time.monotonic() - began


def caught_up(reader: Store, writer: Store) -> None:
    """Wait until ``reader``'s replica holds what ``writer`` last wrote (at once on SQLite)."""
    wait_for(lambda: reader.generation() >= writer.generation())
