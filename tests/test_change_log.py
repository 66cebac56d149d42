"""Replicas follow the change log: they read only what changed, and the database stays the truth."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from test_store import MODEL, embedding, enroll_many, face

from gallery.store import Store


def test_a_replica_catches_up_from_the_log_without_listing_every_face(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Store.open(home, model=MODEL) as writer, Store.open(home, model=MODEL) as reader:
        enroll_many(writer, 20)
        assert reader.search(embedding(3), 1)[0][0].name == "person-03"
        listed: list[int] = []
        every_face_id = reader._db.face_ids

        def listing(session, model, *, above=-1):  # the id-comparison fallback reads every face id
            listed.append(above)
            return every_face_id(session, model, above=above)

        reader._db.face_ids = listing  # type: ignore[method-assign]
        writer.remove_person("person-03")
        writer.add_person_with_face("Newcomer", face(embedding(50)))
        assert reader.search(embedding(50), 1)[0][0].name == "Newcomer"
        assert all(hit.name != "person-03" for hit in reader.search(embedding(3), 20)[0])
        assert listed == []  # the removal and the enrolment came from the log
        assert reader.consistency_problems() == []


def test_a_face_written_around_the_store_is_still_found(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Store.open(home, model=MODEL) as writer, Store.open(home, model=MODEL) as reader:
        enroll_many(writer, 3)
        assert len(reader.search(embedding(0), 10)[0]) == 3
        # A row copied by hand, with the generation bumped but nothing logged (as a tool or an old version might).
        with sqlite3.connect(home / "gallery.db") as connection:
            connection.execute(
                "INSERT INTO faces (person_id, embedding, model, box_left, box_top, box_right, box_bottom, landmarks,"
                " quality, photo_sha256, chip_jpeg, created_at) SELECT person_id, ?, model, box_left, box_top,"
                " box_right, box_bottom, landmarks, quality, 'copied', chip_jpeg, created_at FROM faces WHERE id = 1",
                (np.asarray(embedding(77), "<f4").tobytes(),),
            )
            connection.execute("UPDATE store_state SET faces_generation = faces_generation + 1")
        hits = reader.search(embedding(77), 1)[0]
        assert hits[0].person_id == 1 and hits[0].distance < 1e-3  # the count disagreed, so ids were compared
        writer.add_person_with_face("Later", face(embedding(90)))  # the writer's next save holds it too
        assert writer.consistency_problems() == [] and reader.consistency_problems() == []


def test_templates_of_a_person_removed_since_the_search_that_named_them_have_count_zero(tmp_path: Path) -> None:
    from gallery.cohorts import PersonTemplates

    with Store.open(tmp_path / "home", model=MODEL) as store:
        people = enroll_many(store, 3)
        ids = [store.find_person(name).id for name in people]
        store.remove_person("person-01")  # as a concurrent removal between identify's search and its scoring
        means, counts = PersonTemplates(store).of(ids)
    assert means.shape == (3, 128) and counts.tolist() == [1, 0, 1]
    assert not means[1].any()
