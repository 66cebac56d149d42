"""The store: people and faces in its database, kept consistent with the FAISS index, across stores.

Every test about the store's behaviour runs on SQLite and on PostgreSQL (the ``database``
fixture); those about SQLite's own files (its WAL, its file lock) are SQLite's alone.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from datetime import UTC
from pathlib import Path

import filelock
import numpy as np
import psycopg
import pytest
import store_rows
from backends import Database, caught_up, wait_for
from records import face_record

from gallery.store import (
    INDEX_FILE,
    AlreadyEnrolled,
    DuplicateExternalId,
    FaceRecord,
    InvalidFaceRecord,
    ModelMismatch,
    PersonNotFound,
    Store,
    StoreBusy,
    StoreClosed,
)
from gallery.store.index import IndexPolicy

MODEL = "test-model-v1"
DIMENSION = 128


def embedding(seed: int) -> np.ndarray:
    """A random embedding; distinct seeds are about 1.4 apart, like different people."""
    return np.random.default_rng(seed).normal(scale=0.1, size=DIMENSION).astype(np.float32)


def face(vector: np.ndarray, model: str = MODEL, chip: bytes | None = None) -> FaceRecord:
    return face_record(vector, model, chip=chip)


@pytest.fixture
def store(tmp_path: Path, database: Database):
    with database.open(tmp_path / "home", model=MODEL) as opened:
        yield opened


def enroll_many(store: Store, count: int) -> dict[str, np.ndarray]:
    people = {f"person-{i:02d}": embedding(i) for i in range(count)}
    for name, vector in people.items():
        store.add_person_with_face(name, face(vector))
    return people


def nearest_names(store: Store, queries: list[np.ndarray], k: int = 3) -> list[list[tuple[str, float]]]:
    return [[(hit.name, hit.distance) for hit in hits] for hits in store.search(np.stack(queries), k)]


def file_state(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(home.iterdir()) if p.is_file() and not p.name.endswith(".lock")}


def test_enroll_search_remove_round_trip(store: Store) -> None:
    people = enroll_many(store, 10)
    hits = store.search(people["person-03"] + 0.001, 3)[0]
    assert hits[0].name == "person-03" and hits[0].distance < 0.02
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    assert len({h.person_id for h in hits}) == 3

    removed = store.remove_person("person-03")
    assert removed.name == "person-03" and len(removed.face_ids) == 1 and removed.wal_cleared
    assert all(h.name != "person-03" for h in store.search(people["person-03"], 10)[0])
    assert store.find_person("person-03") is None
    assert store.consistency_problems() == []


def test_search_returns_each_person_once_with_their_nearest_face(store: Store) -> None:
    enroll_many(store, 3)
    person = store.find_person("person-01")
    close = embedding(1) + 0.05
    second_face = store.add_face(person.id, face(close))
    hits = store.search(close, 3)[0]
    assert [h.name for h in hits].count("person-01") == 1
    assert hits[0].face_id == second_face and hits[0].distance < 1e-6
    assert store.find_person("person-01").face_count == 2
    assert len(store.search(close, 10)[0]) == 3  # three people, four faces


def test_the_replicas_people_and_their_embeddings_read_at_once_as_one_at_a_time(store: Store) -> None:
    enroll_many(store, 4)
    second = store.find_person("person-02")
    store.add_face(second.id, face(embedding(22)))
    removed = store.find_person("person-01").id
    store.remove_person("person-01")
    people = store.indexed_people()
    assert people.tolist() == sorted(p.id for p in store.people())  # each once, ascending; the removed one gone
    asked = [*people.tolist(), removed]
    together = store.indexed_embeddings_of(asked)
    assert list(together) == asked
    for person in asked:
        assert np.array_equal(together[person], store.indexed_embeddings(person))
        assert np.array_equal(together[person], store.embeddings_for(person)[1])  # the database's, for the living
    assert together[second.id].shape == (2, DIMENSION) and together[removed].shape == (0, DIMENSION)


def test_search_answers_one_list_per_query_and_nothing_on_an_empty_gallery(store: Store) -> None:
    assert store.search(np.stack([embedding(1), embedding(2)]), 5) == [[], []]
    enroll_many(store, 2)
    assert [len(hits) for hits in store.search(np.stack([embedding(1), embedding(2)]), 5)] == [2, 2]


def test_a_duplicate_name_is_refused_and_nothing_is_written(store: Store) -> None:
    enroll_many(store, 2)
    before = file_state(store.home)
    generation = store.stats().generation
    with pytest.raises(AlreadyEnrolled, match="person-01"):
        store.add_person_with_face("person-01", face(embedding(99)))
    with pytest.raises(AlreadyEnrolled):
        store.add_person_with_face("  person-01 ", face(embedding(99)))  # trimmed to the same name
    assert store.stats().generation == generation
    assert store.stats().faces == 2
    assert file_state(store.home)["faces.faiss"] == before["faces.faiss"]
    assert store.search(embedding(99), 1)[0][0].distance > 1.0


def test_a_duplicate_external_id_is_refused(store: Store) -> None:
    store.add_person_with_face("Ada", face(embedding(1)), external_id="badge-7")
    with pytest.raises(DuplicateExternalId):
        store.add_person_with_face("Grace", face(embedding(2)), external_id="badge-7")
    assert [p.name for p in store.people()] == ["Ada"]
    store.add_person_with_face("Grace", face(embedding(2)))
    store.add_person_with_face("Alan", face(embedding(3)))  # many people without an external id
    assert store_rows.person_by_external_id(store, "badge-7").name == "Ada"


def test_names_are_unicode_normalised_so_one_person_cannot_be_enrolled_twice(store: Store) -> None:
    store.add_person_with_face("Jos\u00e9", face(embedding(1)))  # composed é
    with pytest.raises(AlreadyEnrolled):
        store.add_person_with_face("Jose\u0301", face(embedding(2)))  # e + combining accent
    assert store.find_person("Jose\u0301").name == "Jos\u00e9"


@pytest.mark.parametrize("name", ["", "   ", "a\x00b", "x" * 201])
def test_unusable_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(InvalidFaceRecord):
        store.add_person_with_face(name, face(embedding(1)))
    assert store.people() == []


def test_a_face_from_another_model_is_refused(store: Store) -> None:
    with pytest.raises(ModelMismatch, match="other-model"):
        store.add_person_with_face("Ada", face(embedding(1), model="other-model"))
    with pytest.raises(ModelMismatch):
        store.search(embedding(1), 1, model="other-model")
    assert store.people() == []


@pytest.mark.parametrize(
    "broken",
    [
        lambda f: FaceRecord(np.zeros(64, np.float32), f.model, f.box, f.landmarks, 1.0, f.photo_sha256, b"x"),
        lambda f: FaceRecord(np.full(128, np.nan, np.float32), f.model, f.box, f.landmarks, 1, f.photo_sha256, b"x"),
        lambda f: FaceRecord(f.embedding, f.model, (1, 2, 3), f.landmarks, 1.0, f.photo_sha256, b"x"),
        lambda f: FaceRecord(f.embedding, f.model, f.box, ((1.0, 2.0),), 1.0, f.photo_sha256, b"x"),
        lambda f: FaceRecord(f.embedding, f.model, f.box, f.landmarks, float("inf"), f.photo_sha256, b"x"),
        lambda f: FaceRecord(f.embedding, f.model, f.box, f.landmarks, 1.0, "not-a-hash", b"x"),
        lambda f: FaceRecord(f.embedding, f.model, f.box, f.landmarks, 1.0, f.photo_sha256, b""),
    ],
)
def test_malformed_face_records_are_refused_and_nothing_is_written(store: Store, broken) -> None:
    with pytest.raises(InvalidFaceRecord):
        store.add_person_with_face("Ada", broken(face(embedding(1))))
    assert store.people() == [] and store.stats().faces == 0


def test_adding_a_face_to_a_missing_person_is_refused(store: Store) -> None:
    with pytest.raises(PersonNotFound):
        store.add_face(12345, face(embedding(1)))
    assert store.stats().faces == 0


def test_removing_someone_not_enrolled_is_refused(store: Store) -> None:
    enroll_many(store, 1)
    with pytest.raises(PersonNotFound):
        store.remove_person("nobody")
    assert len(store.people()) == 1


def test_ids_are_never_reused_after_a_removal(store: Store) -> None:
    first_person, first_face = store.add_person_with_face("Ada", face(embedding(1)))
    store.remove_person("Ada")
    second_person, second_face = store.add_person_with_face("Grace", face(embedding(2)))
    assert second_person > first_person and second_face > first_face


def test_rows_come_back_as_plain_records_with_utc_timestamps(store: Store) -> None:
    person_id, face_id = store.add_person_with_face("Ada", face(embedding(1)), external_id="E-1")
    (person,) = store.people()
    assert (person.id, person.name, person.external_id, person.face_count) == (person_id, "Ada", "E-1", 1)
    assert person.created_at.tzinfo == UTC and person.updated_at.tzinfo == UTC
    (stored,) = store_rows.faces_of(store, person_id)
    assert stored.id == face_id and stored.box == (10, 20, 110, 120) and stored.landmarks[4] == (55.0, 90.0)
    assert stored.model == MODEL and stored.quality == 1.25 and stored.created_at.tzinfo == UTC
    ids, vectors = store.embeddings_for(person_id)
    assert ids.tolist() == [face_id] and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[0], embedding(1))
    assert store_rows.chip(store, face_id) == face(embedding(1)).chip_jpeg


def test_settings_hold_json_values(store: Store) -> None:
    assert store.get_setting("decision_rule") is None
    rule = {"kind": "threshold", "distance": 0.6, "source": "dlib documentation"}
    store.set_settings({"decision_rule": rule})
    store.set_settings({"decision_rule": {**rule, "distance": 0.55}})
    assert store.get_setting("decision_rule")["distance"] == 0.55
    assert store._settings.get("decision_rule") == {**rule, "distance": 0.55}


def test_settings_written_together_are_all_or_nothing(store: Store) -> None:
    store.set_settings({"decision_rule": {"v": 1}, "verify_rule": {"v": 1}})
    with pytest.raises(TypeError):  # the second value is not JSON: the first must not land either
        store.set_settings({"decision_rule": {"v": 2}, "verify_rule": {"v": object()}})
    assert [store._settings.get(key) for key in ("decision_rule", "verify_rule")] == [{"v": 1}, {"v": 1}]


def test_the_audit_log_survives_the_removal_it_records(store: Store) -> None:
    person_id, _ = store.add_person_with_face("Ada", face(embedding(1)))
    store._audit_log.append("enroll", outcome="enrolled", person_name="Ada", person_id=person_id, model=MODEL)
    store.remove_person("Ada")
    store._audit_log.append("remove", outcome="removed", person_name="Ada", person_id=person_id, rule={"distance": 0.6})
    store._audit_log.append("identify", outcome="unknown", detail={"faces": 1})
    events = store.audit_log()
    assert [e.action for e in events] == ["identify", "remove", "enroll"]
    assert events[1].person_id == person_id and events[1].rule == {"distance": 0.6}
    assert events[0].person_name is None and events[0].detail == {"faces": 1}
    assert events[0].at.tzinfo == UTC
    assert [e.action for e in store.audit_log(action="remove")] == ["remove"]


def test_a_burst_of_audit_events_is_written_in_order_in_one_call(store: Store) -> None:
    events = [("identify", {"outcome": "unknown", "detail": {"n": n}}) for n in range(50)]
    store.audit_many(events)
    logged = store.audit_log(limit=100)
    assert [e.detail["n"] for e in logged] == list(range(49, -1, -1))
    assert {e.action for e in logged} == {"identify"}


def test_removal_leaves_no_byte_of_the_embedding_or_chip_on_disk(tmp_path: Path, database: Database) -> None:
    # On SQLite the home folder holds the database; on PostgreSQL this host's replica.
    home = tmp_path / "home"
    secret = embedding(7)
    chip = bytes(np.random.default_rng(7).integers(0, 256, 6000, dtype=np.uint8))  # spans overflow pages
    with database.open(home, model=MODEL) as store:
        enroll_many(store, 5)
        store.add_person_with_face("Secret", face(secret, chip=chip))
        store.add_person_with_face("Later", face(embedding(8)))
        removed = store.remove_person("Secret")
        assert removed.wal_cleared
        for path in home.iterdir():
            data = path.read_bytes()
            assert secret.tobytes() not in data, path.name
            assert chip[1000:1064] not in data, path.name
        assert len(store.people()) == 6


def test_an_index_file_deleted_is_rebuilt_on_reopen_with_the_same_answers(tmp_path: Path, database: Database) -> None:
    home = tmp_path / "home"
    queries = [embedding(i) + 0.01 for i in range(0, 12, 3)]
    with database.open(home, model=MODEL) as store:
        enroll_many(store, 12)
        before = nearest_names(store, queries)
    (home / INDEX_FILE).unlink()
    with database.open(home, model=MODEL) as store:
        if database.kind == "sqlite":
            assert "missing" in store.index_repair
        else:  # on a server a host without a file is a new host: it builds one, nothing to repair
            assert store.index_repair is None
        assert nearest_names(store, queries) == before
        assert store.consistency_problems() == []
    with database.open(home, model=MODEL) as store:
        assert store.index_repair is None  # the rebuilt file was saved


def test_a_corrupted_index_file_is_rebuilt(tmp_path: Path, database: Database) -> None:
    home = tmp_path / "home"
    with database.open(home, model=MODEL) as store:
        enroll_many(store, 8)
        before = nearest_names(store, [embedding(2)])
    (home / INDEX_FILE).write_bytes(np.random.default_rng(0).bytes(5000))
    with database.open(home, model=MODEL) as store:
        assert "unreadable" in store.index_repair
        assert nearest_names(store, [embedding(2)]) == before
        assert store.consistency_problems() == []


def test_a_stale_index_file_catches_up_from_the_change_log(tmp_path: Path, database: Database) -> None:
    home = tmp_path / "home"
    with database.open(home, model=MODEL) as store:
        enroll_many(store, 5)
        shutil.copy(home / INDEX_FILE, tmp_path / "old.faiss")
        store.add_person_with_face("Newcomer", face(embedding(50)))
        store.remove_person("person-02")
    shutil.copy(tmp_path / "old.faiss", home / INDEX_FILE)  # as if the last saves never happened
    with database.open(home, model=MODEL) as store:
        assert store.index_repair is None  # caught up, not rebuilt
        assert store.search(embedding(50), 1)[0][0].name == "Newcomer"
        assert all(h.name != "person-02" for h in store.search(embedding(2), 10)[0])
        assert store.consistency_problems() == []


def test_an_index_file_of_another_gallery_is_rebuilt(tmp_path: Path, database: Database) -> None:
    with database.open(tmp_path / "a", model=MODEL) as store:
        store.add_person_with_face("Ada", face(embedding(1)))
    other = database.another()
    with other.open(tmp_path / "b", model=MODEL) as store:
        store.add_person_with_face("Grace", face(embedding(1)))  # same ids, other embeddings
    shutil.copy(tmp_path / "a" / INDEX_FILE, tmp_path / "b" / INDEX_FILE)
    with other.open(tmp_path / "b", model=MODEL) as store:
        assert "another gallery" in store.index_repair
        assert store.search(embedding(1), 1)[0][0].name == "Grace"


def test_a_store_for_a_new_model_searches_only_that_models_faces_until_reembedded(
    tmp_path: Path, database: Database
) -> None:
    home = tmp_path / "home"
    with database.open(home, model=MODEL) as store:
        enroll_many(store, 3)
    with database.open(home, model="model-v2") as store:
        assert "model" in store.index_repair
        assert store.search(embedding(1), 3) == [[]]
        tasks = store.faces_to_reembed()
        assert len(tasks) == 3 and {t.model for t in tasks} == {MODEL}
        renumbered = store.reembed({t.face_id: embedding(100 + t.person_id) for t in tasks})
        assert sorted(renumbered) == sorted(t.face_id for t in tasks)
        assert store.faces_to_reembed() == []
        hit = store.search(embedding(100 + tasks[0].person_id), 1)[0][0]
        assert hit.person_id == tasks[0].person_id and hit.distance < 1e-6
        assert store.stats().faces_by_model == {"model-v2": 3}
        assert store.consistency_problems() == []


def test_another_store_in_the_same_process_sees_writes_once_committed(tmp_path: Path, database: Database) -> None:
    home = tmp_path / "home"
    with database.open(home, model=MODEL) as writer, database.open(home, model=MODEL) as reader:
        assert reader.search(embedding(1), 1) == [[]]
        writer.add_person_with_face("Ada", face(embedding(1)))
        caught_up(reader, writer)
        assert reader.search(embedding(1), 1)[0][0].name == "Ada"
        reader.add_face(reader.find_person("Ada").id, face(embedding(2)))
        caught_up(writer, reader)
        assert writer.search(embedding(2), 1)[0][0].name == "Ada"
        writer.remove_person("Ada")
        caught_up(reader, writer)
        assert reader.search(embedding(1), 1) == [[]]
        assert reader.consistency_problems() == [] and writer.consistency_problems() == []


def test_a_reader_syncs_an_enrolment_and_a_removal_made_between_two_of_its_searches(
    tmp_path: Path, database: Database
) -> None:
    home = tmp_path / "home"
    with database.open(home, model=MODEL) as writer, database.open(home, model=MODEL) as reader:
        writer.add_person_with_face("Ada", face(embedding(1)))
        writer.add_person_with_face("Alan", face(embedding(2)))
        caught_up(reader, writer)
        assert reader.search(embedding(1), 1)[0][0].name == "Ada"
        # Same face count before and after: only the ids tell the reader what changed.
        writer.remove_person("Ada")
        writer.add_person_with_face("Grace", face(embedding(3)))
        caught_up(reader, writer)
        assert reader.search(embedding(3), 1)[0][0].name == "Grace"
        assert {hit.name for hit in reader.search(embedding(1), 5)[0]} == {"Alan", "Grace"}
        assert reader.consistency_problems() == []


def test_the_generation_moves_with_every_write_replicas_hold_of_any_store(tmp_path: Path, database: Database) -> None:
    home = tmp_path / "home"
    with database.open(home, model=MODEL) as writer, database.open(home, model=MODEL) as reader:
        seen = [reader.generation()]

        def after(write: object) -> None:
            if database.url is not None:  # a server: wait for the reader's follower to apply the write
                wait_for(lambda: reader.generation() > seen[-1])
            seen.append(reader.generation())

        after(writer.add_person_with_face("Ada", face(embedding(1))))
        after(writer._settings.put({"unrelated": 1}))
        after(writer.add_face(writer.find_person("Ada").id, face(embedding(2))))
        after(writer.remove_person("Ada"))
        seen.append(reader.generation())  # nothing written since
        assert seen[0] < seen[1] < seen[2] < seen[3] < seen[4] == seen[5]  # settings too: replicas hold the rules


def test_concurrent_searches_during_writes_never_fail_and_stay_consistent(store: Store) -> None:
    people = enroll_many(store, 10)
    errors: list[BaseException] = []
    stop = threading.Event()

    def search_loop() -> None:
        try:
            while not stop.is_set():
                for name, vector in people.items():
                    hits = store.search(vector, 1)[0]
                    assert hits and hits[0].name == name and hits[0].distance < 1e-6
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=search_loop) for _ in range(8)]
    for thread in threads:
        thread.start()
    for i in range(10):
        store.add_person_with_face(f"extra-{i}", face(embedding(1000 + i)))
        if i % 2:
            store.remove_person(f"extra-{i}")
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.people()) == 15
    assert store.consistency_problems() == []


def test_a_closed_store_refuses_to_work(tmp_path: Path, database: Database) -> None:
    store = database.open(tmp_path, model=MODEL)
    store.close()
    with pytest.raises(StoreClosed):
        store.search(embedding(1), 1)
    with pytest.raises(StoreClosed):
        store.add_person_with_face("Ada", face(embedding(1)))


def test_stats_count_people_faces_and_the_index(store: Store, database: Database) -> None:
    enroll_many(store, 4)
    store.add_face(store.find_person("person-00").id, face(embedding(77)))
    stats = store.stats()
    assert (stats.people, stats.faces, stats.indexed_faces) == (4, 5, 5)
    assert stats.faces_by_model == {MODEL: 5} and stats.model == MODEL
    assert store.people_count() == 4
    assert stats.index_path.name == "faces.faiss"
    if database.url is None:
        assert stats.database.endswith("/gallery.db")
    else:  # the URL without its password
        assert stats.database.startswith("postgresql://postgres:***@127.0.0.1:")


def test_the_database_stays_sound_after_many_writes(store: Store, database: Database) -> None:
    enroll_many(store, 15)
    for i in range(0, 15, 2):
        store.remove_person(f"person-{i:02d}")
    if database.url is None:
        with sqlite3.connect(store.database_path) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert store.consistency_problems() == []
    assert len(store.people()) == 7


def test_a_new_gallery_gets_an_index_file_without_reporting_a_repair(tmp_path: Path, database: Database) -> None:
    with database.open(tmp_path / "new", model=MODEL) as store:
        assert store.index_repair is None
        assert (store.home / INDEX_FILE).exists()
        assert store.consistency_problems() == []


def test_numpy_integers_in_a_box_are_stored_as_plain_integers(store: Store) -> None:
    record = face(embedding(1))
    box = tuple(np.int64(v) for v in record.box)
    person_id, _ = store.add_person_with_face("Ada", FaceRecord(**{**record.__dict__, "box": box}))
    assert store_rows.faces_of(store, person_id)[0].box == (10, 20, 110, 120)


def test_a_write_waiting_too_long_for_another_writer_fails_with_store_busy(tmp_path: Path) -> None:
    # SQLite's write lock is a file beside gallery.db; PostgreSQL's, an advisory lock (test below).
    with Store.open(tmp_path, model=MODEL, lock_timeout=0.2) as store:
        other_process_lock = filelock.FileLock(tmp_path / "gallery.db.lock")
        with other_process_lock:
            with pytest.raises(StoreBusy, match=r"gallery\.db\.lock"):
                store.add_person_with_face("Ada", face(embedding(1)))
            assert store.search(embedding(1), 1) == [[]]  # reads do not wait for the lock
        store.add_person_with_face("Ada", face(embedding(1)))
        assert store.people_count() == 1


def test_the_consistency_check_notices_a_face_deleted_behind_the_stores_back(store: Store, database: Database) -> None:
    enroll_many(store, 3)
    assert store.consistency_problems() == []
    # Without bumping the generation: no follower or sync can learn of it, only the check.
    database.execute(store.home, "DELETE FROM faces WHERE id = (SELECT min(id) FROM faces)")
    problems = store.consistency_problems()
    assert "the in-memory index holds other faces than the database" in problems
    assert "the index file holds other faces than the database" in problems


def test_a_removal_killed_before_its_checkpoint_is_erased_from_the_wal_on_next_open(tmp_path: Path) -> None:
    # SQLite's WAL is a file in the home folder; PostgreSQL's is the server's (README, Guarantees).
    home = tmp_path / "home"
    secret = embedding(7)
    store = Store.open(home, model=MODEL)
    store.add_person_with_face("Secret", face(secret))
    # The removal's transaction commits, then the process dies before checkpointing.
    connection = sqlite3.connect(home / "gallery.db")
    connection.execute("PRAGMA secure_delete=ON")
    connection.execute("DELETE FROM faces")
    connection.execute("DELETE FROM people")
    connection.execute("UPDATE store_state SET faces_generation = faces_generation + 1")
    connection.commit()
    connection.close()
    assert secret.tobytes() in (home / "gallery.db-wal").read_bytes()  # what the crash left behind
    with Store.open(home, model=MODEL) as reopened:
        assert reopened.search(secret, 1) == [[]]
        for path in home.iterdir():
            assert secret.tobytes() not in path.read_bytes(), path.name
    store.close()


def test_a_check_and_a_write_can_share_one_hold_of_the_write_lock(store: Store) -> None:
    enroll_many(store, 2)
    with store.write_lock():
        assert store.search(embedding(50), 1)[0][0].distance > 0.6  # nobody like this yet
        store.add_person_with_face("Newcomer", face(embedding(50)))
        store.add_face(store.find_person("Newcomer").id, face(embedding(51)))
    assert store.find_person("Newcomer").face_count == 2
    assert store.consistency_problems() == []


def test_a_gallery_past_the_exact_search_threshold_stays_consistent_on_a_compressed_index(
    tmp_path: Path, database: Database
) -> None:
    policy = IndexPolicy(exact_up_to=300, training_sample=400)
    home = tmp_path / "home"
    vectors = {f"p{i:03d}": embedding(i) for i in range(400)}
    with database.open(home, model=MODEL, index_policy=policy) as store:
        written = store.add_many([(name, [face(v)]) for name, v in vectors.items()])
        assert len(written) == 400 and store._replica.snapshot.index.kind == "pq"
        assert store.search(vectors["p123"] + 0.001, 1)[0][0].name == "p123"
        store.remove_person("p123")
        assert all(hit.name != "p123" for hit in store.search(vectors["p123"], 5)[0])
        assert vectors["p123"].tobytes()[:16] not in (home / INDEX_FILE).read_bytes()  # erased
        with database.open(home, model=MODEL, index_policy=policy) as other:  # loads vectors and codes
            assert other.index_repair is None and other._replica.snapshot.index.kind == "pq"
            store.add_person_with_face("late", face(embedding(999)))
            caught_up(other, store)
            assert other.search(embedding(999), 1)[0][0].name == "late"  # synced into a copy
            assert other.consistency_problems() == []
        assert store.consistency_problems() == []


def test_add_many_writes_new_and_known_people_in_one_go(store: Store) -> None:
    store.add_person_with_face("Ada", face(embedding(1)))
    written = store.add_many([("Ada", [face(embedding(2))]), ("Grace", [face(embedding(3)), face(embedding(4))])])
    assert [len(face_ids) for _, face_ids in written] == [1, 2]
    assert {p.name: p.face_count for p in store.people()} == {"Ada": 2, "Grace": 2}
    assert store.photos_enrolled([face(embedding(3)).photo_sha256, "0" * 64]) == {
        face(embedding(3)).photo_sha256: "Grace"
    }
    with pytest.raises(InvalidFaceRecord):
        store.add_many([("Alan", [face(embedding(5))]), ("Bad", [face(np.full(DIMENSION, np.nan, np.float32))])])
    assert store.find_person("Alan") is None  # nothing of the batch was written


def test_a_sync_reads_every_chunk_of_many_new_faces(store: Store) -> None:
    # More new faces than one IN (...) query takes (500), fewer than half the gallery: read in chunks.
    store.add_many([(f"p{i}", [face(embedding(i))]) for i in range(1100)])
    store.add_many([(f"q{i}", [face(embedding(10_000 + i))]) for i in range(600)])
    assert len(store._replica.snapshot.index) == 1700
    assert store.search(embedding(10_001), 1)[0][0].name == "q1"
    assert store.consistency_problems() == []


# ---- PostgreSQL's own mechanisms ------------------------------------------------------------


def test_a_write_waiting_too_long_for_another_host_fails_with_store_busy(tmp_path: Path, postgres_url: str) -> None:
    from gallery.store.postgres import _CLASS, EXCLUSIVE_LOCK

    with Store.open(tmp_path, model=MODEL, database_url=postgres_url, lock_timeout=0.2) as store:
        with psycopg.connect(postgres_url, autocommit=True) as other_host:
            other_host.execute("SELECT pg_advisory_lock(%s, %s)", (_CLASS, EXCLUSIVE_LOCK))
            with pytest.raises(StoreBusy, match="another host"):
                store.add_person_with_face("Ada", face(embedding(1)))
            assert store.search(embedding(1), 1) == [[]]  # reads do not wait for the lock
            assert store.people() == []
        # The other host's connection closed: its session lock went with it.
        store.add_person_with_face("Ada", face(embedding(1)))
        assert store.people_count() == 1


def test_closing_a_store_that_follows_a_server_does_not_wait_for_its_next_check(
    tmp_path: Path, postgres_url: str
) -> None:
    store = Store.open(tmp_path, model=MODEL, database_url=postgres_url, check_interval_s=30)
    wait_for(lambda: any(h.connected for h in store.site.hosts()))  # its follower reported, and now waits
    began = time.monotonic()
    store.close()
    # A correctness bound (a door's shutdown must not hang for the whole check interval), not a speed goal.
    assert time.monotonic() - began < 5
