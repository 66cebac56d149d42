"""Hosts sharing one PostgreSQL gallery: what each has applied, and what a removal's receipt says of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_store import MODEL, embedding, face

from gallery.errors import HostNotFound
from gallery.store import Store


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
