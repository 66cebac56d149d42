"""Many hosts, one PostgreSQL database: each host a process with its own home folder (tests/host_process.py).

What a site with an enrolment desk and doors on several machines relies on: a change made
on one host reaches the others within the wake-up bound, concurrent writers on several hosts
lose nothing and duplicate nothing, a writer killed mid-transaction leaves nothing half
written, a database outage is ridden out from the replica and then refused (never guessed
through), and a host offline for a while catches up from the change log alone.

Timing bounds here are correctness bounds (a removal must reach the doors; an outage must not
hang a write), generous for a loaded 2-core machine; the latencies themselves are printed
(``pytest -s``) and measured properly by benchmarks.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import psycopg
import pytest
from host_process import Host

WAKE_UP_BOUND_S = 5.0


@pytest.fixture
def hosts(tmp_path: Path):
    """Host processes started by a test, ended after it (killed if a test left one running)."""
    started: list[Host] = []

    def start(name: str, url: str, **options) -> Host:
        host = Host(tmp_path / name, url, **options)
        started.append(host)
        return host

    yield start
    for host in started:
        if host.process.poll() is None:
            host.kill()


def database_people(url: str) -> list[str]:
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM people ORDER BY name")]


def test_an_enrolment_reaches_the_other_host_and_a_removal_is_refused_there_within_the_wake_up_bound(
    hosts, postgres_url: str
) -> None:
    desk, door = hosts("desk", postgres_url), hosts("door", postgres_url)
    recognised, refused = [], []
    for round_ in range(8):
        name = f"visitor-{round_}"
        door.send("await_identify", name=name, expected=name, timeout_s=WAKE_UP_BOUND_S)
        enrolled = desk.call("enroll", names=[name])
        seen = door.receive()["ok"]["seen"]
        assert enrolled["errors"] == [] and seen is not None, f"{name} not recognised at the door in time"
        recognised.append(seen - enrolled["began"])

        door.send("await_identify", name=name, expected=None, timeout_s=WAKE_UP_BOUND_S)
        removal = desk.call("remove", name=name)
        seen = door.receive()["ok"]["seen"]
        assert seen is not None, f"{name} still recognised at the door {WAKE_UP_BOUND_S} s after the removal"
        refused.append(seen - removal["began"])
        # The removal waited for the door, a connected host, to apply it: nothing pending there.
        assert removal["pending"] == []
    assert door.call("identify", name="visitor-0") is None
    assert database_people(postgres_url) == []
    print(
        f"\nenrolment -> recognised at another host: median {1000 * statistics.median(recognised):.0f} ms, "
        f"max {1000 * max(recognised):.0f} ms; removal -> refused: median {1000 * statistics.median(refused):.0f} ms, "
        f"max {1000 * max(refused):.0f} ms ({len(refused)} rounds)"
    )


def test_a_host_offline_while_100_are_enrolled_and_30_removed_catches_up_to_exactly_the_database(
    hosts, postgres_url: str
) -> None:
    desk, door = hosts("desk", postgres_url), hosts("door", postgres_url)
    assert desk.call("enroll", names=["before"])["errors"] == []
    door.send("await_identify", name="before", expected="before", timeout_s=WAKE_UP_BOUND_S)
    assert door.receive()["ok"]["seen"] is not None
    door.close()  # offline: its process stopped, its home folder (and replica file) kept

    everyone = [f"person-{i:03d}" for i in range(100)]
    assert desk.call("enroll", names=everyone)["errors"] == []
    removals = []
    for name in ["before", *everyone[:29]]:
        began = time.monotonic()
        # The door closed cleanly: it is not a connected host, so no removal waits for it or lists it.
        assert desk.call("remove", name=name)["pending"] == []
        removals.append(time.monotonic() - began)
    present = everyone[29:]
    assert database_people(postgres_url) == present

    door = hosts("door", postgres_url)  # the same home folder: its replica is 131 changes behind
    assert door.opened["ok"]["index_repair"] is None  # caught up from the change log, not rebuilt
    check = door.call("check")
    assert check["problems"] == [] and check["people"] == present and check["indexed"] == len(present)
    assert door.call("identify", name="person-050") == "person-050"
    assert door.call("identify", name="person-000") is None and door.call("identify", name="before") is None
    print(f"\n30 removals while a host was offline: median {1000 * statistics.median(removals):.0f} ms each")
