"""The in-memory index replica: one model's faces, kept in step with the database, and its file.

Rules (the database is the truth, the index a cache keyed by ``faces.id``):
- Every change to ``faces`` bumps ``store_state.faces_generation`` in the same transaction.
- Before each search the replica reads the generation (one primary-key lookup). If another
  store, in this or another process, has changed the faces, it brings itself up to date
  from the database: it removes faces that are gone and adds new ones, which is exact
  because face rows are immutable and their ids are never reused.
- The published snapshot is never mutated: updates are made on a copy that is then swapped
  in (copy-on-write), so searches never wait for a write and never see a half-made index.
- After a commit, under the write lock, the writer syncs and saves the index file
  atomically, so the saved file always matches some committed state; if it cannot (a full
  disk), it deletes the old files rather than leave faces the database no longer has. On
  open a file that is missing, damaged, not a regular file, of another model or gallery, or
  lags the database (face ids) is rebuilt from the stored embeddings.

Cost: a sync reads the ids of the faces added since; it reads every face id of the model
only when faces were removed. A write makes a new index that shares every slice of faces it
does not touch (``gallery.store.index``). At a million faces an enrolment takes about 0.2 s
and a removal 0.5 s, and the writing process needs some 80 MB more than a reader; searches
are unaffected.

The next step (a replica following a change log instead of comparing id lists) plugs in at
``_sync``: it is the only place that asks the database what changed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from gallery.errors import IndexFileInvalid, StoreError
from gallery.store.backend import Backend
from gallery.store.index import FaceIndex, IndexPolicy
from gallery.store.index_file import delete_index_files, ids_digest
from gallery.store.records import SearchHit
from gallery.store.schema import StoreState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Owners:
    """Face id -> person id for every indexed face, as two arrays sorted by face id.

    Arrays rather than a dict: at a million faces a dict of Python ints costs ~100 MB, these
    16 MB. Names are looked up in the database for the few people a search returns.
    """

    face_ids: np.ndarray
    person_ids: np.ndarray

    @classmethod
    def of(cls, face_ids: np.ndarray, person_ids: np.ndarray) -> Owners:
        order = np.argsort(face_ids, kind="stable")
        return cls(np.asarray(face_ids, np.int64)[order], np.asarray(person_ids, np.int64)[order])

    def people(self, face_ids: np.ndarray) -> np.ndarray:
        """The owners of ``face_ids``, which must all be held."""
        return self.person_ids[np.searchsorted(self.face_ids, face_ids)]

    def changed(self, gone: np.ndarray, new: Owners) -> Owners:
        keep = ~np.isin(self.face_ids, gone)
        return Owners.of(
            np.concatenate([self.face_ids[keep], new.face_ids]), np.concatenate([self.person_ids[keep], new.person_ids])
        )

    def as_dict(self) -> dict[int, int]:
        return dict(zip(self.face_ids.tolist(), self.person_ids.tolist(), strict=True))


NO_OWNERS = Owners(np.empty(0, np.int64), np.empty(0, np.int64))


@dataclass(frozen=True)
class Snapshot:
    """The index at one faces generation, with each face's owner."""

    generation: int
    index: FaceIndex
    owners: Owners
    people: int  # rows in ``people``, which change only with the faces (a person always has one)


