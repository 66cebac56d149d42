"""The store's reads and writes of people and faces, as portable SQLAlchemy on a session.

Every function runs inside the caller's transaction (``Backend.read`` / ``Backend.write``)
and returns plain records (``gallery.store.records``): no ORM object leaves the store. The
same statements run on every backend; what is engine-specific lives behind ``Backend``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.orm import Session

from gallery.errors import AlreadyEnrolled, DuplicateExternalId, InvalidFaceRecord, PersonNotFound
from gallery.store.records import FaceRecord, FaceRow, PersonRow, ReembedTask
from gallery.store.schema import Face, FaceChange, Person, StoreState, utcnow

CHUNK = 500  # values per IN (...) query, well under any engine's variable limit


def people_where(session: Session, condition: ColumnElement[bool] | None) -> list[PersonRow]:
    """The people meeting ``condition`` (everyone when None), by name, with their face counts."""
    face_count = func.count(Face.id)
    query = select(Person, face_count).outerjoin(Face, Face.person_id == Person.id).group_by(Person.id)
    if condition is not None:
        query = query.where(condition)
    rows = session.execute(query.order_by(Person.name)).all()
    return [PersonRow(p.id, p.name, p.external_id, p.created_at, p.updated_at, count) for p, count in rows]


def insert_person(session: Session, name: str, external_id: str | None) -> int:
    """Add a person (with a checked name and external id); returns their id.

    Raises:
        AlreadyEnrolled: ``name`` is taken. DuplicateExternalId: ``external_id`` is taken.
    """
    if session.scalar(select(Person.id).where(Person.name == name)) is not None:
        raise AlreadyEnrolled(f"{name!r} is already enrolled")
    taken = select(Person.id).where(Person.external_id == external_id)
    if external_id is not None and session.scalar(taken) is not None:
        raise DuplicateExternalId(f"external id {external_id!r} already belongs to another person")
    person = Person(name=name, external_id=external_id)
    session.add(person)
    session.flush()
    return person.id


def add_face(session: Session, person_id: int, face: FaceRecord, vector: np.ndarray) -> int:
    """Add a (checked) face to an enrolled person, marking them updated; returns the face's id.

    Raises:
        PersonNotFound: no person has ``person_id``.
    """
    person = session.get(Person, person_id)
    if person is None:
        raise PersonNotFound(f"no person has id {person_id}")
    face_id = insert_face(session, person.id, face, vector)
    person.updated_at = utcnow()
    return face_id


def person_named(session: Session, name: str) -> int:
    """The id of the person called ``name``, added if there is none, marked updated if there is."""
    person = session.scalar(select(Person).where(Person.name == name))
    if person is None:
        person = Person(name=name)
        session.add(person)
        session.flush()
    else:
        person.updated_at = utcnow()
    return person.id


def delete_person(session: Session, name: str) -> tuple[int, str, str | None, tuple[int, ...]]:
    """Delete the person called ``name`` and their faces; returns their id, name, external id and face ids.

    Raises:
        PersonNotFound: nobody is called ``name`` (nothing changed).
    """
    person = session.scalar(select(Person).where(Person.name == name))
    if person is None:
        raise PersonNotFound(f"{name!r} is not enrolled")
    face_ids = tuple(session.scalars(select(Face.id).where(Face.person_id == person.id).order_by(Face.id)))
    removed = (person.id, person.name, person.external_id, face_ids)
    # Explicit, although the foreign key cascades: erasure must not hang on a pragma.
    session.execute(delete(Face).where(Face.person_id == person.id))
    session.execute(delete(Person).where(Person.id == person.id))
    _changed(session, removed=face_ids)
    return removed


def counts(session: Session) -> tuple[int, dict[str, int]]:
    """How many people are enrolled, and faces stored per model."""
    people = session.scalar(select(func.count(Person.id))) or 0
    by_model = dict(session.execute(select(Face.model, func.count(Face.id)).group_by(Face.model)).all())
    return people, {str(model): int(count) for model, count in by_model.items()}


def chip(session: Session, face_id: int) -> bytes:
    """A face's stored chip (JPEG bytes).

    Raises:
        InvalidFaceRecord: no face has ``face_id``.
    """
    stored = session.scalar(select(Face.chip_jpeg).where(Face.id == face_id))
    if stored is None:
        raise InvalidFaceRecord(f"no face has id {face_id}")
    return stored


def faces_of(session: Session, person_id: int) -> list[FaceRow]:
    """A person's faces (any model), oldest first, without embeddings or chips."""
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


