"""Shared fixtures: sample photos, and a gallery home per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted weights go to a per-session cache unless the developer points at one already."""
    os.environ.setdefault("GALLERY_CACHE_DIR", str(tmp_path_factory.mktemp("model-cache")))


@pytest.fixture
def photo():
    """Path of a sample photo in data/ by file name."""
    return lambda name: DATA / name


def _postgres_server():
    """A new throwaway PostgreSQL server (``tests/pg_server.py``), or a skip (a failure under CI) without one."""
    from pg_server import REQUIRE_ENV, PostgresServer, server_programs

    programs = server_programs()
    if programs is None:
        message = "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message}, and {REQUIRE_ENV}=1")
        pytest.skip(message)
    return PostgresServer(programs)


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server for the session."""
    server = _postgres_server()
    yield server
    server.close()


@pytest.fixture
def own_postgres_server():
    """A PostgreSQL server for one test alone: one it may stop and start without disturbing the others."""
    server = _postgres_server()
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest):
    """The test's gallery database, once on SQLite in its home folder and once on PostgreSQL (``tests/backends.py``)."""
    from backends import Database

    if request.param == "sqlite":
        return Database(None)
    server = request.getfixturevalue("postgres_server")
    return Database(server.new_database(), server)
