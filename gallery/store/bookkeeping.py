"""The part of ``Store`` that keeps the books: settings, the audit log and the diagnostics.

A base of ``Store`` (which sets these attributes), kept apart from the faces and their index:
none of it touches a face, and ``Store`` stays small enough to read in one sitting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gallery.store import queries
from gallery.store.audit_log import AuditLog
from gallery.store.backend import Backend
from gallery.store.erasure import PendingErasure
from gallery.store.records import AuditEvent, StoreStats
from gallery.store.replica import IndexReplica
from gallery.store.settings import Settings, decoded


class Bookkeeping:
    """``Store``'s settings, audit and diagnostics methods."""

    home: Path
    model: str
    dimension: int
    index_path: Path
    _db: Backend
    _replica: IndexReplica
    _settings: Settings
    _audit_log: AuditLog
    _erasure: PendingErasure
    _schema_revision: str | None

    @property
    def index_repair(self) -> str | None:  # Store's: why the index file was rebuilt when it was opened
        raise NotImplementedError

    def _check_open(self) -> None:  # Store's: StoreClosed once closed, GalleryVanished without its folder
        raise NotImplementedError

    # ---- settings and audit ------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``; on a database server as this host's replica holds it.

        Raises:
            ValueError: the stored value is not JSON (``gallery.store.settings.decoded``).
            DataTooStale: as ``search``.
        """
        self._check_open()
        if not self._db.server:  # a local file: read it as it is now, cheaply (a row changed by hand included)
            return self._settings.get(key, default)
        settings = self._replica.fresh().settings
        return decoded(key, settings[key]) if key in settings else default

    def set_settings(self, values: Mapping[str, Any]) -> None:
        """Store several settings in one transaction: all of them or, on failure, none.

        Raises:
            TypeError: a value is not JSON-serialisable.
        """
        self._check_open()
        self._settings.put(values)
        self._replica.check()  # this host reads its own write at once, without waiting for its follower
        self._erasure.finish()

    def audit_many(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Append several ``(action, fields)`` events to the audit log in one transaction (``AuditLog.append``'s
        keywords: outcome, person_name, person_id, model, rule, detail; never photo or embedding data)."""
        self._check_open()
        self._audit_log.append_many(events)
        self._erasure.finish()

    def audit_log(
        self,
        *,
        limit: int | None = 100,
        action: str | None = None,
        person: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEvent]:
        """The audit log's events, newest first, filtered (``AuditLog.read`` says how)."""
        self._check_open()
        return self._audit_log.read(
            limit=limit, action=action, person=person, outcome=outcome, since=since, until=until
        )

    # ---- diagnostics -------------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Counts, paths and the index's state."""
        self._check_open()
        snapshot = self._replica.fresh()
        with self._db.read() as session:
            people, by_model = queries.counts(session)
        return StoreStats(
            home=self.home,
            database=self._db.description,
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
            data_age_s=self._replica.age_s,
        )

    def consistency_problems(self) -> list[str]:
        """Problems found checking the database and both indexes against it; empty when sound.

        Runs the database's own checks (SQLite: integrity and foreign keys), then compares the
        in-memory index and the index file with the database's faces of this model: ids,
        owners and every vector. Reads everything: meant for tests, a ``--check`` option and
        after a crash (``scripts/crash_soak.py``), on a gallery nobody is writing to.
        """
        self._check_open()
        return self._db.integrity_problems() + self._replica.problems()
