"""Erasure: after ``remove``, no byte of the person's embeddings or face chips is left on disk.

The raw bytes of every file in the gallery folder (database, WAL, shared memory, index,
lock, temporaries) and of the weight cache are searched for each removed embedding and
chip, whole and as distinctive 16-byte windows. The audit log keeps the removal, and never
held biometric data in the first place.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import store_rows
from fakes import FAKE_MODEL, FakePipeline, fake_photo

from gallery.gallery import Gallery
from gallery.models.weights import cache_dir
from gallery.store import Store
from gallery.vision.pipeline import default_pipeline

DATA = Path(__file__).resolve().parent.parent / "data"
WINDOW = 16


def _windows(data: bytes, step: int) -> list[bytes]:
    return [data[i : i + WINDOW] for i in range(0, len(data) - WINDOW + 1, step)]


def _scan_data(chip: bytes) -> bytes:
    """A chip JPEG's entropy-coded data: its headers and tables are the same in every chip."""
    return chip[chip.index(b"\xff\xda") :]


def _traces(secret: bytes, others: list[bytes], step: int) -> list[bytes]:
    """The secret itself and its 16-byte windows that occur in no other, legitimately kept, blob."""
    return [secret] + [w for w in _windows(secret, step) if len(set(w)) > 4 and not any(w in o for o in others)]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _biometrics(store: Store, name: str) -> tuple[list[bytes], list[bytes]]:
    """A person's stored embeddings (float32 bytes) and chips (JPEG bytes)."""
    person = store.find_person(name)
    assert person is not None
    ids, vectors = store.embeddings_for(person.id)
    return [v.astype("<f4").tobytes() for v in vectors], [store_rows.chip(store, int(i)) for i in ids]


def _found(traces: list[bytes], files: dict[str, bytes]) -> list[str]:
    return sorted({name for name, data in files.items() for t in traces if t in data})


def test_removal_leaves_no_trace_of_the_embeddings_or_chips_anywhere(tmp_path: Path) -> None:
    home = tmp_path / "gallery"
    pipeline = default_pipeline()
    with Gallery(home) as gallery, Gallery(home) as door:  # a second, idle user of the gallery
        gallery.enroll("Barack Obama", DATA / "obama.jpg")
        gallery.enroll("Barack Obama", DATA / "obama3.jpg", add=True)
        gallery.enroll("Joe Biden", DATA / "biden.jpg")
        gallery.enroll("Grace Hopper", DATA / "grace_hopper.jpg")
        assert door.identify(DATA / "obama2.jpg")[0].match.name == "Barack Obama"
        with Store.open(home, model=pipeline.model_id) as store:
            embeddings, chips = _biometrics(store, "Barack Obama")
            kept = [b for name in ("Joe Biden", "Grace Hopper") for blobs in _biometrics(store, name) for b in blobs]
        assert len(embeddings) == len(chips) == 2
        traces = [t for e in embeddings for t in _traces(e, kept, 4)]
        traces += [t for c in chips for t in _traces(_scan_data(c), kept, 64)]
        assert len(traces) > 100
        # The search works: before the removal, the traces are there to be found.
        assert _found(traces, _files(home))

        removal = gallery.remove("Barack Obama")
        assert removal.faces_removed == 2
        in_cache = _found(embeddings + chips, _files(cache_dir()))
        leftovers = _found(traces, _files(home)) + [f"weight cache: {name}" for name in in_cache]
        assert leftovers == [], f"traces of the removed person remain in {leftovers}"
        (face,) = door.identify(DATA / "obama2.jpg")
        assert face.match is None and "Barack Obama" not in {c.name for c in face.candidates}
    assert _found(traces, _files(home)) == []  # nor after closing (checkpoints on close)

    with Store.open(home, model=pipeline.model_id) as store:
        removals = store.audit_log(action="remove")
        assert [(e.person_name, e.outcome) for e in removals] == [("Barack Obama", "removed")]
        assert store.consistency_problems() == []
        for event in store.audit_log(limit=1000):
            _assert_no_biometrics(event.rule)
            _assert_no_biometrics(event.detail)


def _assert_no_biometrics(value: object) -> None:
    """Audit values are small: names, ids, distances, thresholds; never a vector or an image."""
    text = json.dumps(value)
    assert len(text) < 2000, text[:200]
    numbers = text.count(",") + 1
    assert numbers < 64, text[:200]


def test_a_removal_waits_for_a_readers_snapshot_to_end_then_empties_the_wal(tmp_path: Path) -> None:
    # While a reader's transaction is open, the removed rows' old pages must stay in the WAL
    # (that reader may still read them); the removal waits for it (up to the busy timeout,
    # 30 s; beyond that the next open or removal finishes the job) and then empties the WAL.
    home = tmp_path / "gallery"
    with Gallery(home, pipeline=FakePipeline()) as gallery:
        for name in ("Ada", "Alan", "Grace"):
            gallery.enroll(name, fake_photo(name))
        with Store.open(home, model=FAKE_MODEL) as store:
            (embedding,), (chip,) = _biometrics(store, "Alan")
        reader = sqlite3.connect(home / "gallery.db", check_same_thread=False, isolation_level=None)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM faces").fetchone() == (3,)  # holds its snapshot
        finish = threading.Timer(0.5, lambda: reader.execute("ROLLBACK"))
        finish.start()
        gallery.remove("Alan")
        finish.join()
        reader.close()
        assert _found([embedding, _scan_data(chip)[:64]], _files(home)) == []


def test_the_search_finds_a_present_persons_traces_whole_or_in_windows(tmp_path: Path) -> None:
    # Guards the search itself. The index holds each embedding whole; in the database a row
    # may straddle pages (a chip spills into overflow pages), which is why windows are searched too.
    home = tmp_path / "gallery"
    with Gallery(home, pipeline=FakePipeline()) as gallery:
        gallery.enroll("Ada", fake_photo("Ada"))
    with Store.open(home, model=FAKE_MODEL) as store:
        (embedding,), (chip,) = _biometrics(store, "Ada")
    assert np.frombuffer(embedding, "<f4").shape == (128,)
    assert embedding in (home / "faces.faiss").read_bytes()
    database = {"gallery.db": (home / "gallery.db").read_bytes()}
    for secret, step in ((embedding, 4), (_scan_data(chip), 64)):
        windows = _traces(secret, [], step)[1:]
        assert sum(w in database["gallery.db"] for w in windows) > 0.9 * len(windows)
