"""Several processes share one gallery: enrolment desks write at once while doors identify.

A hundred distinct faces are needed, more than data/ holds, so the gallery runs on the
deterministic fake pipeline (tests/fakes.py): what is under test is the facade and the
store across processes, not the embedder.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from fakes import FAKE_MODEL, FakePipeline, fake_photo

from gallery.gallery import Gallery
from gallery.store import Store

ENROLLERS = 4
PEOPLE_PER_ENROLLER = 25
IDENTIFIERS = 2
JOIN_TIMEOUT_S = 300  # a deadlock guard, not a speed requirement


def person_name(enroller: int, index: int) -> str:
    return f"desk{enroller}-person{index:02d}"


EVERYONE = [person_name(e, i) for e in range(ENROLLERS) for i in range(PEOPLE_PER_ENROLLER)]


def _context() -> Any:
    # Children fork from a server that imported the gallery once (cheaper than spawning six
    # interpreters), never from this process, whose torch and OpenMP threads may be running.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["gallery.gallery", "faiss", "fakes"])
    return context


def _enroll_people(home: str, enroller: int, start: Any, report: Any) -> None:
    """An enrolment desk: enrol its 25 people, one photo each, as fast as it can."""
    start.wait()
    errors = []
    with Gallery(home, pipeline=FakePipeline()) as gallery:
        for index in range(PEOPLE_PER_ENROLLER):
            name = person_name(enroller, index)
            try:
                gallery.enroll(name, fake_photo(name))
            except Exception as error:  # reported, so the test names it
                errors.append(f"{name}: {type(error).__name__}: {error}")
    report.put(("enroller", enroller, errors))


def _identify_until_done(home: str, reader: int, start: Any, done: Any, report: Any) -> None:
    """A door: identify photos of everyone over and over; a match must always be the right person."""
    photos = {name: fake_photo(name) for name in EVERYONE}
    start.wait()
    calls, failures, recognised = 0, [], set()

    def identify(name: str) -> None:
        nonlocal calls
        calls += 1
        try:
            (face,) = gallery.identify(photos[name])
        except Exception as error:
            failures.append(f"identify({name}): {type(error).__name__}: {error}")
            return
        if face.match is not None:
            if face.match.name != name:
                failures.append(f"{name}'s photo matched {face.match.name}")
            recognised.add(name)

    with Gallery(home, pipeline=FakePipeline()) as gallery:
        turn = reader
        while not done.is_set():
            identify(EVERYONE[turn % len(EVERYONE)])
            turn += 7  # the two readers walk the gallery in different orders
            time.sleep(0.02)  # a busy door; each identify also writes (and syncs) an audit entry
        calls_during_writes = calls
        missing = []
        for name in EVERYONE:  # afterwards everyone must be recognised
            identify(name)
            if name not in recognised:
                missing.append(name)
        if missing:
            failures.append(f"not recognised after every enrolment finished: {missing[:5]}...")
    report.put(("identifier", reader, {"calls": calls_during_writes, "failures": failures}))


def test_four_desks_enrol_100_people_while_two_doors_identify(tmp_path: Path) -> None:
    home = str(tmp_path / "gallery")
    Gallery(home, pipeline=FakePipeline()).close()  # created once, so the children only work
    context = _context()
    start, done, report = context.Barrier(ENROLLERS + IDENTIFIERS), context.Event(), context.Queue()
    enrollers = [context.Process(target=_enroll_people, args=(home, e, start, report)) for e in range(ENROLLERS)]
    identifiers = [
        context.Process(target=_identify_until_done, args=(home, r, start, done, report)) for r in range(IDENTIFIERS)
    ]
    for process in enrollers + identifiers:
        process.start()
    reports = {}
    for _ in enrollers:
        kind, number, value = report.get(timeout=JOIN_TIMEOUT_S)
        reports[kind, number] = value
    done.set()
    for _ in identifiers:
        kind, number, value = report.get(timeout=JOIN_TIMEOUT_S)
        reports[kind, number] = value
    for process in enrollers + identifiers:
        process.join(timeout=JOIN_TIMEOUT_S)
    assert [p.exitcode for p in enrollers + identifiers] == [0] * (ENROLLERS + IDENTIFIERS)

    for enroller in range(ENROLLERS):
        assert reports["enroller", enroller] == [], reports["enroller", enroller]
    for reader in range(IDENTIFIERS):
        assert reports["identifier", reader]["failures"] == []
        assert reports["identifier", reader]["calls"] >= 10  # it really ran during the writes

    with Store.open(home, model=FAKE_MODEL) as store:
        people = store.people()
        assert sorted(p.name for p in people) == sorted(EVERYONE)  # everyone, each once
        assert all(p.face_count == 1 for p in people)
        assert store.consistency_problems() == []  # integrity, foreign keys, db == both indexes
        assert store.index_repair is None  # the last saved index file matched the database
        assert store.stats().indexed_faces == len(EVERYONE)


# ---- readers never wait for a writer --------------------------------------------------------


def _hold_the_write_lock(home: str, holding: Any, release: Any, report: Any) -> None:
    """A long write: the gallery's write lock and SQLite's, held until told to let go."""
    with Store.open(home, model=FAKE_MODEL) as store, store.write_lock():
        connection = sqlite3.connect(Path(home) / "gallery.db", isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE store_state SET faces_generation = faces_generation WHERE id = 1")
        holding.set()
        released = release.wait(timeout=JOIN_TIMEOUT_S)
        connection.execute("ROLLBACK")
        connection.close()
    report.put(released)


def test_identify_answers_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    home = str(tmp_path / "gallery")
    present = [f"present-{i}" for i in range(5)]
    with Gallery(home, pipeline=FakePipeline()) as gallery:
        for name in present:
            gallery.enroll(name, fake_photo(name))
    context = _context()
    holding, release, report = context.Event(), context.Event(), context.Queue()
    holder = context.Process(target=_hold_the_write_lock, args=(home, holding, release, report))
    holder.start()
    try:
        assert holding.wait(timeout=JOIN_TIMEOUT_S)
        with Gallery(home, pipeline=FakePipeline()) as gallery:
            # A desk in this process starts an enrolment: it must wait for the holder...
            enrolment = threading.Thread(target=gallery.enroll, args=("latecomer", fake_photo("latecomer")))
            enrolment.start()
            # ...while the door in this process keeps answering, for a few seconds of the hold.
            latencies, answers = [], []
            began = time.monotonic()
            while time.monotonic() - began < 2.0 or len(latencies) < 20:
                name = present[len(latencies) % len(present)]
                t0 = time.monotonic()
                (face,) = gallery.identify(fake_photo(name))
                latencies.append(time.monotonic() - t0)
                answers.append(face.match.name if face.match else None)
            enrolment_was_waiting = enrolment.is_alive()
            held_s = time.monotonic() - began
            release.set()  # only now does the holder let go
            assert report.get(timeout=JOIN_TIMEOUT_S) is True  # it held the lock through every identify
            enrolment.join(timeout=JOIN_TIMEOUT_S)
            assert [p.name for p in gallery.people()] == sorted([*present, "latecomer"])
    finally:
        release.set()
        holder.join(timeout=JOIN_TIMEOUT_S)
    assert enrolment_was_waiting, "the enrolment did not wait for the other process's write lock"
    assert answers == [present[i % len(present)] for i in range(len(answers))]
    print(
        f"{len(latencies)} identify calls during a {held_s:.1f} s write hold: "
        f"median {1000 * statistics.median(latencies):.1f} ms, max {1000 * max(latencies):.1f} ms"
    )
