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

import socket
import statistics
import time
from pathlib import Path

import psycopg
import pytest
from backends import wait_for
from host_process import Host, vector_of

from gallery.store.hosts import HOST_ID_FILE

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

    # Erased from a door's disk too, not only from its memory: its replica file is saved without them.
    assert desk.call("enroll", names=["secret"])["errors"] == []
    late_door = hosts("late-door", postgres_url)  # opens holding "secret" in its replica file
    secret = vector_of("secret").tobytes()
    assert secret in (late_door.home / "faces.faiss").read_bytes()
    late_door.send("await_identify", name="secret", expected=None, timeout_s=WAKE_UP_BOUND_S)
    desk.call("remove", name="secret")
    assert late_door.receive()["ok"]["seen"] is not None
    wait_for(lambda: not any(secret in p.read_bytes() for p in late_door.home.iterdir()), WAKE_UP_BOUND_S)
    print(
        f"\nenrolment -> recognised at another host: median {1000 * statistics.median(recognised):.0f} ms, "
        f"max {1000 * max(recognised):.0f} ms; removal -> refused: median {1000 * statistics.median(refused):.0f} ms, "
        f"max {1000 * max(refused):.0f} ms ({len(refused)} rounds)"
    )


def test_a_host_offline_while_100_are_enrolled_and_30_removed_catches_up_to_exactly_the_database(
    hosts, postgres_url: str, tmp_path: Path
) -> None:
    desk, door = hosts("desk", postgres_url), hosts("door", postgres_url)
    assert desk.call("enroll", names=["before"])["errors"] == []
    door.send("await_identify", name="before", expected="before", timeout_s=WAKE_UP_BOUND_S)
    assert door.receive()["ok"]["seen"] is not None
    door.close()  # offline: its process stopped, its home folder (and replica file) kept

    everyone = [f"person-{i:03d}" for i in range(100)]
    assert desk.call("enroll", names=everyone)["errors"] == []
    removals = []
    door_id = (tmp_path / "door" / HOST_ID_FILE).read_text()
    for name in ["before", *everyone[:29]]:
        began = time.monotonic()
        # The door closed cleanly: no removal waits for it, but each names it, since its file on
        # disk still holds the people removed until it opens again.
        assert desk.call("remove", name=name)["pending"] == [f"host {socket.gethostname()} ({door_id[:8]}, offline)"]
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


def test_four_writers_on_two_hosts_and_two_doors_lose_nothing_and_end_equal_to_the_database(
    hosts, postgres_url: str, tmp_path: Path
) -> None:
    # Two hosts (home folders), each with two writer processes and one door process.
    writers = [hosts(f"host{w % 2}", postgres_url) for w in range(4)]
    doors = [hosts(f"host{d}", postgres_url) for d in range(2)]
    names = {w: [f"writer{w}-person{i:02d}" for i in range(10)] for w in range(4)}
    everyone = sorted(n for batch in names.values() for n in batch)
    # Every writer also tries one name another writer enrols: exactly one of them may succeed.
    contested = ["contested-0", "contested-1"]
    stop = tmp_path / "stop"
    for door in doors:
        door.send("identify_until", stop_file=str(stop), names=everyone[::3] + contested)
    for w, writer in enumerate(writers):
        writer.send("enroll", names=[*names[w], contested[w % 2]])
    results = [writer.receive()["ok"] for writer in writers]
    stop.touch()
    watched = [door.receive()["ok"] for door in doors]

    refused = [error for result in results for error in result["errors"]]
    assert len(refused) == 2 and all("AlreadyEnrolled" in error for error in refused), refused
    assert database_people(postgres_url) == sorted([*everyone, *contested])  # everyone once, nobody lost
    for door in watched:
        assert door["wrong"] == [] and door["calls"] > 0
    for process in writers + doors:  # each host's replica (memory and file) equal to the database
        check = process.call("check")
        assert check["problems"] == [] and check["indexed"] == len(everyone) + 2


