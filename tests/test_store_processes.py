"""Several processes share one gallery: writers serialise, readers keep answering correctly."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np
from records import face_record

from gallery.store import FaceRecord, Store

MODEL = "test-model-v1"
WRITERS = 2
PEOPLE_PER_WRITER = 6


def seed_of(writer: int, person: int) -> int:
    return 1000 * (writer + 1) + person


def embedding(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.1, size=128).astype(np.float32)


def record(seed: int) -> FaceRecord:
    return face_record(embedding(seed), MODEL)


def write_people(home: str, writer: int, start: multiprocessing.synchronize.Barrier) -> None:
    start.wait()
    with Store.open(Path(home), model=MODEL) as store:
        for person in range(PEOPLE_PER_WRITER):
            store.add_person_with_face(f"w{writer}-p{person}", record(seed_of(writer, person)))


def read_until_done(home: str, start: multiprocessing.synchronize.Barrier, done, failures) -> None:
    """Search for every writer's people over and over; a hit at distance 0 must carry the right name."""
    start.wait()
    with Store.open(Path(home), model=MODEL) as store:
        while True:
            finished = done.is_set()
            for writer in range(WRITERS):
                for person in range(PEOPLE_PER_WRITER):
                    hits = store.search(embedding(seed_of(writer, person)), 1)[0]
                    if hits and hits[0].distance < 1e-6 and hits[0].name != f"w{writer}-p{person}":
                        failures.put(f"{hits[0].name} returned for w{writer}-p{person}")
            time.sleep(0.005)  # leave the shared cores to the writers
            if finished:
                (hits,) = store.search(embedding(seed_of(0, 0)), 1)
                if not hits or hits[0].name != "w0-p0":
                    failures.put("the reader never saw the first writer's first person")
                return


def test_writers_in_several_processes_and_a_reader_agree_with_the_database(tmp_path: Path) -> None:
    # Children fork from a fresh server that imported the store once: cheaper than spawning
    # each, and safer than forking this process (whose OpenMP threads FAISS has started).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["gallery.store", "numpy"])
    home = str(tmp_path / "home")
    Store.open(Path(home), model=MODEL).close()  # created once, so children time only their work
    start = context.Barrier(WRITERS + 1)
    done, failures = context.Event(), context.Queue()
    reader = context.Process(target=read_until_done, args=(home, start, done, failures))
    writers = [context.Process(target=write_people, args=(home, w, start)) for w in range(WRITERS)]
    for process in [reader, *writers]:
        process.start()
    for process in writers:
        process.join(timeout=120)
    done.set()
    reader.join(timeout=120)
    assert [p.exitcode for p in [reader, *writers]] == [0] * (WRITERS + 1)
    assert failures.empty(), failures.get()

    with Store.open(Path(home), model=MODEL) as store:
        names = [p.name for p in store.people()]
        assert sorted(names) == sorted(f"w{w}-p{p}" for w in range(WRITERS) for p in range(PEOPLE_PER_WRITER))
        assert store.index_repair is None  # the last writer's saved index matched the database
        assert store.consistency_problems() == []
        for writer in range(WRITERS):
            assert store.search(embedding(seed_of(writer, 2)), 1)[0][0].name == f"w{writer}-p2"
