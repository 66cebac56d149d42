"""The audit log: decisions and changes, appended and read back; never photos or embeddings.

What is recorded is decided by ``gallery.gallery`` (through ``gallery.audit.AuditWriter``):
``enroll``, ``remove``, ``reembed``, ``calibrate``, ``verify`` with the person's name and
id; ``identify`` with one outcome per face joined by commas (``"match,unknown"``), the
first face's match as ``person_name``/``person_id``, and every face's outcome and matched
person id in ``detail["faces"]``. Reading filters on all of that in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, and_, literal, or_, select, union
from sqlalchemy.exc import DBAPIError

from gallery.errors import StorageFailure
from gallery.store.backend import Backend
from gallery.store.records import AuditEvent
from gallery.store.schema import AuditEntry, Person
from gallery.store.validation import clean_name


class AuditLog:
    """The ``audit_log`` table of one gallery database."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def append(
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
        """Append one event; returns its id.

        Never pass photo or embedding data: ``rule`` and ``detail`` are small JSON values
        (the threshold in force, distances, the reason for a refusal).
        """
        entry = AuditEntry(
            action=action,
            outcome=outcome,
            person_name=person_name,
            person_id=person_id,
            model=model,
            rule=rule,
            detail=detail,
        )
        with self._backend.write() as session:
            session.add(entry)
            session.flush()
            return entry.id

    def append_many(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Append several ``(action, fields)`` events (``append``'s keyword arguments) in one transaction.

        One fsync for a burst of door events instead of one each, so a busy door's log does not
        compete with enrolments for the write lock event by event.

        Raises:
            StorageFailure: the events could not be written, in one line saying how many and why.
        """
        try:
            with self._backend.write() as session:
                session.add_all(AuditEntry(action=action, **fields) for action, fields in events)
        except StorageFailure as error:
            # One line that says what was lost and why; SQLAlchemy's chained traceback adds nothing.
            reason = error.__cause__.orig if isinstance(error.__cause__, DBAPIError) else error
            raise StorageFailure(f"could not write {len(events)} audit event(s): {reason}") from None

    def read(
        self,
        *,
        limit: int | None = 100,
        action: str | None = None,
        person: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEvent]:
        """The audit log's events, newest first, filtered (every filter given must hold).

        Args:
            limit: at most this many events (None: all).
            action: only events of this action (``enroll``, ``remove``, ``identify``,
                ``verify``, ``reembed``, ``calibrate``).
            person: only events about the person of this name (NFC-normalised, trimmed): those
                recorded with the name or with an id it was enrolled under, and identify
                events where any face was matched to them. A removed person's events stay
                findable by name.
            outcome: only events with this outcome (``enrolled``, ``match``, ``unknown``,
                ``rejected``, ...); an identify event qualifies when any of its faces had it.
            since: only events at or after this time (timezone-aware).
            until: only events before this time (timezone-aware).

        Raises:
            ValueError: a negative ``limit``, or a naive ``since`` or ``until``.
            InvalidFaceRecord: ``person`` is not a valid name.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be at least 0, not {limit}")
        for bound in (since, until):
            if bound is not None and (not isinstance(bound, datetime) or bound.tzinfo is None):
                raise ValueError(f"since and until must be timezone-aware datetimes, not {bound!r}")
        conditions: list[ColumnElement[bool]] = []
        if action is not None:
            conditions.append(AuditEntry.action == action)
        if outcome is not None:
            conditions.append(_has_outcome(outcome))
        if person is not None:
            conditions.append(self._about(clean_name(person)))
        if since is not None:
            conditions.append(AuditEntry.at >= since)
        if until is not None:
            conditions.append(AuditEntry.at < until)
        query = select(AuditEntry).where(*conditions).order_by(AuditEntry.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._backend.read() as session:
            return [
                AuditEvent(e.id, e.at, e.action, e.outcome, e.person_name, e.person_id, e.model, e.rule, e.detail)
                for e in session.scalars(query)
            ]

    def _about(self, name: str) -> ColumnElement[bool]:
        """Events about the person called ``name``: by name, by id, or as any face an identify matched.

        Their ids are the enrolled person's and those the log recorded with the name (a
        person removed, perhaps enrolled again under a new id: ids are never reused).
        """
        ids: CompoundSelect[Any] = union(
            select(Person.id).where(Person.name == name),
            select(AuditEntry.person_id).where(AuditEntry.person_name == name, AuditEntry.person_id.is_not(None)),
        )
        return or_(
            AuditEntry.person_name == name,
            AuditEntry.person_id.in_(ids),
            and_(AuditEntry.action == "identify", self._backend.any_face_matched(select(ids.subquery()))),
        )


def _has_outcome(outcome: str) -> ColumnElement[bool]:
    """The event's outcome is ``outcome``, or one of its faces' (identify joins them with commas)."""
    return or_(
        AuditEntry.outcome == outcome,
        (literal(",") + AuditEntry.outcome + literal(",")).contains(f",{outcome},", autoescape=True),
    )
