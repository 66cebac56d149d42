"""The in-memory index replica: one model's faces, kept in step with the database, and its file.

Rules (the database is the truth, the index a cache keyed by ``faces.id``):
- Every change to ``faces`` bumps ``store_state.faces_generation`` in the same transaction and
  logs the face ids it added and removed in ``face_changes`` under the new generation.
- A replica at generation g catches up by reading the changes after g: it removes the faces
  gone first, then adds the new ones still there, which is exact because face rows are
  immutable and their ids never reused. A replica older than the log (``store_state.log_start``)
  compares id lists once instead. After a restart, a reconnect or a week offline it reads only
  what changed; a new host builds its replica from the stored embeddings.
- The snapshot also holds what a decision reads besides the index: each indexed face's owner,
  the owners' names and the settings (the rules in force), so a door decides from memory and
  keeps deciding while the database is unreachable, for at most ``max_staleness_s``.
- How the replica learns of a change: on SQLite (one machine) it reads the generation before
  each search (one primary-key lookup in a local file); on a database server a follower thread
  (``gallery.store.follower``) is woken by the database and checks periodically, so a search
  makes no round trip. ``age_s`` is the time since the replica was last confirmed current.
- The published snapshot is never mutated: updates are made on a copy that is then swapped
  in (copy-on-write), so searches never wait for a write and never see a half-made index.
- After a commit, under the write lock, the writer syncs and saves the index file
  atomically, so the saved file always matches some committed state; if it cannot (a full
  disk), it deletes the old files rather than leave faces the database no longer has. On
  open a file that is missing, damaged, not a regular file, of another model or gallery, or
  disagrees with the database after catching up is rebuilt from the stored embeddings.

Cost: a sync reads the log rows after its generation and the new faces' rows. A write makes
a new index that shares every slice of faces it does not touch (``gallery.store.index``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from gallery.errors import DataTooStale, IndexFileInvalid, StoreError
from gallery.store import queries
from gallery.store.backend import Backend
from gallery.store.index import FaceIndex, IndexPolicy
from gallery.store.index_file import delete_index_files, ids_digest
from gallery.store.records import SearchHit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Owners:
    """Face id -> person id for every indexed face, as two arrays sorted by face id.

    Arrays rather than a dict: at a million faces a dict of Python ints costs ~100 MB, these
    16 MB.
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


def _owners_of(face_ids: np.ndarray, known_ids: np.ndarray, known_people: np.ndarray) -> Owners:
    """The owners of ``face_ids`` among the ``known`` (sorted) ones; -1 for a face no longer stored."""
    people = np.full(len(face_ids), -1, np.int64)
    at = np.minimum(np.searchsorted(known_ids, face_ids), max(len(known_ids) - 1, 0))
    found = (known_ids[at] == face_ids) if len(known_ids) else np.zeros(len(face_ids), bool)
    people[found] = known_people[at[found]]
    return Owners.of(face_ids, people)


def _distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by sorting: numpy 2.4's ``unique`` hashes, ~100x slower at a million ids (1.3 s)."""
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered


# How long a followed replica answers searches without being confirmed current (the database
# unreachable) before it refuses: a removal made just before an outage is honoured at every door
# within this, and a database failover (typically 30 s) does not stop the doors.
DEFAULT_MAX_STALENESS_S = 60.0
EMPTY = np.empty(0, np.int64)
NO_OWNERS = Owners(EMPTY, EMPTY)


@dataclass(frozen=True)
class Snapshot:
    """The index at one generation, with each face's owner and the settings in force then."""

    generation: int
    index: FaceIndex
    owners: Owners
    people: int  # rows in ``people``, which change only with the faces (a person always has one)
    settings: Mapping[str, bytes | str | None]  # stored values as they are; ``gallery.store.settings`` decodes them


@dataclass(frozen=True)
class _CatchUp:
    """A caught-up snapshot, and whose names it drops (their last face left) or may need (faces arrived)."""

    snapshot: Snapshot
    left: np.ndarray
    arrived: np.ndarray


