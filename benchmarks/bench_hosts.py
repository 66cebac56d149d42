"""Two hosts on one PostgreSQL database: how soon host B sees an enrolment, and a removal, made at host A.

    python -m benchmarks.bench_hosts [--rounds 100] [--people 10000] [--database-url URL]

Without ``--database-url`` a throwaway server is started (tests/pg_server.py). The database is
filled with ``--people`` synthetic people (``benchmarks/pg_fill.py``), then two processes open
it as two hosts, each with its own home folder and ``Store.open``'s defaults (B's follower
woken by LISTEN/NOTIFY, a periodic check every 2 s). Each round host A enrols a new person
(one synthetic face) while host B polls its own store's ``search`` (the replica in memory, as
identify does; no query of its own to the database) until the person is its nearest match;
then A removes them and B polls until they are no longer found. Times come from the one
monotonic clock both processes share. Reported: p50/p99/max of the delay from the start of A's
call, and from its return (negative: B saw the change before A's call had returned, as A still
saves its index file after the commit, and a removal waits for the connected hosts to apply it),
and A's call times.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.pg_fill import face_record, fill_postgres, postgres, synthetic_faces

MODEL = "bench-synthetic-v1"
WAIT_S = 10.0


def writer_host(home: str, database_url: str, pipe: Connection) -> None:
    """Host A: enrol or remove on command; reply with the monotonic times around the call."""
    from gallery.store import Store

    with Store.open(home, model=MODEL, database_url=database_url) as store:
        pipe.send("ready")
        while (command := pipe.recv()) is not None:
            operation, name, vector = command
            started = time.monotonic()
            if operation == "enroll":
                store.add_person_with_face(name, face_record(vector, MODEL, os.urandom(32).hex()))
            else:
                store.remove_person(name)
            pipe.send((started, time.monotonic()))


def door_host(home: str, database_url: str, pipe: Connection) -> None:
    """Host B: poll the store's search until ``name`` is (or is no longer) the nearest; reply when."""
    from gallery.store import Store

    with Store.open(home, model=MODEL, database_url=database_url) as store:
        pipe.send("ready")
        while (command := pipe.recv()) is not None:
            wanted, name, vector = command
            query = vector[None, :]
            deadline = time.monotonic() + WAIT_S
            while True:
                (hits,) = store.search(query, 1)
                now = time.monotonic()
                if (bool(hits) and hits[0].name == name) == (wanted == "present"):
                    pipe.send(now)
                    break
                if now > deadline:
                    pipe.send(None)
                    break
                time.sleep(0.001)


def _start(context: Any, target: Any, home: Path, database_url: str) -> tuple[Any, Connection]:
    ours, theirs = context.Pipe()
    process = context.Process(target=target, args=(str(home), database_url, theirs), daemon=True)
    process.start()
    if ours.recv() != "ready":
        raise RuntimeError(f"{target.__name__} did not start")
    return process, ours


def _summary(label: str, values_ms: list[float]) -> str:
    p50, p99 = np.percentile(values_ms, [50, 99])
    return f"{label:<44} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   max {max(values_ms):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--people", type=int, default=10_000, help="people in the gallery besides the visitors")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway server)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gallery-bench-hosts-"))
    visitors = synthetic_faces(args.rounds, seed=1)
    with postgres(args.database_url) as database_url:
        from gallery.store import Store

        # The schema, made by host A itself (a host that closed counts as connected for a while).
        Store.open(work / "host-a", model=MODEL, database_url=database_url).close()
        fill_postgres(database_url, synthetic_faces(args.people), MODEL)
        context = multiprocessing.get_context("spawn")
        writer, a = _start(context, writer_host, work / "host-a", database_url)
        door, b = _start(context, door_host, work / "host-b", database_url)
        delays: dict[str, list[float]] = {key: [] for key in ("enroll", "remove")}
        after_return: dict[str, list[float]] = {key: [] for key in ("enroll", "remove")}
        calls: dict[str, list[float]] = {key: [] for key in ("enroll", "remove")}
        missed = 0
        for round_ in range(args.rounds):
            name = f"visitor {round_}"
            for operation, wanted in (("enroll", "present"), ("remove", "absent")):
                b.send((wanted, name, visitors[round_]))
                a.send((operation, name, visitors[round_]))
                started, returned = a.recv()
                seen = b.recv()
                if seen is None:
                    missed += 1
                    continue
                delays[operation].append(1000 * (seen - started))
                after_return[operation].append(1000 * (seen - returned))
                calls[operation].append(1000 * (returned - started))
        for pipe, process in ((a, writer), (b, door)):
            pipe.send(None)
            process.join(30)
    print(f"{args.rounds} rounds, {args.people:,} people in the gallery, load {os.getloadavg()[0]:.2f}")
    print(_summary("enrolled at A -> recognised at B (from call)", delays["enroll"]))
    print(_summary("  from A's call returning", after_return["enroll"]))
    print(_summary("  A's add_person_with_face", calls["enroll"]))
    print(_summary("removed at A -> refused at B (from call)", delays["remove"]))
    print(_summary("  from A's call returning", after_return["remove"]))
    print(_summary("  A's remove_person", calls["remove"]))
    print(f"not seen within {WAIT_S:g} s: {missed}")


if __name__ == "__main__":
    main()
