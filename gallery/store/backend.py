"""The seam between ``Store`` and a database engine: what a backend must provide.

``Store`` speaks SQLAlchemy (ORM and Core) on the sessions a backend hands out, so its
queries are the same on every engine. What differs between engines sits behind ``Backend``:
how connections are configured and transactions begun, the write lock that serialises
writers across processes, the few hot reads that go straight to the driver (a search's
generation check, bulk reads of a million embeddings), an upsert, how a unique violation
names its column, JSON inside a query, and how the copies of deleted rows are erased.

Two implementations: ``gallery.store.sqlite.SqliteBackend`` (a file in the home folder, one
machine) and ``gallery.store.postgres.PostgresBackend`` (a server shared by the hosts of a site:
advisory locks for the write lock, LISTEN/NOTIFY to wake the hosts' replicas, VACUUM for
``erase_deleted_copies``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy import ColumnElement, Select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


class Backend(Protocol):
    """A gallery database, migrated to the newest schema, ready for ``Store``."""

    # A server shared by several hosts: each host's replica is kept current by a follower thread
    # (``listen``) instead of reading the generation before every search.
    server: bool
    description: str  # where the database is, for messages: a path, or a URL without its password

    def read(self) -> AbstractContextManager[Session]:
        """A session in one read transaction: every query sees the same snapshot."""

    def write(self) -> AbstractContextManager[Session]:
        """A session in one write transaction, committed on success, rolled back on error.

        Must take the database's write lock when it begins (not on its first write), so two
        writers queue instead of one failing when it upgrades a read.
        """

    def exclusive(self) -> AbstractContextManager[None]:
        """Hold the gallery's write lock: one thread of one process at a time, reentrant.

        Held across a database commit and the index file's save, so the saved index always
        matches some committed state.

        Raises:
            StoreBusy: the lock was not obtained within the lock timeout.
        """

    def schema_revision(self) -> str | None:
        """The database's Alembic revision."""

    def faces_generation(self) -> int:
        """``store_state.faces_generation``, read as cheaply as possible (before every search)."""

    def listen(self) -> AbstractContextManager[Callable[[float], bool]]:
        """(A server) a connection waiting for new generations: ``wait(timeout_s)`` says whether one came.

        Raises:
            DatabaseUnavailable: it cannot connect, or lost its connection while waiting.
        """

    # Bulk reads inside a read session, through the driver's own cursor: at a million faces
    # ORM rows cost ten times as much.

    def face_ids(self, session: Session, model: str, *, above: int = -1) -> np.ndarray:
        """The ids of ``model``'s faces greater than ``above``, sorted (int64)."""

    def face_count(self, session: Session, model: str) -> int:
        """How many faces of ``model`` are stored."""

    def people_count(self, session: Session) -> int:
        """How many people are enrolled."""

    def face_owners(self, session: Session, model: str) -> tuple[np.ndarray, np.ndarray]:
        """Face ids and their person ids (int64 arrays, by face id) of every face of ``model``."""

    def people_names(self, session: Session, person_ids: Sequence[int]) -> dict[int, str]:
        """Person id -> name of these people (those still enrolled)."""

    def face_rows(
        self, session: Session, model: str, ids: np.ndarray | None
    ) -> tuple[int, Iterable[tuple[int, int, bytes]]]:
        """``(id, person_id, embedding)`` of the faces ``ids`` of ``model`` still stored (all of them when None), by id.

        Returns:
            How many rows at most will come (to size the arrays they are read into), and the rows.
        """

    def put_settings(self, session: Session, values: Mapping[str, Any], now: datetime) -> None:
        """Insert or replace the JSON ``values`` in ``settings``, in the session's transaction."""

    def unique_violation(self, error: IntegrityError) -> str | None:
        """The ``table.column`` whose UNIQUE constraint ``error`` reports, or None for another error."""

    def any_face_matched(self, person_ids: Select[Any]) -> ColumnElement[bool]:
        """Whether an audit event's ``detail["faces"]`` holds a face matched to one of ``person_ids``.

        ``identify`` records each face's outcome and matched person there (``gallery.gallery``).
        """

    def erase_deleted_copies(self, *, wait_s: float | None = None) -> bool:
        """Make sure no copy of deleted rows lingers outside the live database; False if it could not yet.

        Args:
            wait_s: how long to wait for readers in the way (the backend's own timeout when None).
        """

    def integrity_problems(self) -> list[str]:
        """What the engine's own consistency checks report; empty when sound."""

    def close(self) -> None:
        """Close every connection."""
