"""``Store``: the gallery's people, faces, settings and audit log, with their FAISS index.

Consistency rules:
- The database is the truth; the index is a cache of one model's embeddings keyed by
  ``faces.id``. Every change to ``faces`` bumps ``store_state.faces_generation`` in the same
  transaction.
- A write holds the gallery's write lock (a thread lock and a file lock beside the database)
  across the database commit and the index file's atomic save, so writers in any process
  never interleave, and the saved index always matches some committed state.
- Before each search the store reads the generation (one primary-key lookup). If another
  store, in this or another process, has changed the faces, it brings its in-memory index
  up to date from the database: it removes faces that are gone and adds new ones, which is
  exact because face rows are immutable and their ids are never reused.
- The published index is never mutated: updates are made on a copy that is then swapped in
  (copy-on-write), so searches never wait for a write and never see a half-made index.

Crash safety: an enrolment or removal is one SQLite transaction (synchronous=FULL), so it
is wholly there or wholly absent after a crash; the index file is replaced atomically after
the commit, and a file that lags the database is detected (face ids) and rebuilt on open.

Erasure (``remove_person``): the person's rows are deleted with ``secure_delete`` on (their
bytes in the database file are overwritten with zeros), the index is saved without their
embeddings, and the WAL is checkpointed and truncated, so no copy of the embedding or chip
remains in ``gallery.db``, its WAL or ``faces.faiss``; if readers keep the WAL busy, or the
process dies first, the next removal or open empties it. Not covered: copies outside these
files (backups, file-system journals and freed blocks, SSD wear levelling, swap) - use
full-disk encryption where that matters. The audit log keeps the event, not the biometrics.

Cost: a write makes a new index that shares every slice of faces it does not touch
(``gallery.store.index``): it copies the PQ codes (32 bytes a face) and the slices it changes
(at most 32,768 faces each), and saves the index's main file and any new slice file. A sync
reads the ids of the faces added since; it reads every face id of the model only when faces
were removed. At a million faces an enrolment takes about 0.2 s and a removal 0.5 s, and
the writing process needs some 80 MB more than a reader; searches are unaffected.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gallery.errors import (
    AlreadyEnrolled,
    DuplicateExternalId,
    IndexFileInvalid,
    InvalidFaceRecord,
    ModelMismatch,
    PersonNotFound,
    StorageFailure,
    StoreClosed,
    StoreError,
)
from gallery.store.database import Database
from gallery.store.index import DEFAULT_POLICY, FaceIndex, IndexPolicy, ids_digest
from gallery.store.records import (
    AuditEvent,
    FaceRecord,
    FaceRow,
    PersonRow,
    ReembedTask,
    RemovedPerson,
    SearchHit,
    StoreStats,
)
from gallery.store.schema import NAME_MAX_LENGTH, AuditEntry, Face, Person, Setting, StoreState, utcnow

logger = logging.getLogger(__name__)

DATABASE_FILE = "gallery.db"
INDEX_FILE = "faces.faiss"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_GENERATION_SQL = "SELECT faces_generation FROM store_state WHERE id = 1"
_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit


@dataclass(frozen=True)
class _Owners:
    """Face id -> person id for every indexed face, as two arrays sorted by face id.

    Arrays rather than a dict: at a million faces a dict of Python ints costs ~100 MB, these
    16 MB. Names are looked up in the database for the few people a search returns.
    """

    face_ids: np.ndarray
    person_ids: np.ndarray

    @classmethod
    def of(cls, face_ids: np.ndarray, person_ids: np.ndarray) -> _Owners:
        order = np.argsort(face_ids, kind="stable")
        return cls(np.asarray(face_ids, np.int64)[order], np.asarray(person_ids, np.int64)[order])

    def people(self, face_ids: np.ndarray) -> np.ndarray:
        """The owners of ``face_ids``, which must all be held."""
        return self.person_ids[np.searchsorted(self.face_ids, face_ids)]

    def changed(self, gone: np.ndarray, new: _Owners) -> _Owners:
        keep = ~np.isin(self.face_ids, gone)
        return _Owners.of(
            np.concatenate([self.face_ids[keep], new.face_ids]), np.concatenate([self.person_ids[keep], new.person_ids])
        )

    def as_dict(self) -> dict[int, int]:
        return dict(zip(self.face_ids.tolist(), self.person_ids.tolist(), strict=True))


_NO_OWNERS = _Owners(np.empty(0, np.int64), np.empty(0, np.int64))


@dataclass(frozen=True)
class _Snapshot:
    """The index at one faces generation, with each face's owner."""

    generation: int
    index: FaceIndex
    owners: _Owners
    people: int  # rows in ``people``, which change only with the faces (a person always has one)