class IndexReplica:
    """One model's faces in a ``FaceIndex``, following the database, saved to ``path``.

    Safe to share between threads: searches read the published snapshot, syncs are
    serialised by a lock, and saves happen under the database's write lock.
    """

    def __init__(
        self, backend: Backend, path: Path, *, model: str, dimension: int, policy: IndexPolicy, gallery_id: str
    ) -> None:
        self.path = path
        self.model = model
        self.dimension = dimension
        self.policy = policy
        self.repair: str | None = None  # why the file was rebuilt on load, if it was
        self._backend = backend
        self._gallery_id = gallery_id
        self._lock = threading.Lock()
        self.snapshot = Snapshot(-1, FaceIndex(model, dimension, policy=policy), NO_OWNERS, 0)

    def load(self) -> None:
        """Adopt the index file if it matches the database, else rebuild and save it."""
        loaded: FaceIndex | None = None
        try:
            loaded, header = FaceIndex.load(self.path, policy=self.policy)
            reason = None
        except FileNotFoundError:
            reason = "the index file was missing"
        except (IndexFileInvalid, OSError) as error:
            reason = f"the index file was unreadable ({error})"
        backend = self._backend
        with self._lock, backend.read() as session:
            generation = self._generation_in(session)
            wanted = backend.face_ids(session, self.model)
            if loaded is not None and reason is None:
                if header.model != self.model or header.dimension != self.dimension:
                    reason = f"the index file holds model {header.model!r}, not {self.model!r}"
                elif header.gallery_id != self._gallery_id:
                    reason = "the index file belongs to another gallery database"
                elif ids_digest(loaded.ids()) != ids_digest(wanted):
                    reason = "the index file disagreed with the database's faces (stale)"
            people = backend.people_count(session)
            if loaded is not None and reason is None:
                self.snapshot = Snapshot(generation, loaded, Owners(*backend.face_owners(session, self.model)), people)
            else:
                ids, vectors, owners = self.fetch_faces(session, None)
                index = FaceIndex.build(self.model, self.dimension, ids, vectors, policy=self.policy)
                self.snapshot = Snapshot(generation, index, owners, people)
        if reason is None:
            return
        if loaded is None and not len(wanted) and generation == 0 and not self.path.exists():
            logger.debug("creating %s for a new gallery", self.path)
        else:
            logger.warning("rebuilding %s from the database: %s", self.path, reason)
            self.repair = reason
        with backend.exclusive():
            self.sync_and_save()

    @staticmethod
    def _generation_in(session: Session) -> int:
        return session.scalars(select(StoreState.faces_generation).where(StoreState.id == 1)).one()

    def decode(self, face_id: int, blob: bytes) -> np.ndarray:
        """A stored embedding's float32 vector.

        Raises:
            StoreError: the blob is not ``dimension`` float32 values.
        """
        if len(blob) != 4 * self.dimension:
            raise StoreError(f"face {face_id}'s embedding has {len(blob)} bytes, not {4 * self.dimension}")
        return np.frombuffer(blob, dtype="<f4")

    def fetch_faces(self, session: Session, ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, Owners]:
        """Ids, embeddings and owners of the faces ``ids`` (all of this model's when None).

        Embeddings go straight into one float32 array: at a million faces, a list of row
        objects holding 512-byte blobs would need gigabytes on the way.
        """
        count, rows = self._backend.face_rows(session, self.model, ids)
        face_ids = np.empty(count, np.int64)
        person_ids = np.empty(count, np.int64)
        vectors = np.empty((count, self.dimension), "<f4")
        n = 0
        for face_id, person_id, blob in rows:
            if n == count:
                raise StoreError("the faces changed while being read")
            face_ids[n], person_ids[n], vectors[n] = face_id, person_id, self.decode(face_id, blob)
            n += 1
        return face_ids[:n], vectors[:n], Owners.of(face_ids[:n], person_ids[:n])

    def _sync(self) -> Snapshot:
        """Bring the in-memory index up to the database's faces and publish it.

        Only the faces that appeared since the last sync are read in full; those gone are
        found by comparing id lists (face rows are immutable and ids never reused).
        """
        backend = self._backend
        with self._lock, backend.read() as session:
            current = self.snapshot
            generation = self._generation_in(session)
            if generation == current.generation:
                return current
            held = current.index.ids()
            count = backend.face_count(session, self.model)
            # Face ids only grow (AUTOINCREMENT, one writer at a time), so the faces added since are
            # those above the newest held, and if the count adds up none is gone: an enrolment at a
            # million faces reads its own face's id, not a million (0.45 s).
            new = backend.face_ids(session, self.model, above=int(held[-1]) if len(held) else -1)
            gone = np.empty(0, np.int64)
            if count != len(held) + len(new):
                wanted = backend.face_ids(session, self.model)
                new = np.setdiff1d(wanted, held, assume_unique=True)
                gone = np.setdiff1d(held, wanted, assume_unique=True)
            if len(new) > count // 2:
                ids, vectors, owners = self.fetch_faces(session, None)
                index = FaceIndex.build(self.model, self.dimension, ids, vectors, policy=self.policy)
            else:
                new_ids, vectors, new_owners = self.fetch_faces(session, new)
                index = current.index.updated(gone, new_ids, vectors)
                owners = current.owners.changed(gone, new_owners)
            self.snapshot = Snapshot(generation, index, owners, backend.people_count(session))
            return self.snapshot

    def fresh(self) -> Snapshot:
        """The published snapshot, synced first if the database's faces have changed."""
        snapshot = self.snapshot
        return snapshot if self._backend.faces_generation() == snapshot.generation else self._sync()

    def sync_and_save(self) -> bool:
        """After a commit (write lock held): sync the index and save it atomically.

        A failed save (a full disk, a read-only folder) is not raised: the database already
        holds the change. The old index files are deleted instead, since they may hold faces
        the database no longer has (a removed person's embedding); the next open rebuilds
        them from the database.

        Returns:
            Whether the files on disk now hold no face the database lacks: True when saved or
            deleted, False when a stale file could be neither replaced nor deleted.
        """
        snapshot = self._sync()
        try:
            snapshot.index.save(self.path, gallery_id=self._gallery_id, generation=snapshot.generation)
            return True
        except OSError as error:
            left = delete_index_files(self.path)
            if not left:
                logger.warning("could not save %s, so deleted it (rebuilt on next open): %s", self.path, error)
                return True
            logger.warning(
                "could not save %s (%s) nor delete the stale index files %s", self.path, error, [str(p) for p in left]
            )
            return False

    def search(self, queries: np.ndarray, k: int) -> list[list[SearchHit]]:
        """The ``k`` nearest people to each (checked) query, nearest first; see ``Store.search``."""
        snapshot = self.fresh()
        if k <= 0:
            return [[] for _ in queries]
        return [self._nearest_people(snapshot, query, k) for query in queries]

    def _nearest_people(self, snapshot: Snapshot, query: np.ndarray, k: int) -> list[SearchHit]:
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
        names = self._backend.names(people[first].tolist())
        return [
            SearchHit(int(ids[i]), int(people[i]), names[int(people[i])], float(distances[i]))
            for i in first
            if int(people[i]) in names  # absent only if removed since the snapshot was taken
        ]

    def problems(self) -> list[str]:
        """How the in-memory index and the index file disagree with the database; empty when they agree.

        Compares ids, owners and every vector: reads everything.
        """
        problems = []
        snapshot = self.fresh()
        with self._backend.read() as session:
            ids, vectors, owners = self.fetch_faces(session, None)
        if snapshot.owners.as_dict() != owners.as_dict():
            problems.append("the in-memory index's face owners disagree with the database")
        on_disk: FaceIndex | None = None
        try:
            on_disk, header = FaceIndex.load(self.path, policy=self.policy)
        except FileNotFoundError:
            problems.append("the index file is missing")
        except (IndexFileInvalid, OSError) as error:
            problems.append(f"the index file is unreadable: {error}")
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
