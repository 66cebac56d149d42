"""Helpers of the PostgreSQL benchmarks: a throwaway server, and galleries filled fast.

A gallery of N synthetic people (one face each, ``benchmarks/synthetic.py``'s descriptors, a
4-byte chip that identify never reads) is written straight into the tables: COPY on
PostgreSQL, executemany on SQLite (as ``bench_identify`` does). The filled faces are not in
the change log: the fill moves ``log_start`` to its new generation, so a replica older than the
fill compares face ids instead, as for a log that was trimmed.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psycopg

if TYPE_CHECKING:
    from gallery.store import FaceRecord

ROOT = Path(__file__).resolve().parent.parent
CHIP = b"chip"  # never decoded by identify; keeps a million rows small
LANDMARKS = "[[60.0, 60.0], [70.0, 60.0], [100.0, 60.0], [90.0, 60.0], [80.0, 90.0]]"
NOW = "2025-01-01 00:00:00.000000"
CHUNK = 50_000


@contextmanager
def postgres(database_url: str | None) -> Iterator[str]:
    """``database_url`` itself, or a new database on a throwaway server (tests/pg_server.py) for the block."""
    if database_url:
        yield database_url
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_server import PostgresServer, server_programs

    programs = server_programs()
    if programs is None:
        raise SystemExit("PostgreSQL's server programs (initdb, pg_ctl) are needed: install postgresql")
    server = PostgresServer(programs)
    try:
        yield server.new_database()
    finally:
        server.close()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_faces(size: int, seed: int = 0) -> np.ndarray:
    """One synthetic descriptor per person, float32 (size, 128)."""
    return synthetic_gallery(size, 0, seed)[0]


def synthetic_gallery(size: int, probes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic descriptor per person, float32 (size, 128), and other photos of ``probes`` of them."""
    from benchmarks.synthetic import FaceModel

    photos, _, probe_photos = FaceModel.load().gallery(size, probes, np.random.default_rng(seed))
    return photos, probe_photos


def _rows(vectors: np.ndarray, model: str, first_id: int) -> Iterator[tuple[int, str]]:
    for i in range(len(vectors)):
        yield first_id + i, f"person {first_id + i:07d}"


def fill_postgres(database_url: str, vectors: np.ndarray, model: str) -> None:
    """Append one person per vector (ids after the largest) with COPY, and move the generation on."""
    with psycopg.connect(database_url) as connection:
        first = int(connection.execute("SELECT coalesce(max(id), 0) + 1 FROM people").fetchone()[0])  # type: ignore[index]
        for start in range(0, len(vectors), CHUNK):
            chunk = vectors[start : start + CHUNK]
            with connection.cursor().copy("COPY people (id, name, created_at, updated_at) FROM STDIN") as copy:
                for person_id, name in _rows(chunk, model, first + start):
                    copy.write_row((person_id, name, NOW, NOW))
            columns = (
                "id, person_id, embedding, model, box_left, box_top, box_right, box_bottom, "
                "landmarks, quality, photo_sha256, chip_jpeg, created_at"
            )
            with connection.cursor().copy(f"COPY faces ({columns}) FROM STDIN") as copy:
                for i, vector in enumerate(chunk):
                    face_id = first + start + i
                    copy.write_row(
                        (face_id, face_id, vector.astype("<f4").tobytes(), model, 40, 40, 140, 140, LANDMARKS, 1.0,
                         f"{face_id:064x}", CHIP, NOW)
                    )  # fmt: skip
        for table in ("people", "faces"):
            connection.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        connection.execute(
            "UPDATE store_state SET faces_generation = faces_generation + 1, log_start = faces_generation + 1"
        )
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE people, faces")


def fill_sqlite(database: Path, vectors: np.ndarray, model: str) -> None:
    """As ``fill_postgres``, into a gallery's SQLite file."""
    with sqlite3.connect(database) as db:
        first = int(db.execute("SELECT coalesce(max(id), 0) + 1 FROM people").fetchone()[0])
        for start in range(0, len(vectors), CHUNK):
            chunk = vectors[start : start + CHUNK]
            db.executemany(
                "INSERT INTO people (id, name, external_id, created_at, updated_at) VALUES (?, ?, NULL, ?, ?)",
                ((person_id, name, NOW, NOW) for person_id, name in _rows(chunk, model, first + start)),
            )
            db.executemany(
                "INSERT INTO faces (id, person_id, embedding, model, box_left, box_top, box_right, box_bottom, "
                "landmarks, quality, photo_sha256, chip_jpeg, created_at) "
                "VALUES (?, ?, ?, ?, 40, 40, 140, 140, ?, 1.0, ?, ?, ?)",
                (
                    (first + start + i, first + start + i, v.astype("<f4").tobytes(), model, LANDMARKS,
                     f"{first + start + i:064x}", CHIP, NOW)
                    for i, v in enumerate(chunk)
                ),
            )  # fmt: skip
        db.execute("UPDATE store_state SET faces_generation = faces_generation + 1, log_start = faces_generation + 1")


def face_record(vector: np.ndarray, model: str, sha256: str) -> FaceRecord:
    """A synthetic face to store through the store's API."""
    from gallery.store import FaceRecord

    return FaceRecord(
        embedding=np.asarray(vector, np.float32),
        model=model,
        box=(40, 40, 140, 140),
        landmarks=((60.0, 60.0), (70.0, 60.0), (100.0, 60.0), (90.0, 60.0), (80.0, 90.0)),
        quality=1.0,
        photo_sha256=sha256,
        chip_jpeg=CHIP,
    )
