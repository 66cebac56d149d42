"""``Store``: the front door to a gallery's people, faces, settings and audit log, and their index.

Each concern has its module; ``Store`` holds the write lock across them and keeps their
promises together: ``connect`` picks the database (``sqlite``, or ``postgres`` shared by hosts,
behind ``backend``); ``replica`` keeps the in-memory FAISS index in step with it (``follower``
on a server) and saves its file; ``validation`` says what may be stored, ``queries`` holds the
portable SQL, ``settings`` and ``audit_log`` their tables; ``home`` the folder (a moved or
deleted one is noticed); ``erasure`` finishes a removal's unfinished erasure; ``hosts`` which
hosts have applied which generation; ``bookkeeping`` (a base of ``Store``) its settings, audit
and diagnostics methods.

Consistency and crash safety: the database is the truth, the index a cache of one model's
embeddings keyed by ``faces.id`` (``replica`` states the rules). A write is one database
transaction, durable when it returns, and holds the gallery's write lock (SQLite: a thread
and a file lock; PostgreSQL: advisory locks) across the commit and the index file's atomic
save, so writers never interleave and the saved index always matches some committed state.
Searches never wait for a write. What a removal erases, and what it cannot, is in
``remove_person`` and the README's Guarantees.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import filelock
import numpy as np
from sqlalchemy import ColumnElement
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gallery.errors import AlreadyEnrolled, DuplicateExternalId, ModelMismatch, StoreClosed
from gallery.store import queries
from gallery.store.audit_log import AuditLog
from gallery.store.backend import Backend
from gallery.store.bookkeeping import Bookkeeping
from gallery.store.connect import open_backend
from gallery.store.erasure import BRIEF_ERASE_WAIT_S, PendingErasure, outstanding
from gallery.store.follower import DEFAULT_CHECK_INTERVAL_S
from gallery.store.home import HomeIdentity, make_home
from gallery.store.hosts import Site
from gallery.store.index import DEFAULT_POLICY, IndexPolicy
from gallery.store.keys import ApiKeys
from gallery.store.records import (
    FaceRecord,
    PersonRow,
    ReembedTask,
    RemovedPerson,
    SearchHit,
)
from gallery.store.replica import DEFAULT_MAX_STALENESS_S, IndexReplica
from gallery.store.schema import Person
from gallery.store.settings import Settings
from gallery.store.validation import checked_batch, checked_embedding, checked_face, checked_queries, clean_name

INDEX_FILE = "faces.faiss"
HOST_LOCK_FILE = "faces.faiss.lock"  # on a database server: this host's saves of its index file
# How long a removal waits for readers in the middle of a read before it reports the WAL pending.
REMOVAL_ERASE_WAIT_S = 30.0


class Store(Bookkeeping):
    """One gallery home folder: ``gallery.db`` (SQLite) and ``faces.faiss`` (its index).

    Open with ``Store.open``. Safe to share between threads; several stores (in one or many
    processes) may open the same home.
    """

    def __init__(
        self,
        home: Path,
        backend: Backend,
        model: str,
        dimension: int,
        index_policy: IndexPolicy = DEFAULT_POLICY,
        database_path: Path | None = None,
        max_staleness_s: float = DEFAULT_MAX_STALENESS_S,
    ) -> None:
        """Use ``Store.open``."""
        self.home = home
        self.model = model
        self.dimension = dimension
        self.index_policy = index_policy
        self.database_path = database_path  # None on a database server
        self.index_path = home / INDEX_FILE
        self._db = backend
        self._host_lock = filelock.FileLock(home / HOST_LOCK_FILE, mode=0o600)
        self._closed = False
        self._identity = HomeIdentity(home, database_path)
        self._schema_revision = backend.schema_revision()
        with backend.read() as session:
            gallery_id = queries.gallery_id(session)
        self._replica = IndexReplica(
            backend,
            self.index_path,
            model=model,
            dimension=dimension,
            policy=index_policy,
            gallery_id=gallery_id,
            # SQLite: the gallery's write lock (its writers save the file). A server: this host's own
            # lock, since its file is its alone and its follower saves it too.
            save_lock=backend.exclusive if not backend.server else lambda: self._host_lock,
            followed=backend.server,
            max_staleness_s=max_staleness_s,
        )
        self.site = Site(backend, home, self._replica)  # this host among those sharing a database server
        self._settings = Settings(backend)
        self._audit_log = AuditLog(backend)
        self.keys = ApiKeys(backend, self._check_open)  # the HTTP service's keys
        self._erasure = PendingErasure(backend, self._settings, self.write_lock, self._saved_index)

    @classmethod
    def open(
        cls,
        home: Path | str,
        *,
        model: str,
        dimension: int = 128,
        database_url: str | None = None,
        lock_timeout: float = 60.0,
        index_policy: IndexPolicy = DEFAULT_POLICY,
        max_staleness_s: float = DEFAULT_MAX_STALENESS_S,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
    ) -> Store:
        """Open the gallery in ``home``, creating and migrating its database as needed.

        The index file is loaded, caught up with the database's change log and checked against
        it (model, gallery, face ids); if it is missing, damaged or stale it is rebuilt from the
        stored embeddings and saved, and ``index_repair`` says why.

        Args:
            home: the gallery's folder (created if missing): the database (SQLite), this host's
                index replica and files.
            model: id of the embedding model whose faces this store searches and accepts.
            dimension: that model's embedding length.
            database_url: None for ``gallery.db`` in ``home``; ``postgresql://user@host:port/db``
                for a database shared by several hosts (``sqlite:///path`` also works).
            lock_timeout: seconds to wait for another writer's lock.
            index_policy: when search turns from exact to compressed (PQ), and its shape.
            max_staleness_s: (database server) how long searches go on from this host's replica
                while the database cannot be reached, before they refuse (``DataTooStale``).
            check_interval_s: (database server) how often the follower asks the database for
                changes besides its wake-ups.

        Raises:
            SchemaTooNew: the database was written by a newer gallery.
            NotAGallery: the database is not a readable gallery database.
            StoreBusy: the write lock was not obtained in time.
            InvalidDatabaseUrl, DatabaseLoginRefused, DatabaseUnavailable: the server's URL is wrong,
                refused the login, or cannot be reached.
        """
        home = make_home(Path(home))
        backend, database_path = open_backend(home, database_url, lock_timeout=lock_timeout)
        try:
            store = cls(home, backend, model, dimension, index_policy, database_path, max_staleness_s)
            store._replica.load()
            # A removal killed between its commit and its checkpoint left the erased rows' old
            # pages in the WAL; empty it now (best effort, without waiting long for readers),
            # and finish any erasure another process could not.
            backend.erase_deleted_copies(wait_s=BRIEF_ERASE_WAIT_S)
            store._erasure.finish()
            if backend.server:
                store.site.follow(check_interval_s)
        except BaseException:
            backend.close()
            raise
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop following the database and release its connections; the store cannot be used afterwards."""
        self._closed = True
        self.site.stop()
        self._db.close()

    @property
    def index_repair(self) -> str | None:
        """Why the index file was rebuilt when this store was opened, or None."""
        return self._replica.repair

    def _check_open(self) -> None:
        """Refuse a closed store, and one whose folder or database is no longer where it was opened (``home``).

        Raises:
            StoreClosed: ``close()`` was called.
            GalleryVanished: the folder or its database was deleted, moved or replaced.
        """
        if self._closed:
            raise StoreClosed("the store is closed")
        self._identity.check()

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        """One read transaction of an open store."""
        self._check_open()
        with self._db.read() as session:
            yield session

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
            self._check_open()  # it may have vanished while this waited for the lock
            yield

    @contextmanager
    def _writing_faces(self) -> Iterator[Session]:
        """The write lock, one transaction that bumps the faces generation, then the index saved."""
        with self.write_lock():
            with self._db.write() as session:
                yield session
                queries.bump_generation(session)
                self._check_open()  # not into a deleted or moved database: roll back instead
            self._saved_index()
            self._erasure.finish()

    def _saved_index(self) -> bool:
        """After a commit (write lock held): save the index, unless the folder is gone.

        Returns:
            Whether no index file on disk holds a face the database lacks (``sync_and_save``).

        Raises:
            GalleryVanished: the folder vanished after the commit (no file was written).
        """
        self._check_open()
        return self._replica.sync_and_save()

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
        vector = checked_face(face, self.model, self.dimension)
        try:
            with self._writing_faces() as session:
                person_id = queries.insert_person(session, name, external_id)
                face_id = queries.insert_face(session, person_id, face, vector)
        except IntegrityError as error:  # a writer outside this store slipped in
            column = self._db.unique_violation(error)
            if column == "people.external_id":
                raise DuplicateExternalId(f"external id {external_id!r} is already taken") from error
            if column == "people.name":
                raise AlreadyEnrolled(f"{name!r} is already enrolled") from error
            raise
        return person_id, face_id

    def add_face(self, person_id: int, face: FaceRecord) -> int:
        """Add another face of an enrolled person, in one transaction.

        Returns:
            The new face's id.

        Raises:
            PersonNotFound: no person has ``person_id`` (nothing was written).
            ModelMismatch, InvalidFaceRecord: the face cannot be stored.
        """
        vector = checked_face(face, self.model, self.dimension)
        with self._writing_faces() as session:
            return queries.add_face(session, person_id, face, vector)

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
        cleaned = checked_batch(entries, self.model, self.dimension)
        if not cleaned:
            self._check_open()
            return []
        written: list[tuple[int, tuple[int, ...]]] = []
        with self._writing_faces() as session:
            for name, faces in cleaned:
                person_id = queries.person_named(session, name)
                written.append((person_id, tuple(queries.insert_face(session, person_id, f, v) for f, v in faces)))
        return written

    def remove_person(self, name: str) -> RemovedPerson:
        """Erase a person and all their faces: database rows, index entries, and the copies the engine keeps.

        The rows are deleted in one transaction and the index saved without them (or deleted if
        it cannot be). SQLite: ``secure_delete`` zeroes their pages and the WAL is checkpointed
        and truncated, waiting up to ``REMOVAL_ERASE_WAIT_S`` for readers. PostgreSQL: the
        tables are vacuumed, then the removal waits up to ``HOSTS_WAIT_S`` for every connected
        host's replica to apply it. What could not be erased is in the result's ``pending``;
        the local part is finished by the next open or write, other hosts catch up by themselves.

        Raises:
            PersonNotFound: nobody is enrolled under ``name`` (nothing changed).
            GalleryVanished: the folder or database vanished (nothing was committed, unless it
                vanished between the commit and the index save; no index file was written).
        """
        name = clean_name(name)
        with self.write_lock():
            with self._db.write() as session:
                person_id, name, external_id, face_ids = queries.delete_person(session, name)
                generation = queries.bump_generation(session)
                self._check_open()
            index_clean = self._saved_index()
            wal_cleared = self._db.erase_deleted_copies(wait_s=REMOVAL_ERASE_WAIT_S)
            pending = outstanding(index_clean, wal_cleared)
            if pending:
                self._erasure.mark(pending)
            else:
                self._erasure.finish()  # an earlier removal's, if one is pending
        pending += self.site.not_yet_applied(generation)  # outside the lock: the other hosts' reports are writes
        return RemovedPerson(person_id, name, external_id, face_ids=face_ids, wal_cleared=wal_cleared, pending=pending)

    def pending_erasure(self) -> tuple[str, ...]:
        """What a removal (by any process) could not erase yet: ``"index file"``, ``"database"``; empty when none."""
        self._check_open()
        return self._erasure.pending()

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
        vectors = {int(i): checked_embedding(e, self.dimension) for i, e in embeddings.items()}
        if not vectors:
            self._check_open()
            return {}
        with self._writing_faces() as session:
            return {old: queries.replace_embedding(session, old, vector, self.model) for old, vector in vectors.items()}

    # ---- reads -----------------------------------------------------------------------

    def search(self, embeddings: np.ndarray, k: int, *, model: str | None = None) -> list[list[SearchHit]]:
        """The ``k`` nearest people to each (dimension,) query embedding, nearest first.

        One list of ``SearchHit`` per query (ascending distance; ties by face id); each person
        appears once, with their nearest face. Only faces of the store's model are searched
        (``model``, if given, must be it); another store's writes are picked up first.

        Raises:
            ModelMismatch: ``model`` is not the store's model.
            InvalidFaceRecord: a query is not a finite (dimension,) vector.
        """
        if model is not None and model != self.model:
            raise ModelMismatch(f"queries from {model!r} cannot search a gallery of {self.model!r} faces")
        vectors = checked_queries(embeddings, self.dimension)
        self._check_open()
        return self._replica.search(vectors, k)

    def find_person(self, name: str) -> PersonRow | None:
        """The person enrolled under ``name`` (NFC-normalised, trimmed), or None."""
        self._check_open()
        return self._person_where(Person.name == clean_name(name))

    def person(self, person_id: int) -> PersonRow | None:
        """The person with this id, or None."""
        return self._person_where(Person.id == person_id)

    def people(self) -> list[PersonRow]:
        """Every enrolled person, by name."""
        with self._reading() as session:
            return queries.people_where(session, None)

    def _person_where(self, condition: ColumnElement[bool]) -> PersonRow | None:
        with self._reading() as session:
            rows = queries.people_where(session, condition)
        return rows[0] if rows else None

    def generation(self) -> int:
        """A number that changes whenever faces are added or removed (by any process): keys caches of search results."""
        self._check_open()
        return self._replica.fresh().generation

    def data_state(self) -> tuple[int, float]:
        """The generation this host's replica holds, and seconds since it was confirmed current (0 on SQLite,
        whose replica is checked before each search).

        Raises:
            DataTooStale: as ``search``.
        """
        self._check_open()
        snapshot = self._replica.fresh()
        return snapshot.generation, self._replica.age_s if self._db.server else 0.0

    def people_count(self) -> int:
        """How many people are enrolled (counted when the faces last changed: free per call)."""
        self._check_open()
        return self._replica.fresh().people

    def indexed_people(self) -> np.ndarray:
        """The ids of everyone with a face in this host's replica, ascending (no database read)."""
        self._check_open()
        people = np.sort(self._replica.fresh().owners.person_ids)
        # Distinct by sorting: np.unique hashes integers (numpy 2.x), 25x slower at 100,000 faces.
        return people[np.concatenate(([True], people[1:] != people[:-1]))] if len(people) else people

    def embeddings_for(self, person_id: int) -> tuple[np.ndarray, np.ndarray]:
        """A person's face ids and embeddings of the store's model (for verification).

        Returns:
            ``(face_ids, embeddings)``: int64 (n,) and float32 (n, dimension), oldest first;
            empty when the person has no faces of this model or does not exist.
        """
        with self._reading() as session:
            rows = queries.embedding_rows(session, person_id, self.model)
        ids = np.array([i for i, _ in rows], dtype=np.int64)
        decode = self._replica.decode
        vectors = np.stack([decode(i, b) for i, b in rows]) if rows else np.empty((0, self.dimension), "<f4")
        return ids, vectors

    def indexed_embeddings(self, person_id: int) -> np.ndarray:
        """``embeddings_for``'s embeddings as this host's replica holds them: what identify scores, with no
        database read (so a door keeps deciding through a database outage, within the maximum staleness)."""
        return self.indexed_embeddings_of([person_id])[person_id]

    def indexed_embeddings_of(self, person_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """``indexed_embeddings`` of several people at once (one pass over the replica): person id -> (n, d)."""
        self._check_open()
        return self._replica.embeddings_of_people(person_ids)

    def faces_to_reembed(self) -> list[ReembedTask]:
        """Faces stored with another model than the store's, with the chips to re-embed them."""
        with self._reading() as session:
            return queries.faces_to_reembed(session, self.model)

    def photos_enrolled(self, photo_sha256s: Iterable[str]) -> dict[str, str]:
        """Which of these photos (by SHA-256) are enrolled already: sha -> the person's name."""
        with self._reading() as session:
            return queries.photos_enrolled(session, sorted(set(photo_sha256s)))
