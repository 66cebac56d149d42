"""Kill a process that is enrolling and removing people (SIGKILL, at random moments; every fourth
cycle, a random moment early in a removal), reopen
the gallery, and check what the crash left: shared by tests/test_crash.py and
scripts/crash_soak.py.

The victim runs the real ``Gallery`` facade on the fake pipeline (tests/fakes.py) and
reports each operation to the parent before starting it and after it returns. After each
kill the parent checks, from the files alone:

- SQLite's ``PRAGMA integrity_check`` passes, and after reopening, the database, the
  in-memory index and the index file agree (``Store.consistency_problems``);
- every enrolment is wholly there or wholly absent: each person has their faces, each face
  the embedding of one of that person's photos, no face twice;
- nothing reported done is lost (a finished enrolment is there unless a removal of that
  person began; a finished removal is gone), and an interrupted operation either happened
  entirely or not at all;
- no file in the gallery folder holds the embedding of anyone absent from the database
  (a removal or enrolment cut short leaves no biometric trace once the gallery is reopened).

With a PostgreSQL ``database_url`` the victims run on two hosts in turn (two home folders,
``host-a`` and ``host-b``, on one database) and each check also covers:

- a new host (``fresh``: its index file deleted first) that builds its replica from the
  database: ``Store.consistency_problems`` passes;
- a surviving host (``survivor``: a store the parent keeps open throughout, following the
  database) that catches up by itself: it recognises exactly the people stored, each by their
  own photos' embeddings, and nobody removed, and no file in its home holds an absent person's
  embedding.
"""

from __future__ import annotations

import collections
import functools
import multiprocessing
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fakes import FAKE_MODEL, FakePipeline, fake_embedding_of, fake_photo

READY_TIMEOUT_S = 120.0
# Every AIM_EVERY-th cycle waits for a removal to begin and kills within its first AIMED_DELAY_S:
# a removal takes ~10 ms against ~20 for an enrolment, so random moments alone left some runs of
# 32 cycles without a single kill inside a removal (CI, 2026-11-30: 26 in enrolments, 0 in removals).
AIM_EVERY = 4
AIMED_DELAY_S = 0.01
OPERATIONS = ("enroll", "add", "remove")


def photos_of(name: str) -> tuple[str, str]:
    """The two photo seeds a person may have: their enrolment photo and one added later."""
    return name, f"{name} (second photo)"


def victim(home: str, seed: int, connection: Any, database_url: str | None = None) -> None:
    """Enrol, add photos and remove people forever, reporting each step; the parent kills it."""
    from gallery.gallery import Gallery

    rng = random.Random(seed)
    connection.send(("started", None, None))
    with Gallery(home, pipeline=FakePipeline(), database_url=database_url) as gallery:
        connection.send(("ready", None, None))
        for number in range(1_000_000):
            people = gallery.people()
            roll = rng.random()
            if people and roll < 0.3:
                operation, name = "remove", rng.choice(people).name
            elif people and roll < 0.45 and any(p.face_count == 1 for p in people):
                operation, name = "add", rng.choice([p for p in people if p.face_count == 1]).name
            else:
                operation, name = "enroll", f"person-{seed}-{number}"
            connection.send(("begin", operation, name))
            if operation == "remove":
                gallery.remove(name)
            elif operation == "add":
                # The fake pipeline gives every photo its own face: the same-person check would refuse it.
                gallery.enroll(name, fake_photo(photos_of(name)[1]), add=True, allow_different=True)
            else:
                gallery.enroll(name, fake_photo(name))
            connection.send(("done", operation, name))


@dataclass
class CrashSummary:
    """What a run of kill cycles did and found."""

    cycles: int = 0
    killed_during: collections.Counter = field(default_factory=collections.Counter)  # operation -> kills
    operations_done: int = 0
    index_repairs: int = 0
    people_at_end: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        during = ", ".join(f"{count} during {what}" for what, count in sorted(self.killed_during.items()))
        return (
            f"{self.cycles} SIGKILLs ({during}); {self.operations_done} operations completed in between; "
            f"index file rebuilt on {self.index_repairs} reopenings; {self.people_at_end} people at the end; "
            f"{len(self.problems)} problems; {self.seconds:.0f} s"
        )


@dataclass
class _Expected:
    """What the parent knows must be in the gallery, from the victims' reports."""

    faces: dict[str, set[str]] = field(default_factory=dict)  # name -> photo seeds surely stored
    ever: set[str] = field(default_factory=set)  # every name that was ever being enrolled


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["gallery.gallery", "faiss", "fakes", "crash_harness"])
    return context


@functools.cache  # checked every cycle for everyone ever enrolled
def _embedding_bytes(seed: str) -> bytes:
    return fake_embedding_of(seed).astype("<f4").tobytes()


