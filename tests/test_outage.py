"""A door on a PostgreSQL gallery through a database outage: it answers from its replica, then refuses, then recovers.

The whole Gallery (identify's cohort and template scoring included) over the fake pipeline, on a
PostgreSQL server of its own, stopped as a crash would stop it (``pg_ctl stop -m immediate``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import FakePipeline, fake_photo
from pg_server import PostgresServer

from gallery import DatabaseUnavailable, DataTooStale, Gallery

MAX_STALENESS_S = 3.0


def eventually(check, timeout_s: float = 15.0):
    """``check()``'s first result that does not raise, retrying until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_door_decides_from_its_replica_then_refuses_then_recovers(
    own_postgres_server: PostgresServer, tmp_path: Path
) -> None:
    server = own_postgres_server
    url = server.new_database()
    pipeline = FakePipeline()
    with Gallery(tmp_path / "door", pipeline=pipeline, database_url=url, max_staleness_s=MAX_STALENESS_S) as door:
        for name in ("Ada Lovelace", "Alan Turing", "Grace Hopper"):
            door.enroll(name, fake_photo(name))
        assert door.identify(fake_photo("Alan Turing"))[0].match.name == "Alan Turing"

        server.stop("immediate")
        stopped = time.monotonic()
        # Deciding from memory: the rule, the index, the names and the templates are all in the replica.
        answered = door.identify(fake_photo("Ada Lovelace"))[0]
        assert answered.match is not None and answered.match.name == "Ada Lovelace"
        assert answered.data is not None and answered.data.age_s < MAX_STALENESS_S
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            door.enroll("Katherine Johnson", fake_photo("Katherine Johnson"))
        assert time.monotonic() - began < 10  # at once, not after a long hang
        time.sleep(max(0.0, MAX_STALENESS_S + 0.5 - (time.monotonic() - stopped)))
        with pytest.raises(DataTooStale):
            door.identify(fake_photo("Ada Lovelace"))

        server.start()
        recovered = eventually(lambda: door.identify(fake_photo("Grace Hopper"))[0])
        assert recovered.match is not None and recovered.match.name == "Grace Hopper"
        door.enroll("Katherine Johnson", fake_photo("Katherine Johnson"))  # writes work again, no restart
        assert door.identify(fake_photo("Katherine Johnson"))[0].match.name == "Katherine Johnson"