class IndexReplica:
    """One model's faces in a ``FaceIndex``, following the database, saved to ``path``.

    Safe to share between threads: searches read the published snapshot, syncs are
    serialised by a lock, and saves by ``save_lock``: the gallery's write lock on SQLite, a lock
    on this host's folder on a database server (the file is this host's alone).

    Args:
        followed: True when a follower thread keeps the replica current (a database server):
            searches then read the snapshot without asking the database, and refuse it once it is
            older than ``max_staleness_s``. False (SQLite): the generation is read before each search.
    """

    def __init__(
        self,
        backend: Backend,
        path: Path,
        *,
        model: str,
        dimension: int,
        policy: IndexPolicy,
        gallery_id: str,
        save_lock: Callable[[], AbstractContextManager[object]],
        followed: bool = False,
        max_staleness_s: float = DEFAULT_MAX_STALENESS_S,
    ) -> None:
        self.path = path
        self.model = model
        self.dimension = dimension
        self.policy = policy
        self.followed = followed
        self.max_staleness_s = max_staleness_s
        self.repair: str | None = None  # why the file was rebuilt on load, if it was
        self._backend = backend
        self._gallery_id = gallery_id
        self._save_lock = save_lock
        self._lock = threading.Lock()
        # Person id -> name of every indexed face's owner. Shared by the snapshots and changed in
        # place (names never change, ids are never reused): a name is dropped when its person's
        # last face leaves, and a search of an older snapshot skips a person it no longer finds.
        self._names: dict[int, str] = {}
        self._confirmed_at = time.monotonic()
        self.snapshot = Snapshot(-1, FaceIndex(model, dimension, policy=policy), NO_OWNERS, 0, {})

    def load(self) -> None:
        """Adopt the index file, caught up with the database, if it then matches it; else rebuild and save it."""
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
            generation, log_start = queries.generations(session)
            if loaded is not None and reason is None:
                if header.model != self.model or header.dimension != self.dimension:
                    reason = f"the index file holds model {header.model!r}, not {self.model!r}"
                elif header.gallery_id != self._gallery_id:
                    reason = "the index file belongs to another gallery database"
                elif header.generation > generation:
                    reason = "the index file is newer than the database (was the database restored?)"
            if loaded is not None and reason is None:
                held, persons = backend.face_owners(session, self.model)
                start = Snapshot(header.generation, loaded, _owners_of(loaded.ids(), held, persons), 0, {})
                caught_up = self._caught_up(session, start, generation, log_start).snapshot
                if ids_digest(caught_up.index.ids()) != ids_digest(held):
                    reason = "the index file disagreed with the database's faces (stale)"
                else:
                    self._publish(session, _CatchUp(caught_up, EMPTY, EMPTY), rebuilt=True)
            if loaded is None or reason is not None:
                ids, vectors, owners = self.fetch_faces(session, None)
                index = FaceIndex.build(self.model, self.dimension, ids, vectors, policy=self.policy)
                self._publish(session, _CatchUp(Snapshot(generation, index, owners, 0, {}), EMPTY, EMPTY), rebuilt=True)
        if reason is None and header.generation == generation:
            return
        if reason is None:
            logger.debug("caught %s up from generation %d to %d", self.path, header.generation, generation)
        elif loaded is None and not len(self.snapshot.index) and generation == 0 and not self.path.exists():
            logger.debug("creating %s for a new gallery", self.path)
        elif loaded is None and self.followed and not self.path.exists():
            logger.info("built %s from the database: a new host of this gallery", self.path)
        else:
            logger.warning("rebuilding %s from the database: %s", self.path, reason)
            self.repair = reason
        self.sync_and_save()

    def decode(self, face_id: int, blob: bytes) -> np.ndarray:
        """A stored embedding's float32 vector.

        Raises:
            StoreError: the blob is not ``dimension`` float32 values.
        """
        if len(blob) != 4 * self.dimension:
            raise StoreError(f"face {face_id}'s embedding has {len(blob)} bytes, not {4 * self.dimension}")
        return np.frombuffer(blob, dtype="<f4")

    def fetch_faces(self, session: Session, ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, Owners]:
        """Ids, embeddings and owners of those faces ``ids`` of this model still stored (all of them when None).

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

    def _caught_up(self, session: Session, current: Snapshot, generation: int, log_start: int) -> _CatchUp:
        """``current`` brought to ``generation``: from the change log, or by comparing ids if it is older.

        The log's result is checked against the number of faces stored: if a row was written around
        the store (by hand, or by an old version), the database is the truth and ids are compared.
        """
        held = current.index.ids()
        from_log = current.generation >= 0 and log_start <= current.generation
        if from_log:
            added, removed = queries.changes_since(session, current.generation)
            # Removals first: a face added and removed since is neither. Each array holds distinct ids.
            gone = np.intersect1d(removed, held, assume_unique=True)
            new = np.setdiff1d(np.setdiff1d(added, removed, assume_unique=True), held, assume_unique=True)
            stored = self._backend.face_count(session, self.model)
        else:
            wanted = self._backend.face_ids(session, self.model)
            new = np.setdiff1d(wanted, held, assume_unique=True)
            gone = np.setdiff1d(held, wanted, assume_unique=True)
            stored = len(wanted)
        if not len(gone) and not len(new) and len(held) == stored:
            return _CatchUp(dataclasses.replace(current, generation=generation), EMPTY, EMPTY)
        left = current.owners.people(gone)
        if len(new) > len(held):  # mostly new: one build beats many appends
            ids, vectors, owners = self.fetch_faces(session, None)
            index = FaceIndex.build(self.model, self.dimension, ids, vectors, policy=self.policy)
            arrived = owners.person_ids
        else:
            new_ids, vectors, new_owners = self.fetch_faces(session, new)
            index = current.index.updated(gone, new_ids, vectors)
            owners = current.owners.changed(gone, new_owners)
            arrived = new_owners.person_ids
        if from_log and len(index) != stored:
            logger.warning("the change log disagreed with the faces stored; comparing face ids instead")
            return self._caught_up(session, current, generation, generation + 1)
        snapshot = Snapshot(generation, index, owners, current.people, current.settings)
        return _CatchUp(snapshot, left[~np.isin(left, owners.person_ids)], arrived)

    def _publish(self, session: Session, change: _CatchUp, *, rebuilt: bool = False) -> Snapshot:
        """Complete the snapshot with what else a decision reads (names, counts, settings) and publish it."""
        snapshot = change.snapshot
        if rebuilt:
            self._names.clear()
            arrived = _distinct(snapshot.owners.person_ids)
        else:
            for person in change.left.tolist():
                self._names.pop(person, None)
            arrived = _distinct(change.arrived)
        missing = [p for p in arrived.tolist() if p not in self._names]
        if missing:
            self._names.update(self._backend.people_names(session, missing))
        people = self._backend.people_count(session)
        self.snapshot = dataclasses.replace(snapshot, people=people, settings=queries.raw_settings(session))
        self._confirmed_at = time.monotonic()
        return self.snapshot

    def _sync(self) -> Snapshot:
        """Bring the in-memory index up to the database's generation and publish it (confirmed current)."""
        with self._lock, self._backend.read() as session:
            current = self.snapshot
            generation, log_start = queries.generations(session)
            if generation == current.generation:
                self._confirmed_at = time.monotonic()
                return current
            return self._publish(session, self._caught_up(session, current, generation, log_start))

    def check(self) -> Snapshot:
        """Ask the database whether anything changed, and catch up if so (the follower's periodic check)."""
        return self._sync()

    @property
    def age_s(self) -> float:
        """Seconds since the snapshot was last confirmed to be the database's current state."""
        return time.monotonic() - self._confirmed_at

    def fresh(self) -> Snapshot:
        """The snapshot to decide on: current (SQLite), or confirmed recently enough (a followed replica).

        Raises:
            DataTooStale: a followed replica was last confirmed longer than ``max_staleness_s`` ago
                (the database has been unreachable): nothing is decided on it.
        """
        if not self.followed:
            snapshot = self.snapshot
            if self._backend.faces_generation() != snapshot.generation:
                return self._sync()
            self._confirmed_at = time.monotonic()
            return snapshot
        snapshot, age = self.snapshot, self.age_s
        if age > self.max_staleness_s:
            raise DataTooStale(
                f"the gallery's data was last confirmed current {age:.0f} s ago, longer than the "
                f"{self.max_staleness_s:g} s allowed (is the database reachable?): nothing is decided on it",
                age_s=age,
            )
        return snapshot

    def embeddings_of_people(self, person_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Each person's indexed embeddings (by face id), from one snapshot in one pass: no database read."""
        snapshot = self.fresh()
        owners = snapshot.owners
        held = np.isin(owners.person_ids, np.asarray(person_ids, np.int64))
        found: dict[int, list[np.ndarray]] = {int(p): [] for p in person_ids}
        for face_id, person_id in zip(owners.face_ids[held], owners.person_ids[held], strict=True):
            found[int(person_id)].append(snapshot.index.vector(int(face_id)))
        empty = np.empty((0, self.dimension), "<f4")
        return {person: np.stack(vectors) if vectors else empty for person, vectors in found.items()}

    def sync_and_save(self) -> bool:
        """Sync the index and save it atomically: after a commit, or when a follower applied others' changes.

        The processes of one host save in turn (``save_lock``), each syncing first, so a slower one
        never puts back an older file, with a face removed since, over a newer one.

        A failed save (a full disk, a read-only folder) is not raised: the database already
        holds the change. The old index files are deleted instead, since they may hold faces
        the database no longer has (a removed person's embedding); the next open rebuilds
        them from the database.

        Returns:
            Whether the files on disk now hold no face the database lacks: True when saved or
            deleted, False when a stale file could be neither replaced nor deleted.
        """
        with self._save_lock():
            return self._save(self._sync())

    def _save(self, snapshot: Snapshot) -> bool:
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
        hits = []
        for i in first:
            name = self._names.get(int(people[i]))
            if name is not None:  # absent only if removed since the snapshot was taken
                hits.append(SearchHit(int(ids[i]), int(people[i]), name, float(distances[i])))
        return hits

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