def check_gallery(
    home: Path, expected: _Expected, interrupted: tuple[str, str] | None, database_url: str | None = None
) -> tuple[list[str], bool]:
    """Problems found in the gallery after a crash (empty when sound), and whether the index was rebuilt.

    ``expected`` is updated to what the gallery now holds once the interrupted operation's
    fate is known (it may have happened or not; either is fine if it is whole).
    """
    from gallery.store import Store

    problems = []
    if database_url is None:
        with sqlite3.connect(home / "gallery.db") as raw:
            integrity = [row[0] for row in raw.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            problems.append(f"integrity_check: {integrity[:3]}")
    with Store.open(home, model=FAKE_MODEL, database_url=database_url) as store:
        repaired = store.index_repair is not None
        problems += store.consistency_problems()
        stored: dict[str, set[str]] = {}
        for person in store.people():
            _, vectors = store.embeddings_for(person.id)
            seeds = [s for s in photos_of(person.name) for v in vectors if v.tobytes() == _embedding_bytes(s)]
            if len(vectors) == 0:
                problems.append(f"{person.name} has no face (a half-made enrolment)")
            if len(seeds) != len(vectors) or len(set(seeds)) != len(seeds):
                problems.append(f"{person.name}'s faces are not exactly their photos' embeddings")
            stored[person.name] = set(seeds)
    for name in set(expected.faces) | set(stored):
        want, have = expected.faces.get(name), stored.get(name)
        if want == have:
            continue
        operation, subject = interrupted or (None, None)
        if subject == name and operation == "enroll" and want is None and have == {name}:
            continue  # the interrupted enrolment had committed
        if subject == name and operation == "add" and want == {name} and have == set(photos_of(name)):
            continue  # the interrupted added photo had committed
        if subject == name and operation == "remove" and have is None:
            continue  # the interrupted removal had committed
        problems.append(f"{name}: expected photos {sorted(want or [])}, found {sorted(have or [])}")
    expected.faces = stored
    problems += _leaks(home, expected)
    return problems, repaired


def _leaks(home: Path, expected: _Expected) -> list[str]:
    """Files in ``home`` that hold the embedding of someone no longer enrolled."""
    problems = []
    gone = expected.ever - set(expected.faces)
    for path in sorted(home.iterdir()):
        if path.is_file():
            data = path.read_bytes()
            leaked = [name for name in gone for seed in photos_of(name) if _embedding_bytes(seed) in data]
            if leaked:
                problems.append(f"{path} still holds the embedding of {leaked[:3]}, no longer enrolled")
    return problems


@dataclass
class _Site:
    """The hosts of one PostgreSQL database: two that the victims run on, a new one, a survivor."""

    root: Path
    database_url: str
    survivor: Any = None  # a Store kept open by the parent, from the first check on
    catch_up_s: float = 10.0

    def victim_home(self, cycle: int) -> Path:
        return self.root / ("host-a" if cycle % 2 == 0 else "host-b")

    def check(self, expected: _Expected) -> list[str]:
        """The new host's and the survivor's problems (``expected`` holds what is stored now)."""
        from gallery.store import Store
        from gallery.store.index_file import delete_index_files

        problems = []
        fresh = self.root / "fresh"
        if fresh.exists():
            delete_index_files(fresh / "faces.faiss")
        with Store.open(fresh, model=FAKE_MODEL, database_url=self.database_url) as store:
            problems += [f"new host: {p}" for p in store.consistency_problems()]
            generation = store.generation()
        if self.survivor is None:
            self.survivor = Store.open(self.root / "survivor", model=FAKE_MODEL, database_url=self.database_url)
        problems += self._survivor_problems(generation, expected)
        # The other victim host is offline: its file keeps a removed person until it opens again.
        for home in (fresh, self.root / "survivor"):
            problems += _leaks(home, expected)
        self._forget_closed_hosts()
        return problems

    def _survivor_problems(self, generation: int, expected: _Expected) -> list[str]:
        survivor = self.survivor
        deadline = time.monotonic() + self.catch_up_s
        while survivor.data_state()[0] < generation:
            if time.monotonic() > deadline:
                held = survivor.data_state()[0]
                return [f"survivor: still at generation {held} after {self.catch_up_s:g} s, not {generation}"]
            time.sleep(0.01)
        problems = []
        if survivor.people_count() != len(expected.faces):
            problems.append(f"survivor: counts {survivor.people_count()} people, not {len(expected.faces)}")
        present = [(name, seed) for name, seeds in sorted(expected.faces.items()) for seed in sorted(seeds)]
        gone = sorted(expected.ever - set(expected.faces))
        queries = [fake_embedding_of(seed) for _, seed in present] + [fake_embedding_of(name) for name in gone]
        if not queries:
            return problems
        hits = survivor.search(np.stack(queries), 1)
        for (name, seed), found in zip(present, hits[: len(present)], strict=True):
            if not found or found[0].name != name or found[0].distance > 1e-6:
                problems.append(f"survivor: {name}'s photo {seed!r} finds {found[:1]}, not {name}")
        for name, found in zip(gone, hits[len(present) :], strict=True):
            if found and found[0].name == name:
                problems.append(f"survivor: still recognises {name}, no longer enrolled")
        return problems

    def _forget_closed_hosts(self) -> None:
        """The closed hosts (killed victims, the checkers) are no longer connected: as if gone for a day.

        Else each removal waits ``HOSTS_WAIT_S`` for them (``gallery.store.hosts``) and the
        kills land in that wait rather than in the writes.
        """
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as connection:
            connection.execute(
                "UPDATE replica_hosts SET seen_at = seen_at - interval '1 day' WHERE host_id <> %s",
                (self.survivor.site.host_id,),
            )

    def close(self) -> None:
        if self.survivor is not None:
            self.survivor.close()


def run_cycles(
    home: Path,
    cycles: int,
    *,
    seed: int = 0,
    max_delay_s: float = 0.5,
    progress: Callable[[int, CrashSummary], None] | None = None,
    database_url: str | None = None,
) -> CrashSummary:
    """Start a victim on ``home``, kill it at a random moment, check the gallery; ``cycles`` times.

    With a PostgreSQL ``database_url``, ``home`` holds the hosts' home folders (``_Site``).
    """
    rng = random.Random(seed)
    context = _context()
    summary, expected = CrashSummary(), _Expected()
    site = _Site(home, database_url) if database_url else None
    started_at = time.monotonic()
    try:
        for cycle in range(cycles):
            victim_home = site.victim_home(cycle) if site else home
            who = (victim_home, seed * 1_000_003 + cycle)
            aim = "remove" if cycle % AIM_EVERY == AIM_EVERY - 1 else None
            interrupted = _one_cycle(context, rng, *who, max_delay_s, expected, summary, database_url, aim)
            problems, repaired = check_gallery(victim_home, expected, interrupted, database_url)
            if site is not None:
                problems += site.check(expected)
            summary.cycles += 1
            summary.index_repairs += repaired
            summary.problems += [f"cycle {cycle}: {p}" for p in problems]
            summary.people_at_end = len(expected.faces)
            summary.seconds = time.monotonic() - started_at
            if progress is not None:
                progress(cycle, summary)
    finally:
        if site is not None:
            site.close()
    return summary


def _one_cycle(
    context: Any,
    rng: random.Random,
    home: Path,
    victim_seed: int,
    max_delay_s: float,
    expected: _Expected,
    summary: CrashSummary,
    database_url: str | None,
    aim: str | None = None,
) -> tuple[str, str] | None:
    """Start a victim, kill it at a random moment, note what it reported; returns the operation cut short.

    With ``aim`` (an operation), the moment is drawn from the first ``AIMED_DELAY_S`` after the
    victim begins one.
    """
    ours, theirs = context.Pipe(duplex=False)
    process = context.Process(target=victim, args=(str(home), victim_seed, theirs, database_url), daemon=True)
    process.start()
    theirs.close()
    # Mostly kill during the work; sometimes while the gallery is being opened (or created).
    wait_for = "started" if rng.random() < 0.15 and aim is None else "ready"
    events: list[tuple[str, str | None, str | None]] = []

    def reached() -> bool:
        if aim is not None:
            return bool(events) and events[-1][:2] == ("begin", aim)
        return bool(events) and events[-1][0] == wait_for

    while not reached():
        if not ours.poll(READY_TIMEOUT_S):
            process.kill()
            raise RuntimeError(f"the victim did not get {aim or wait_for} within {READY_TIMEOUT_S:g} s")
        events.append(ours.recv())
    time.sleep(rng.uniform(0, AIMED_DELAY_S if aim else max_delay_s))
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    while ours.poll():
        try:
            events.append(ours.recv())
        except EOFError:
            break
    ours.close()
    interrupted = None
    for kind, operation, name in events:
        if kind == "begin":
            interrupted = (operation, name)
            if operation == "enroll":
                expected.ever.add(name)
        elif kind == "done":
            interrupted = None
            summary.operations_done += 1
            if operation == "remove":
                expected.faces.pop(name, None)
            elif operation == "add":
                expected.faces[name] = set(photos_of(name))
            else:
                expected.faces[name] = {name}
    last = events[-1][0]
    summary.killed_during[
        interrupted[0] if interrupted else "opening" if last != "ready" and last != "done" else "between operations"
    ] += 1
    return interrupted