def embedding_rows(session: Session, person_id: int, model: str) -> list[tuple[int, bytes]]:
    """``(face id, embedding blob)`` of a person's faces of ``model``, oldest first."""
    rows = session.execute(
        select(Face.id, Face.embedding).where(Face.person_id == person_id, Face.model == model).order_by(Face.id)
    ).all()
    return [(face_id, blob) for face_id, blob in rows]


def faces_to_reembed(session: Session, model: str) -> list[ReembedTask]:
    """Faces stored with another model than ``model``, with their chips."""
    rows = session.execute(
        select(Face.id, Face.person_id, Face.model, Face.chip_jpeg).where(Face.model != model).order_by(Face.id)
    ).all()
    return [ReembedTask(*row) for row in rows]


def photos_enrolled(session: Session, photo_sha256s: Sequence[str]) -> dict[str, str]:
    """Which of these photos (by SHA-256) are enrolled: sha -> the person's name."""
    found: dict[str, str] = {}
    for start in range(0, len(photo_sha256s), CHUNK):
        rows = session.execute(
            select(Face.photo_sha256, Person.name)
            .join(Person, Face.person_id == Person.id)
            .where(Face.photo_sha256.in_(photo_sha256s[start : start + CHUNK]))
        )
        found.update({sha: name for sha, name in rows})
    return found


def insert_face(session: Session, person_id: int, face: FaceRecord, vector: np.ndarray) -> int:
    """Add a (checked) face row; returns its id."""
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
    _changed(session, added=[row.id])
    return row.id


def replace_embedding(session: Session, face_id: int, vector: np.ndarray, model: str) -> int:
    """Re-insert a face under a new id with ``vector`` of ``model``, then delete the old row.

    Face rows are immutable (which keeps the index exact): the new row keeps the owner,
    box, landmarks, quality, photo, chip and creation time.

    Raises:
        InvalidFaceRecord: no face has ``face_id``.
    """
    old = session.get(Face, face_id)
    if old is None:
        raise InvalidFaceRecord(f"no face has id {face_id}")
    new = Face(
        person_id=old.person_id, embedding=vector.tobytes(), model=model,
        box_left=old.box_left, box_top=old.box_top, box_right=old.box_right,
        box_bottom=old.box_bottom, landmarks=old.landmarks, quality=old.quality,
        photo_sha256=old.photo_sha256, chip_jpeg=old.chip_jpeg, created_at=old.created_at,
    )  # fmt: skip
    session.add(new)
    session.flush()
    session.delete(old)
    _changed(session, added=[new.id], removed=[face_id])
    return new.id


def gallery_id(session: Session) -> str:
    """The random id made with the database, which binds an index file to it."""
    return session.scalars(select(StoreState.gallery_id).where(StoreState.id == 1)).one()


_CHANGES = "gallery_face_changes"  # session.info key: the faces this transaction added and removed


def _changed(session: Session, *, added: Sequence[int] = (), removed: Sequence[int] = ()) -> None:
    """Note faces this transaction added or removed, for ``bump_generation`` to log."""
    noted = session.info.setdefault(_CHANGES, ([], []))
    noted[0].extend(added)
    noted[1].extend(removed)


def bump_generation(session: Session) -> int:
    """Count a change replicas hold (faces, settings) and log the faces it added and removed.

    In the same transaction as the change, at its end: the log rows carry the new generation,
    which every replica compares with its own. Returns the new generation.
    """
    generation: int = session.execute(
        update(StoreState)
        .where(StoreState.id == 1)
        .values(faces_generation=StoreState.faces_generation + 1)
        .returning(StoreState.faces_generation)
    ).scalar_one()
    added, removed = session.info.pop(_CHANGES, ([], []))
    rows = [{"generation": generation, "face_id": i, "removed": True} for i in removed]
    rows += [{"generation": generation, "face_id": i, "removed": False} for i in added]
    if rows:
        session.execute(insert(FaceChange), rows)
    return generation