def _raw(session: Session) -> sqlite3.Cursor:
    """A cursor of the session's own connection, inside its transaction (10x faster than ORM rows)."""
    connection = session.connection().connection.driver_connection
    assert connection is not None
    return connection.cursor()


def clean_name(name: str, what: str = "name") -> str:
    """A person's name as stored: Unicode NFC, surrounding whitespace removed.

    NFC makes a name typed on different systems ("José" composed or decomposed) one person.

    Raises:
        InvalidFaceRecord: the name is empty, too long or holds control characters.
    """
    if not isinstance(name, str):
        raise InvalidFaceRecord(f"{what} must be a string, not {type(name).__name__}")
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise InvalidFaceRecord(f"{what} is empty")
    if len(cleaned) > NAME_MAX_LENGTH:
        raise InvalidFaceRecord(f"{what} is longer than {NAME_MAX_LENGTH} characters")
    if any(unicodedata.category(c) == "Cc" for c in cleaned):
        raise InvalidFaceRecord(f"{what} contains control characters")
    return cleaned


class Store:
    """One gallery home folder: ``gallery.db`` (SQLite) and ``faces.faiss`` (its index).

    Open with ``Store.open``. Safe to share between threads; several stores (in one or many
    processes) may open the same home.
    """

    def __init__(
        self, home: Path, database: Database, model: str, dimension: int, index_policy: IndexPolicy = DEFAULT_POLICY
    ) -> None:
        """Use ``Store.open``."""
        self.home = home
        self.model = model
        self.dimension = dimension
        self.index_policy = index_policy
        self.database_path = database.path
        self.index_path = home / INDEX_FILE
        self.index_repair: str | None = None
        self._db = database
        self._sync_lock = threading.Lock()
        self._closed = False
        self._schema_revision = database.schema_revision()
        with database.read() as session:
            self._gallery_id = session.scalars(select(StoreState.gallery_id).where(StoreState.id == 1)).one()
        self._snapshot = _Snapshot(-1, FaceIndex(model, dimension, policy=index_policy), _NO_OWNERS, 0)

    @classmethod
    def open(
        cls,
        home: Path | str,
        *,
        model: str,
        dimension: int = 128,
        lock_timeout: float = 60.0,
        index_policy: IndexPolicy = DEFAULT_POLICY,
    ) -> Store:
        """Open the gallery in ``home``, creating and migrating it as needed.

        The index file is loaded and checked against the database (model, gallery, face
        ids); if it is missing, damaged or stale it is rebuilt from the stored embeddings and
        saved, and ``index_repair`` says why.

        Args:
            home: the gallery's folder (created if missing).
            model: id of the embedding model whose faces this store searches and accepts.
            dimension: that model's embedding length.
            lock_timeout: seconds to wait for another process's write lock.
            index_policy: when search turns from exact to approximate (IVF), and its shape.

        Raises:
            SchemaTooNew: the database was written by a newer gallery.
            NotAGallery: ``gallery.db`` is not a readable gallery database.
            StoreBusy: the write lock was not obtained in time.
        """
        home = Path(home)
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageFailure(f"cannot create the gallery folder {home}: {error}") from error
        database = Database.open(home / DATABASE_FILE, lock_timeout=lock_timeout)
        try:
            store = cls(home, database, model, dimension, index_policy)
            store._load_index()
            # A removal killed between its commit and its checkpoint left the erased rows' old
            # pages in the WAL; empty it now (best effort, without waiting long for readers).
            database.checkpoint_truncate(wait_ms=200)
        except BaseException:
            database.close()
            raise
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database's connections; the store cannot be used afterwards."""
        self._closed = True
        self._db.close()

    # ---- index keeping -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

    def _load_index(self) -> None:
        """Adopt the index file if it matches the database, else rebuild and save it."""
        loaded: FaceIndex | None = None
        try:
            loaded, header = FaceIndex.load(self.index_path, policy=self.index_policy)
            reason = None
        except FileNotFoundError:
            reason = "the index file was missing"
        except (IndexFileInvalid, OSError) as error:
            reason = f"the index file was unreadable ({error})"
        with self._sync_lock, self._db.read() as session:
            generation = self._generation(session)
            wanted = self._face_ids(session)
            if loaded is not None and reason is None:
                if header.model != self.model or header.dimension != self.dimension:
                    reason = f"the index file holds model {header.model!r}, not {self.model!r}"
                elif header.gallery_id != self._gallery_id:
                    reason = "the index file belongs to another gallery database"
                elif ids_digest(loaded.ids()) != ids_digest(wanted):
                    reason = "the index file disagreed with the database's faces (stale)"
            if loaded is not None and reason is None:
                self._snapshot = _Snapshot(generation, loaded, self._owners(session), self._count_people(session))
            else:
                ids, vectors, owners = self._fetch_faces(session, None)
                index = FaceIndex.build(self.model, self.dimension, ids, vectors, policy=self.index_policy)
                self._snapshot = _Snapshot(generation, index, owners, self._count_people(session))
        if reason is None:
            return
        if loaded is None and not len(wanted) and generation == 0 and not self.index_path.exists():
            logger.debug("creating %s for a new gallery", self.index_path)
        else:
            logger.warning("rebuilding %s from the database: %s", self.index_path, reason)
            self.index_repair = reason
        with self._db.exclusive():
            self._sync_and_save()

    @staticmethod
    def _count_people(session: Session) -> int:
        return int(_raw(session).execute("SELECT count(*) FROM people").fetchone()[0])

    @staticmethod
    def _generation(session: Session) -> int:
        return session.scalars(select(StoreState.faces_generation).where(StoreState.id == 1)).one()

    def _face_ids(self, session: Session, *, above: int = -1) -> np.ndarray:
        """The ids of the faces of this store's model (those above ``above``), sorted (only integers: cheap)."""
        # The raw cursor, inside the session's transaction: 10x faster than ORM rows here.
        cursor = _raw(session).execute(
            "SELECT id FROM faces WHERE model = ? AND id > ? ORDER BY id", (self.model, above)
        )
        return np.fromiter((row[0] for row in cursor), dtype=np.int64)

    def _face_count(self, session: Session) -> int:
        return int(_raw(session).execute("SELECT count(*) FROM faces WHERE model = ?", (self.model,)).fetchone()[0])

    def _owners(self, session: Session) -> _Owners:
        """The owner of every face of this store's model."""
        cursor = _raw(session).execute("SELECT id, person_id FROM faces WHERE model = ? ORDER BY id", (self.model,))
        pairs = np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, 2)
        return _Owners(pairs[:, 0].copy(), pairs[:, 1].copy())

    def _decode(self, face_id: int, blob: bytes) -> np.ndarray:
        if len(blob) != 4 * self.dimension:
            raise StoreError(f"face {face_id}'s embedding has {len(blob)} bytes, not {4 * self.dimension}")
        return np.frombuffer(blob, dtype="<f4")

    def _fetch_faces(self, session: Session, ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, _Owners]:
        """Ids, embeddings and owners of the faces ``ids`` (all of this model's when None).

        Embeddings go straight into one float32 array: at a million faces, a list of row
        objects holding 512-byte blobs would need gigabytes on the way.
        """
        cursor = _raw(session)
        if ids is None:
            count = cursor.execute("SELECT count(*) FROM faces WHERE model = ?", (self.model,)).fetchone()[0]
            batches = [
                cursor.execute("SELECT id, person_id, embedding FROM faces WHERE model = ? ORDER BY id", (self.model,))
            ]
        else:
            count = len(ids)
            batches = []
            for start in range(0, len(ids), _CHUNK):
                chunk = [int(i) for i in ids[start : start + _CHUNK]]
                marks = ",".join("?" * len(chunk))
                batches.append(
                    cursor.execute(
                        f"SELECT id, person_id, embedding FROM faces WHERE id IN ({marks}) ORDER BY id", chunk
                    )
                )
        face_ids = np.empty(count, np.int64)
        person_ids = np.empty(count, np.int64)
        vectors = np.empty((count, self.dimension), "<f4")
        n = 0
        for rows in batches:
            for face_id, person_id, blob in rows:
                if n == count:
                    raise StoreError("the faces changed while being read")
                face_ids[n], person_ids[n], vectors[n] = face_id, person_id, self._decode(face_id, blob)
                n += 1
        return face_ids[:n], vectors[:n], _Owners.of(face_ids[:n], person_ids[:n])

    def _sync(self) -> _Snapshot:
        """Bring the in-memory index up to the database's faces and publish it.

        Only the faces that appeared since the last sync are read in full; those gone are
        found by comparing id lists (face rows are immutable and ids never reused).
        """
        with self._sync_lock, self._db.read() as session:
            current = self._snapshot
            generation = self._generation(session)
            if generation == current.generation:
                return current
            held = current.index.ids()
            count = self._face_count(session)
            # Face ids only grow (AUTOINCREMENT, one writer at a time), so the faces added since are
            # those above the newest held, and if the count adds up none is gone: an enrolment at a
            # million faces reads its own face's id, not a million (0.45 s).
            new = self._face_ids(session, above=int(held[-1]) if len(held) else -1)
            gone = np.empty(0, np.int64)
            if count != len(held) + len(new):
                wanted = self._face_ids(session)
                new = np.setdiff1d(wanted, held, assume_unique=True)
                gone = np.setdiff1d(held, wanted, assume_unique=True)
            if len(new) > count // 2:
                ids, vectors, owners = self._fetch_faces(session, None)
                index = FaceIndex.build(self.model, self.dimension, ids, vectors, policy=self.index_policy)
            else:
                new_ids, vectors, new_owners = self._fetch_faces(session, new)
                index = current.index.updated(gone, new_ids, vectors)
                owners = current.owners.changed(gone, new_owners)
            self._snapshot = _Snapshot(generation, index, owners, self._count_people(session))
            return self._snapshot

    def _fresh_snapshot(self) -> _Snapshot:
        """The published snapshot, synced first if the database's faces have changed."""
        self._check_open()
        snapshot = self._snapshot
        generation = self._db.read_scalar(_GENERATION_SQL)
        return snapshot if generation == snapshot.generation else self._sync()

    def _sync_and_save(self) -> None:
        """After a commit (write lock held): sync the index and save it atomically.

        A failed save is logged, not raised: the database already holds the change, and a
        stale or missing index file is rebuilt on the next open.
        """
        snapshot = self._sync()
        try:
            snapshot.index.save(self.index_path, gallery_id=self._gallery_id, generation=snapshot.generation)
        except OSError as error:
            logger.warning("could not save %s (it will be rebuilt on next open): %s", self.index_path, error)

    def refresh(self) -> None:
        """Bring the index up to date with other stores' writes now (searches do it anyway)."""
        self._fresh_snapshot()

    # ---- writes ----------------------------------------------------------------------

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the gallery's write lock across several calls (reentrant in this thread).

        Use it to make a check and a write atomic, e.g. "this face matches nobody else"
        followed by ``add_person_with_face``: no other writer, in any process, can slip
        between them.

        Raises:
            StoreBusy: the lock was not obtained within the lock timeout.
        """
        self._check_open()
        with self._db.exclusive():
            yield

    def add_person_with_face(self, name: str, face: FaceRecord, *, external_id: str | None = None) -> tuple[int, int]:
        """Enroll a new person with their first face, in one transaction.

        Args:
            name: the person's name (NFC-normalised, trimmed); must not be enrolled yet.
            face: the face; ``face.model`` must be the store's model.
            external_id: the host system's id for the person, unique when given.

        Returns:
            ``(person_id, face_id)``.

        Raises:
            AlreadyEnrolled, DuplicateExternalId: nothing was written.
            ModelMismatch, InvalidFaceRecord: the face cannot be stored.
        """
        name = clean_name(name)
        external_id = None if external_id is None else clean_name(external_id, "external id")
        vector = self._check_face(face)
        with self.write_lock():
            try:
                with self._db.write() as session:
                    if session.scalar(select(Person.id).where(Person.name == name)) is not None:
                        raise AlreadyEnrolled(f"{name!r} is already enrolled")
                    if (
                        external_id is not None
                        and session.scalar(select(Person.id).where(Person.external_id == external_id)) is not None
                    ):
                        raise DuplicateExternalId(f"external id {external_id!r} already belongs to another person")
                    person = Person(name=name, external_id=external_id)
                    session.add(person)
                    session.flush()
                    face_id = self._insert_face(session, person.id, face, vector)
                    person_id = person.id
            except IntegrityError as error:  # a writer outside this store slipped in
                if "people.external_id" in str(error.orig):
                    raise DuplicateExternalId(f"external id {external_id!r} is already taken") from error
                if "people.name" in str(error.orig):
                    raise AlreadyEnrolled(f"{name!r} is already enrolled") from error
                raise
            self._sync_and_save()
        return person_id, face_id

    def add_face(self, person_id: int, face: FaceRecord) -> int:
        """Add another face of an enrolled person, in one transaction.

        Returns:
            The new face's id.

        Raises:
            PersonNotFound: no person has ``person_id`` (nothing was written).
            ModelMismatch, InvalidFaceRecord: the face cannot be stored.
        """
        vector = self._check_face(face)
        with self.write_lock():
            with self._db.write() as session:
                person = session.get(Person, person_id)
                if person is None:
                    raise PersonNotFound(f"no person has id {person_id}")
                face_id = self._insert_face(session, person.id, face, vector)
                person.updated_at = utcnow()
            self._sync_and_save()
        return face_id

    def add_many(self, entries: Sequence[tuple[str, Sequence[FaceRecord]]]) -> list[tuple[int, tuple[int, ...]]]:
        """Add faces of many people in one transaction and one index save (bulk enrolment).

        A name not enrolled yet becomes a new person; faces of a name already enrolled are
        added to that person. All entries are written or none is, so each person's faces
        arrive together.

        Args:
            entries: ``(name, faces)`` pairs; names must be distinct and each have a face.

        Returns:
            Per entry, ``(person_id, face_ids)``.

        Raises:
            ModelMismatch, InvalidFaceRecord: a face cannot be stored (nothing was written).
        """
        cleaned = [(clean_name(name), [(face, self._check_face(face)) for face in faces]) for name, faces in entries]
        if len({name for name, _ in cleaned}) != len(cleaned):
            raise InvalidFaceRecord("add_many needs each name at most once")
        if any(not faces for _, faces in cleaned):
            raise InvalidFaceRecord("add_many needs at least one face per name")
        written: list[tuple[int, tuple[int, ...]]] = []
        with self.write_lock():
            with self._db.write() as session:
                for name, faces in cleaned:
                    person = session.scalar(select(Person).where(Person.name == name))
                    if person is None:
                        person = Person(name=name)
                        session.add(person)
                        session.flush()
                    else:
                        person.updated_at = utcnow()
                    face_ids = tuple(self._insert_face(session, person.id, f, v, bump=False) for f, v in faces)
                    written.append((person.id, face_ids))
                if written:
                    self._bump_generation(session)
            self._sync_and_save()
        return written

    def photos_enrolled(self, photo_sha256s: Iterable[str]) -> dict[str, str]:
        """Which of these photos (by SHA-256) are enrolled already: sha -> the person's name."""
        self._check_open()
        wanted = sorted(set(photo_sha256s))
        found: dict[str, str] = {}
        with self._db.read() as session:
            for start in range(0, len(wanted), _CHUNK):
                rows = session.execute(
                    select(Face.photo_sha256, Person.name)
                    .join(Person, Face.person_id == Person.id)
                    .where(Face.photo_sha256.in_(wanted[start : start + _CHUNK]))
                )
                found.update({sha: name for sha, name in rows})
        return found

    def remove_person(self, name: str) -> RemovedPerson:
        """Erase a person and all their faces: database rows, index entries and WAL copies.

        The rows are deleted in one transaction (``secure_delete`` zeroes their pages), the
        index is saved without them, then the WAL is checkpointed and truncated.

        Raises:
            PersonNotFound: nobody is enrolled under ``name`` (nothing changed).
        """
        name = clean_name(name)
        with self.write_lock():
            with self._db.write() as session:
                person = session.scalar(select(Person).where(Person.name == name))
                if person is None:
                    raise PersonNotFound(f"{name!r} is not enrolled")
                face_ids = tuple(session.scalars(select(Face.id).where(Face.person_id == person.id).order_by(Face.id)))
                removed = (person.id, person.name, person.external_id)
                # Explicit, although the foreign key cascades: erasure must not hang on a pragma.
                session.execute(delete(Face).where(Face.person_id == person.id))
                session.execute(delete(Person).where(Person.id == person.id))
                self._bump_generation(session)
            self._sync_and_save()
            wal_cleared = self._db.checkpoint_truncate()
        return RemovedPerson(*removed, face_ids=face_ids, wal_cleared=wal_cleared)

    def reembed(self, embeddings: Mapping[int, np.ndarray]) -> dict[int, int]:
        """Replace faces' embeddings with ones made by the store's model, in one transaction.

        Each face is re-inserted under a new id with the same owner and metadata (face rows
        are immutable, which keeps the index exact) and the old row is deleted.

        Args:
            embeddings: face id -> its new (dimension,) embedding from ``self.model``.

        Returns:
            Old face id -> new face id.

        Raises:
            InvalidFaceRecord: an embedding is malformed or a face id does not exist.
        """
        vectors = {int(i): self._check_embedding(e) for i, e in embeddings.items()}
        renumbered: dict[int, int] = {}
        with self.write_lock():
            with self._db.write() as session:
                for old_id, vector in vectors.items():
                    old = session.get(Face, old_id)
                    if old is None:
                        raise InvalidFaceRecord(f"no face has id {old_id}")
                    new = Face(
                        person_id=old.person_id, embedding=vector.tobytes(), model=self.model,
                        box_left=old.box_left, box_top=old.box_top, box_right=old.box_right,
                        box_bottom=old.box_bottom, landmarks=old.landmarks, quality=old.quality,
                        photo_sha256=old.photo_sha256, chip_jpeg=old.chip_jpeg, created_at=old.created_at,
                    )  # fmt: skip
                    session.add(new)
                    session.flush()
                    session.delete(old)
                    renumbered[old_id] = new.id
                if renumbered:
                    self._bump_generation(session)
            self._sync_and_save()
        return renumbered

    def _insert_face(
        self, session: Session, person_id: int, face: FaceRecord, vector: np.ndarray, *, bump: bool = True
    ) -> int:
        row = Face(
            person_id=person_id,
            embedding=vector.tobytes(),
            model=face.model,
            box_left=int(face.box[0]),
            box_top=int(face.box[1]),
            box_right=int(face.box[2]),
            box_bottom=int(face.box[3]),
            landmarks=[[float(x), float(y)] for x, y in face.landmarks],
            quality=float(face.quality),
            photo_sha256=face.photo_sha256,
            chip_jpeg=bytes(face.chip_jpeg),
        )
        session.add(row)
        session.flush()
        if bump:
            self._bump_generation(session)
        return row.id

    @staticmethod
    def _bump_generation(session: Session) -> None:
        session.execute(
            update(StoreState).where(StoreState.id == 1).values(faces_generation=StoreState.faces_generation + 1)
        )

    def _check_embedding(self, embedding: np.ndarray) -> np.ndarray:
        vector = np.asarray(embedding)
        if vector.shape != (self.dimension,) or not np.issubdtype(vector.dtype, np.floating):
            raise InvalidFaceRecord(f"an embedding must be {self.dimension} floats, got {vector.dtype} {vector.shape}")
        vector = vector.astype("<f4")
        if not np.isfinite(vector).all():
            raise InvalidFaceRecord("an embedding holds non-finite values")
        return vector

    def _check_face(self, face: FaceRecord) -> np.ndarray:
        """The face's embedding as little-endian float32, after checking every field."""
        if face.model != self.model:
            raise ModelMismatch(f"the face was embedded by {face.model!r}; this gallery uses {self.model!r}")
        vector = self._check_embedding(face.embedding)
        if len(face.box) != 4 or not all(isinstance(v, int | np.integer) for v in face.box):
            raise InvalidFaceRecord(f"box must be 4 integers (left, top, right, bottom), got {face.box!r}")
        points = np.asarray(face.landmarks, dtype=np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise InvalidFaceRecord(f"landmarks must be 5 finite (x, y) points, got shape {points.shape}")
        if not np.isfinite(float(face.quality)):
            raise InvalidFaceRecord("quality must be finite")
        if not isinstance(face.photo_sha256, str) or not _SHA256_HEX.fullmatch(face.photo_sha256):
            raise InvalidFaceRecord("photo_sha256 must be 64 lowercase hex digits")
        if not isinstance(face.chip_jpeg, bytes | bytearray) or not face.chip_jpeg:
            raise InvalidFaceRecord("chip_jpeg must be non-empty bytes")
        return vector

    # ---- reads -----------------------------------------------------------------------

    def search(self, embeddings: np.ndarray, k: int, *, model: str | None = None) -> list[list[SearchHit]]:
        """The ``k`` nearest people to each query embedding, nearest first.

        Each person appears once, with their nearest face. Only faces of the store's model are
        searched; another store's writes are picked up first.

        Args:
            embeddings: (n, dimension) or (dimension,) query embeddings.
            k: people per query at most.
            model: if given, the queries' model; must equal the store's.

        Returns:
            One list of ``SearchHit`` per query (ascending distance; ties by face id).

        Raises:
            ModelMismatch: ``model`` is not the store's model.
            InvalidFaceRecord: a query is not a finite (dimension,) vector.
        """
        if model is not None and model != self.model:
            raise ModelMismatch(f"queries from {model!r} cannot search a gallery of {self.model!r} faces")
        queries = np.asarray(embeddings)
        queries = np.stack([self._check_embedding(q) for q in (queries[None] if queries.ndim == 1 else queries)])
        snapshot = self._fresh_snapshot()
        if k <= 0:
            return [[] for _ in queries]
        return [self._nearest_people(snapshot, query, k) for query in queries]

    def _nearest_people(self, snapshot: _Snapshot, query: np.ndarray, k: int) -> list[SearchHit]:
        """Widen the face search until ``k`` distinct people are found or the index is exhausted."""
        total = len(snapshot.index)
        wanted_faces = min(total, 4 * k)
        while True:
            ((distances, ids),) = snapshot.index.search(query, wanted_faces)
            people = snapshot.owners.people(ids)
            _, first = np.unique(people, return_index=True)  # each person's nearest face
            first.sort()
            if len(first) >= k or wanted_faces >= total:
                break
            wanted_faces = min(total, 4 * wanted_faces)
        first = first[:k]
        names = self._names(people[first])
        return [
            SearchHit(int(ids[i]), int(people[i]), names[int(people[i])], float(distances[i]))
            for i in first
            if int(people[i]) in names  # absent only if removed since the snapshot was taken
        ]

    def _names(self, person_ids: np.ndarray) -> dict[int, str]:
        """Person id -> name, for a few people."""
        wanted = [int(i) for i in person_ids]
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        return dict(self._db.read_rows(f"SELECT id, name FROM people WHERE id IN ({marks})", wanted))

    def find_person(self, name: str) -> PersonRow | None:
        """The person enrolled under ``name`` (NFC-normalised, trimmed), or None."""
        self._check_open()
        return self._one_person(Person.name == clean_name(name))

    def find_person_by_external_id(self, external_id: str) -> PersonRow | None:
        """The person carrying the host system's ``external_id``, or None."""
        self._check_open()
        return self._one_person(Person.external_id == clean_name(external_id, "external id"))

    def person(self, person_id: int) -> PersonRow | None:
        """The person with this id, or None."""
        self._check_open()
        return self._one_person(Person.id == person_id)

    def generation(self) -> int:
        """A number that changes whenever faces are added or removed (by any process): keys caches of search results."""
        return self._fresh_snapshot().generation

    def people_count(self) -> int:
        """How many people are enrolled (counted when the faces last changed: free per call)."""
        return self._fresh_snapshot().people

    def people(self) -> list[PersonRow]:
        """Every enrolled person, by name."""
        self._check_open()
        return self._people_where(None)

    def _one_person(self, condition: Any) -> PersonRow | None:
        rows = self._people_where(condition)
        return rows[0] if rows else None

    def _people_where(self, condition: Any) -> list[PersonRow]:
        face_count = func.count(Face.id)
        query = select(Person, face_count).outerjoin(Face, Face.person_id == Person.id).group_by(Person.id)
        if condition is not None:
            query = query.where(condition)
        with self._db.read() as session:
            rows = session.execute(query.order_by(Person.name)).all()
            return [PersonRow(p.id, p.name, p.external_id, p.created_at, p.updated_at, count) for p, count in rows]

    def faces_of(self, person_id: int) -> list[FaceRow]:
        """A person's faces (any model), oldest first, without embeddings or chips."""
        self._check_open()
        with self._db.read() as session:
            rows = session.scalars(select(Face).where(Face.person_id == person_id).order_by(Face.id)).all()
            return [
                FaceRow(
                    id=f.id,
                    person_id=f.person_id,
                    model=f.model,
                    box=(f.box_left, f.box_top, f.box_right, f.box_bottom),
                    landmarks=tuple((float(x), float(y)) for x, y in f.landmarks),
                    quality=f.quality,
                    photo_sha256=f.photo_sha256,
                    created_at=f.created_at,
                )
                for f in rows
            ]

    def embeddings_for(self, person_id: int) -> tuple[np.ndarray, np.ndarray]:
        """A person's face ids and embeddings of the store's model (for verification).

        Returns:
            ``(face_ids, embeddings)``: int64 (n,) and float32 (n, dimension), oldest first;
            empty when the person has no faces of this model or does not exist.
        """
        self._check_open()
        with self._db.read() as session:
            rows = session.execute(
                select(Face.id, Face.embedding)
                .where(Face.person_id == person_id, Face.model == self.model)
                .order_by(Face.id)
            ).all()
        ids = np.array([i for i, _ in rows], dtype=np.int64)
        vectors = np.stack([self._decode(i, b) for i, b in rows]) if rows else np.empty((0, self.dimension), "<f4")
        return ids, vectors

    def chip(self, face_id: int) -> bytes:
        """A face's stored chip (JPEG bytes).

        Raises:
            InvalidFaceRecord: no face has ``face_id``.
        """
        self._check_open()
        with self._db.read() as session:
            chip = session.scalar(select(Face.chip_jpeg).where(Face.id == face_id))
        if chip is None:
            raise InvalidFaceRecord(f"no face has id {face_id}")
        return chip

    def faces_to_reembed(self) -> list[ReembedTask]:
        """Faces stored with another model than the store's, with the chips to re-embed them."""
        self._check_open()
        with self._db.read() as session:
            rows = session.execute(
                select(Face.id, Face.person_id, Face.model, Face.chip_jpeg)
                .where(Face.model != self.model)
                .order_by(Face.id)
            ).all()
        return [ReembedTask(*row) for row in rows]

    # ---- settings and audit ------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        self._check_open()
        with self._db.read() as session:
            row = session.get(Setting, key)
            return default if row is None else row.value

    def settings(self) -> dict[str, Any]:
        """Every setting, by key."""
        self._check_open()
        with self._db.read() as session:
            return {row.key: row.value for row in session.scalars(select(Setting).order_by(Setting.key))}

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key``, replacing any previous one."""
        self.set_settings({key: value})

    def set_settings(self, values: Mapping[str, Any]) -> None:
        """Store several settings in one transaction: all of them or, on failure, none.

        Raises:
            TypeError: a value is not JSON-serialisable.
        """
        self._check_open()
        for key, value in values.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError) as error:
                raise TypeError(f"setting {key!r} is not JSON-serialisable: {error}") from None
        now = utcnow()
        with self._db.write() as session:
            for key, value in values.items():
                statement = sqlite_insert(Setting).values(key=key, value=value, updated_at=now)
                session.execute(
                    statement.on_conflict_do_update(
                        index_elements=[Setting.key], set_={"value": statement.excluded.value, "updated_at": now}
                    )
                )

    def audit(
        self,
        action: str,
        *,
        outcome: str,
        person_name: str | None = None,
        person_id: int | None = None,
        model: str | None = None,
        rule: Any = None,
        detail: Any = None,
    ) -> int:
        """Append an event to the audit log; returns its id.

        Never pass photo or embedding data: ``rule`` and ``detail`` are small JSON values
        (the threshold in force, distances, the reason for a refusal).
        """
        self._check_open()
        entry = AuditEntry(
            action=action,
            outcome=outcome,
            person_name=person_name,
            person_id=person_id,
            model=model,
            rule=rule,
            detail=detail,
        )
        with self._db.write() as session:
            session.add(entry)
            session.flush()
            return entry.id

    def audit_many(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Append several ``(action, fields)`` events (``audit``'s keyword arguments) in one transaction.

        One fsync for a burst of door events instead of one each, so a busy door's log does
        not compete with enrolments for the write lock event by event.
        """
        self._check_open()
        with self._db.write() as session:
            session.add_all(AuditEntry(action=action, **fields) for action, fields in events)

    def audit_log(self, *, limit: int = 100, action: str | None = None) -> list[AuditEvent]:
        """The latest audit events, newest first, optionally of one action."""
        self._check_open()
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        with self._db.read() as session:
            return [
                AuditEvent(e.id, e.at, e.action, e.outcome, e.person_name, e.person_id, e.model, e.rule, e.detail)
                for e in session.scalars(query)
            ]

    # ---- diagnostics -------------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Counts, paths and the index's state."""
        snapshot = self._fresh_snapshot()
        with self._db.read() as session:
            people = session.scalar(select(func.count(Person.id))) or 0
            by_model = dict(session.execute(select(Face.model, func.count(Face.id)).group_by(Face.model)).all())
        return StoreStats(
            home=self.home,
            database_path=self.database_path,
            index_path=self.index_path,
            model=self.model,
            dimension=self.dimension,
            people=people,
            faces=sum(by_model.values()),
            faces_by_model=by_model,
            indexed_faces=len(snapshot.index),
            generation=snapshot.generation,
            schema_revision=self._schema_revision,
            index_repair=self.index_repair,
        )

    def consistency_problems(self) -> list[str]:
        """Problems found checking the database and both indexes against it; empty when sound.

        Runs SQLite's integrity and foreign-key checks, then compares the in-memory index and
        the index file with the database's faces of this model: ids, owners and every vector.
        Reads everything: meant for tests, a ``--check`` option and after a crash, on a
        gallery nobody is writing to.
        """
        problems = self._db.integrity_problems()
        snapshot = self._fresh_snapshot()
        with self._db.read() as session:
            ids, vectors, owners = self._fetch_faces(session, None)
        if snapshot.owners.as_dict() != owners.as_dict():
            problems.append("the in-memory index's face owners disagree with the database")
        try:
            on_disk, header = FaceIndex.load(self.index_path, policy=self.index_policy)
        except FileNotFoundError:
            problems.append("the index file is missing")
            on_disk = None
        except (IndexFileInvalid, OSError) as error:
            problems.append(f"the index file is unreadable: {error}")
            on_disk = None
        else:
            if header.model != self.model or header.gallery_id != self._gallery_id:
                problems.append("the index file belongs to another model or gallery")
        for where, index in (("in-memory index", snapshot.index), ("index file", on_disk)):
            if index is None:
                continue
            if index.ids().tolist() != sorted(ids.tolist()):
                problems.append(f"the {where} holds other faces than the database")
            elif any(not np.array_equal(index.vector(i), v) for i, v in zip(ids.tolist(), vectors, strict=True)):
                problems.append(f"the {where} holds other embeddings than the database")
        return problems
