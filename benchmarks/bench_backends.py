"""PostgreSQL against SQLite: identify at 100,000 faces, and opening a host's replica at 100,000 and 1,000,000.

    python -m benchmarks.bench_backends [--identify-size 100000] [--open-sizes 100000,1000000]
        [--runs 300] [--changes 200,20] [--database-url URL] [--work DIR]

Galleries are filled fast with synthetic people, one face each (``benchmarks/pg_fill.py``: COPY
on PostgreSQL, executemany on SQLite), labelled with the fake pipeline's model id so that the
same galleries serve both measures of identify:

- **search**: ``Store.search`` of one 128-d query, k=5 (the replica in memory; on SQLite the
  generation is read from the file before each search, on PostgreSQL the follower keeps it
  current and a search makes no round trip), over ``--runs`` probes (other synthetic photos of
  enrolled people);
- **identify**: the whole ``Gallery.identify`` (decision rule, cohort, audit event written in the
  background) with tests/fakes.py's ``FakePipeline`` standing in for the models (a 96x96 photo,
  no detection or CNN: real models add the same ~100+ ms on either backend, see
  ``bench_identify``).

Opening a host, each in a fresh process (wall time of ``Store.open``, and peak RSS, with the
process's RSS before the open for scale):

- **new host**: an empty home folder: the replica is built from the database's embeddings;
- **re-open**: the same home after another host enrolled ``--changes`` N people (batches of
  100) and removed M: the index file is loaded and caught up from the change log.

The host that is re-opened stays offline meanwhile; the rows of the hosts that closed are aged
in ``replica_hosts`` so the removals do not each wait for them (``gallery.store.hosts``: a host that closed counts as
connected for 120 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from benchmarks.pg_fill import (
    ROOT,
    face_record,
    fill_postgres,
    fill_sqlite,
    peak_rss_mb,
    postgres,
    synthetic_faces,
    synthetic_gallery,
)

sys.path.insert(0, str(ROOT / "tests"))
from fakes import FAKE_MODEL, FakePipeline, fake_photo


def _ms(times: list[float]) -> str:
    return f"median {statistics.median(times):6.2f} ms, p95 {float(np.percentile(times, 95)):6.2f} ms"


def measure_identify(home: Path, database_url: str | None, probes: np.ndarray) -> dict[str, Any]:
    """Search and identify latencies on one backend (this process)."""
    from gallery import Gallery
    from gallery.store import Store

    with Store.open(home, model=FAKE_MODEL, database_url=database_url) as store:
        store.search(probes[:1], 5)
        search = []
        for probe in probes:
            start = time.perf_counter()
            store.search(probe[None, :], 5)
            search.append(1000 * (time.perf_counter() - start))
        kind = store.stats().indexed_faces
    photo = fake_photo("a visitor")
    with Gallery(home, pipeline=FakePipeline(), database_url=database_url) as gallery:
        gallery.identify(photo)
        identify = []
        for _ in range(len(probes)):
            start = time.perf_counter()
            gallery.identify(photo)
            identify.append(1000 * (time.perf_counter() - start))
    return {"search": _ms(search), "identify": _ms(identify), "faces": kind}


def open_host(home: str, database_url: str) -> None:
    """(In a fresh process) open a host; print the open's time, RSS before and peak, and why it rebuilt."""
    from gallery.store import Store

    before = peak_rss_mb()
    start = time.perf_counter()
    store = Store.open(home, model=FAKE_MODEL, database_url=database_url)
    open_s = time.perf_counter() - start
    result = {
        "open_s": round(open_s, 2),
        "rss_before_mb": round(before),
        "peak_mb": round(peak_rss_mb()),
        "faces": store.stats().indexed_faces,
        "rebuilt": store.index_repair,
        "index": store._replica.snapshot.index.kind,
    }
    store.close()
    print(json.dumps(result))


