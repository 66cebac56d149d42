"""A host's index file on a database server: a removal made at another host leaves no copy there.

Each host keeps its replica in a file in its home folder. The host that removes a person saves
its own file without them; every other connected host's follower applies the removal in memory
and must rewrite its file too, or the person's embedding stays on that host's disk until it
next restarts (a real PostgreSQL server; two stores in one process are two hosts, each with its
own home folder).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from fakes import FAKE_MODEL, fake_embedding_of

from gallery.store import INDEX_FILE, FaceRecord, Store

WAIT_S = 10.0


def _face(seed: str) -> FaceRecord:
    return FaceRecord(
        embedding=fake_embedding_of(seed),
        model=FAKE_MODEL,
        box=(0, 0, 10, 10),
        landmarks=((1.0, 1.0),) * 5,
        quality=1.0,
        photo_sha256=f"{abs(hash(seed)):064x}"[:64],
        chip_jpeg=b"chip",
    )


def _files_holding(home: Path, data: bytes) -> list[str]:
    return [p.name for p in sorted(home.iterdir()) if p.is_file() and data in p.read_bytes()]


def test_a_removal_at_one_host_is_erased_from_another_open_hosts_index_file(tmp_path: Path, postgres_url: str) -> None:
    desk_home, door_home = tmp_path / "desk", tmp_path / "door"
    with Store.open(desk_home, model=FAKE_MODEL, database_url=postgres_url) as desk:
        desk.add_person_with_face("kept", _face("kept"))
        desk.add_person_with_face("leaving", _face("leaving"))
        with Store.open(door_home, model=FAKE_MODEL, database_url=postgres_url, check_interval_s=0.2) as door:
            leaving = fake_embedding_of("leaving").astype("<f4").tobytes()
            assert _files_holding(door_home, leaving) == [INDEX_FILE]  # the door saved its replica on opening

            generation_before = door.data_state()[0]
            desk.remove_person("leaving")
            deadline = time.monotonic() + WAIT_S
            while _files_holding(door_home, leaving) and time.monotonic() < deadline:
                time.sleep(0.05)

            assert door.data_state()[0] > generation_before
            assert _files_holding(door_home, leaving) == []
            # The door's file is still a whole, current replica: reopening it needs no rebuild.
            (hit,) = door.search(np.stack([fake_embedding_of("kept")]), 1)
            assert [h.name for h in hit] == ["kept"]
        with Store.open(door_home, model=FAKE_MODEL, database_url=postgres_url) as reopened:
            assert reopened.index_repair is None
            assert reopened.consistency_problems() == []
