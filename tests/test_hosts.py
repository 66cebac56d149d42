"""Hosts sharing one PostgreSQL gallery: what each has applied, and what a removal's receipt says of them."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest
from test_store import MODEL, embedding, face

from gallery.errors import HostNotFound
from gallery.store import Store
from gallery.store.postgres import CHANNEL
from gallery.store.schema import HEAD_REVISION


def test_a_removal_waits_for_the_running_hosts_and_names_those_that_did_not_apply_it(
    postgres_url: str, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "desk", model=MODEL, database_url=postgres_url) as desk:
        with Store.open(tmp_path / "door", model=MODEL, database_url=postgres_url) as door:
            desk.add_person_with_face("Ada", face(embedding(1)))
            desk.add_person_with_face("Alan", face(embedding(2)))
            removed = desk.remove_person("Ada")
            assert removed.pending == ()  # the running door applied it within the wait
            assert {h.host_id for h in desk.site.hosts()} == {desk.site.host_id, door.site.host_id}
            door_id = door.site.host_id
        # The door is shut down: its index file still holds Alan until it opens again.
        removed = desk.remove_person("Alan")
        assert [p for p in removed.pending if door_id[:8] in p] != []
        assert desk.site.forget(door_id[:8]).host_id == door_id
        assert door_id not in {h.host_id for h in desk.site.hosts()}
        with pytest.raises(HostNotFound):
            desk.site.forget(door_id[:8])
    with Store.open(tmp_path / "door", model=MODEL, database_url=postgres_url) as door:
        assert door.search(embedding(2), 1) == [[]]  # it caught up when it opened
        assert door.index_repair is None
        assert door_id in {h.host_id for h in door.site.hosts()}  # and reported itself again


def test_sqlite_galleries_have_no_hosts_and_removals_wait_for_none(tmp_path: Path) -> None:
    with Store.open(tmp_path / "home", model=MODEL) as store:
        store.add_person_with_face("Ada", face(embedding(1)))
        assert store.remove_person("Ada").pending == ()
        assert store.site.hosts() == []


def test_hosts_opening_a_new_database_at_once_migrate_it_once(postgres_url: str, tmp_path: Path) -> None:
    opened: list[str | None] = []
    failures: list[BaseException] = []

    def open_host(number: int) -> None:
        try:
            with Store.open(tmp_path / f"host-{number}", model=MODEL, database_url=postgres_url) as store:
                opened.append(store.stats().schema_revision)
        except BaseException as error:  # reported below: a thread's exception would be lost
            failures.append(error)

    threads = [threading.Thread(target=open_host, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert opened == [HEAD_REVISION] * 4
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT count(*) FROM store_state").fetchone() == (1,)  # one gallery, made once


def test_wake_ups_carry_the_generation_and_nothing_else(postgres_url: str, tmp_path: Path) -> None:
    with (
        Store.open(tmp_path / "desk", model=MODEL, database_url=postgres_url) as desk,
        psycopg.connect(postgres_url, autocommit=True) as listener,
    ):
        listener.execute(f"LISTEN {CHANNEL}")
        desk.add_person_with_face("Ada Lovelace", face(embedding(1)), external_id="E-1")
        desk.remove_person("Ada Lovelace")
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert len(payloads) == 2 and all(p.isdigit() for p in payloads)
    assert int(payloads[1]) == int(payloads[0]) + 1


def test_a_removal_vacuums_the_rows_it_deleted(postgres_url: str, tmp_path: Path) -> None:
    with Store.open(tmp_path / "desk", model=MODEL, database_url=postgres_url) as desk:
        for number in range(5):
            desk.add_person_with_face(f"person-{number}", face(embedding(number)))
        assert desk.remove_person("person-3").pending == ()
    with psycopg.connect(postgres_url) as connection:
        dead = connection.execute(
            "SELECT relname, n_dead_tup, vacuum_count FROM pg_stat_user_tables WHERE relname IN ('faces', 'people')"
        ).fetchall()
    # Statistics arrive asynchronously; the vacuum count is what the removal did.
    assert {name: vacuums >= 1 for name, _, vacuums in dead} == {"faces": True, "people": True}


def test_a_door_rewrites_its_own_index_file_when_someone_is_removed_elsewhere(
    postgres_url: str, tmp_path: Path
) -> None:
    vector = embedding(7).astype("<f4")

    def door_files() -> bytes:
        return b"".join(p.read_bytes() for p in (tmp_path / "door").glob("faces.faiss*") if p.is_file())

    with Store.open(tmp_path / "desk", model=MODEL, database_url=postgres_url) as desk:
        desk.add_person_with_face("Ada", face(vector))
        desk.add_person_with_face("Alan", face(embedding(8)))
        with Store.open(tmp_path / "door", model=MODEL, database_url=postgres_url) as door:
            assert vector.tobytes() in door_files()  # the door built its file with Ada in it
            assert desk.remove_person("Ada").pending == ()  # the door said it applied it, file included
            assert vector.tobytes() not in door_files()
            assert door.consistency_problems() == []