def _open_in_child(home: Path, database_url: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_backends",
        "--open-host",
        str(home),
        "--database-url",
        database_url,
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_changes(home: Path, database_url: str, enrolled: int, removed: int) -> float:
    """Another host enrols ``enrolled`` new people (batches of 100) and removes ``removed``; returns seconds."""
    from gallery.store import Store
    from gallery.store.hosts import host_id

    vectors = synthetic_faces(enrolled, seed=7)
    home.mkdir(parents=True, exist_ok=True)
    writer = host_id(home)
    with psycopg.connect(database_url, autocommit=True) as connection:  # the hosts that closed are long gone
        connection.execute(
            "UPDATE replica_hosts SET seen_at = seen_at - interval '1 day' WHERE host_id <> %s", (writer,)
        )
    with Store.open(home, model=FAKE_MODEL, database_url=database_url) as store:
        start = time.perf_counter()
        for first in range(0, enrolled, 100):
            batch = vectors[first : first + 100]
            store.add_many(
                [
                    (f"newcomer {first + i}", [face_record(v, FAKE_MODEL, os.urandom(32).hex())])
                    for i, v in enumerate(batch)
                ]
            )
        for i in range(removed):
            store.remove_person(f"person {i + 1:07d}")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identify-size", type=int, default=100_000)
    parser.add_argument("--open-sizes", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--changes", default="200,20", help="people enrolled,removed before the re-open")
    parser.add_argument("--database-url", help="a PostgreSQL server's database to create databases from")
    parser.add_argument("--work", type=Path, help="folder for the homes (default: a temporary one)")
    parser.add_argument("--open-host", help=argparse.SUPPRESS)  # the child process of an open
    args = parser.parse_args()
    if args.open_host:
        open_host(args.open_host, args.database_url)
        return
    from gallery.store import Store

    work = args.work or Path(tempfile.mkdtemp(prefix="gallery-bench-backends-"))
    enrolled, removed = (int(n) for n in args.changes.split(","))
    print(f"load before: {os.getloadavg()}", flush=True)
    with postgres(args.database_url) as first_url:
        server_url = first_url.rsplit("/", 1)[0]

        def new_database(size: int) -> str:
            name = f"bench_{size}_{os.getpid()}"
            with psycopg.connect(f"{server_url}/postgres", autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{name}"')
            return f"{server_url}/{name}"

        identify_url = None
        if args.identify_size:
            size = args.identify_size
            vectors, probes = synthetic_gallery(size, args.runs)
            sqlite_home, pg_home = work / f"sqlite-{size}", work / f"pg-identify-{size}"
            Store.open(sqlite_home, model=FAKE_MODEL).close()
            fill_sqlite(sqlite_home / "gallery.db", vectors, FAKE_MODEL)
            url = identify_url = new_database(size)
            Store.open(pg_home, model=FAKE_MODEL, database_url=url).close()
            fill_postgres(url, vectors, FAKE_MODEL)
            for backend, home, database_url in (("SQLite", sqlite_home, None), ("PostgreSQL", pg_home, url)):
                result = measure_identify(home, database_url, probes)
                print(f"identify at {size:,} faces, {backend}: {result}  load {os.getloadavg()[0]:.2f}", flush=True)
        for size in (int(n) for n in args.open_sizes.split(",") if n):
            writer = work / f"writer-{size}"
            if size == args.identify_size and identify_url is not None:
                url = identify_url  # filled above
            else:
                url = new_database(size)
                Store.open(writer, model=FAKE_MODEL, database_url=url).close()
                start = time.perf_counter()
                fill_postgres(url, synthetic_faces(size), FAKE_MODEL)
                print(f"filled {size:,} faces by COPY in {time.perf_counter() - start:.0f} s", flush=True)
            host = work / f"host-{size}"
            new = _open_in_child(host, url)
            print(f"new host at {size:,} faces: {new}  load {os.getloadavg()[0]:.2f}", flush=True)
            again = _open_in_child(host, url)
            print(f"re-open, nothing changed, at {size:,}: {again}  load {os.getloadavg()[0]:.2f}", flush=True)
            took = make_changes(writer, url, enrolled, removed)
            print(f"another host enrolled {enrolled} and removed {removed} in {took:.1f} s", flush=True)
            caught_up = _open_in_child(host, url)
            print(f"re-open after those changes at {size:,}: {caught_up}  load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
