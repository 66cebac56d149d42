"""Reads of the store's rows that only tests need (the store's public surface stays small)."""

from __future__ import annotations

from gallery.store import PersonRow, Store, clean_name, queries
from gallery.store.records import FaceRow
from gallery.store.schema import Person


def person_by_external_id(store: Store, external_id: str) -> PersonRow | None:
    """The person carrying the host system's ``external_id``, or None."""
    with store._db.read() as session:
        rows = queries.people_where(session, Person.external_id == clean_name(external_id, "external id"))
    return rows[0] if rows else None


def faces_of(store: Store, person_id: int) -> list[FaceRow]:
    """A person's faces (any model), oldest first, without embeddings or chips."""
    with store._db.read() as session:
        return queries.faces_of(session, person_id)


def chip(store: Store, face_id: int) -> bytes:
    """A face's stored chip (JPEG bytes)."""
    with store._db.read() as session:
        return queries.chip(session, face_id)