def test_a_writer_killed_in_the_middle_of_its_transaction_leaves_nothing_half_written(hosts, postgres_url: str) -> None:
    victim, other = hosts("host-a", postgres_url), hosts("host-b", postgres_url)
    assert victim.call("enroll", names=["present"])["errors"] == []
    with psycopg.connect(postgres_url) as blocker:
        # The writer's transaction inserts the person and the face, then bumps the generation:
        # holding that row makes it stop there, half written, until killed.
        blocker.execute("SELECT 1 FROM store_state WHERE id = 1 FOR UPDATE")
        victim.send("enroll", names=["half-written"])
        with psycopg.connect(postgres_url, autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while not watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE store_state%%'"
            ).fetchone():
                assert time.monotonic() < deadline, "the writer never reached its generation bump"
                time.sleep(0.01)
            inserted = watcher.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE a.wait_event_type = 'Lock' AND l.mode = 'RowExclusiveLock' AND l.granted"
            ).fetchone()
            assert inserted and inserted[0] > 0  # it had written rows of its own when it was killed
        victim.kill()
        other.send("enroll", names=["after-the-kill"])  # queues behind the dead writer's lock
        blocker.rollback()
    assert other.receive()["ok"]["errors"] == []  # the others go on
    assert database_people(postgres_url) == ["after-the-kill", "present"]
    with psycopg.connect(postgres_url) as connection:
        orphans = connection.execute("SELECT count(*) FROM faces WHERE person_id NOT IN (SELECT id FROM people)")
        assert orphans.fetchone() == (0,)
    assert other.call("check")["problems"] == []
    reopened = hosts("host-a", postgres_url)
    check = reopened.call("check")
    assert check["problems"] == [] and check["people"] == ["after-the-kill", "present"]
    assert reopened.call("identify", name="half-written") is None


def test_doors_answer_from_their_replica_through_an_outage_then_refuse_and_recover_without_a_restart(
    postgres_server, tmp_path: Path
) -> None:
    from pg_server import PostgresServer

    server = PostgresServer(postgres_server.programs)  # its own: stopping it disturbs no other test
    started: list[Host] = []
    try:
        url = server.new_database()
        options = {"max_staleness_s": 3.0, "check_interval_s": 0.5}
        desk, door = (Host(tmp_path / name, url, **options) for name in ("desk", "door"))
        started += [desk, door]
        assert desk.call("enroll", names=["ada", "grace"])["errors"] == []
        door.send("await_identify", name="grace", expected="grace", timeout_s=WAKE_UP_BOUND_S)
        assert door.receive()["ok"]["seen"] is not None

        server.stop("immediate")
        stopped = time.monotonic()
        # Writes fail at once with a typed error, and write nothing.
        began = time.monotonic()
        refused = desk.attempt("enroll", names=["alan"])["ok"]["errors"]
        assert len(refused) == 1 and "DatabaseUnavailable" in refused[0]
        assert time.monotonic() - began < 5, "a write hung on the unreachable database"
        removal = desk.attempt("remove", name="ada")
        assert removal["error"] == "DatabaseUnavailable"
        # Doors answer from their replica, saying how old it is, until the maximum staleness...
        answers = []
        while (answer := door.attempt("identify", name="grace")).get("ok") == "grace":
            state = door.attempt("state")  # the age the answer was given at (or just past the limit now)
            answers.append(state["ok"]["age_s"] if "ok" in state else 3.0)
            assert time.monotonic() - stopped < 3.0 + WAKE_UP_BOUND_S, "the door never refused"
        # ...then refuse: nothing is decided on data older than that.
        refused_after = time.monotonic() - stopped
        assert answer["error"] == "DataTooStale", answer
        assert answers and max(answers) <= 3.0 + 0.5
        assert door.attempt("identify", name="ada")["error"] == "DataTooStale"

        server.start()
        # Every host reconnects by itself: fresh answers, and writes that land.
        door.send("await_identify", name="grace", expected="grace", timeout_s=15)
        assert door.receive()["ok"]["seen"] is not None
        assert desk.call("enroll", names=["alan"])["errors"] == []
        door.send("await_identify", name="alan", expected="alan", timeout_s=WAKE_UP_BOUND_S)
        assert door.receive()["ok"]["seen"] is not None
        desk.call("remove", name="ada")
        door.send("await_identify", name="ada", expected=None, timeout_s=WAKE_UP_BOUND_S)
        assert door.receive()["ok"]["seen"] is not None
        assert database_people(url) == ["alan", "grace"]
        assert door.call("check")["problems"] == [] and desk.call("check")["problems"] == []
        print(f"\nthe door answered {len(answers)} times through the outage, refused {refused_after:.1f} s in")
    finally:
        for host in started:
            host.kill()
        server.close()
