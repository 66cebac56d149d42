"""The gallery's tables as SQLAlchemy 2.x typed models; ``migrations/`` must match them exactly.

Invariants the rest of the store relies on:
- ``people.id`` and ``faces.id`` use SQLite AUTOINCREMENT, so an id is never reused after a
  removal: the FAISS index is keyed by ``faces.id`` and the audit log keeps ``person_id``.
- A face row is immutable once written (embedding, model, owner). Re-embedding inserts a new
  row and deletes the old one, so the set of face ids fully describes what the index holds.
- ``store_state.faces_generation`` is bumped in the same transaction as every change to
  ``faces``; other processes compare it, cheaply, to notice that their index is stale.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    cast,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Named constraints make batch migrations on SQLite (which rebuild tables) reproducible.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The newest revision in migrations/versions (a test keeps them equal): a database recording
# it needs no migration, which opening checks without importing Alembic.
HEAD_REVISION = "0003"
NAME_MAX_LENGTH = 200
MODEL_ID_MAX_LENGTH = 100


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC (SQLite has no time zones) and returned aware in UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Person(Base):
    """An enrolled person; the name is what users type, the external id what a host system uses."""

    __tablename__ = "people"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), unique=True)
    # SQLite's UNIQUE allows many NULLs, so the id is unique only when set.
    external_id: Mapped[str | None] = mapped_column(String(NAME_MAX_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Face(Base):
    """One enrolled face: its embedding (the template) and how it was obtained."""

    __tablename__ = "faces"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    # float32 little-endian, ``dimension`` values (128 for dlib's ResNet).
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    model: Mapped[str] = mapped_column(String(MODEL_ID_MAX_LENGTH), index=True)
    # The detector's rectangle in photo pixels (dlib's convention: right and bottom inclusive).
    box_left: Mapped[int] = mapped_column(Integer)
    box_top: Mapped[int] = mapped_column(Integer)
    box_right: Mapped[int] = mapped_column(Integer)
    box_bottom: Mapped[int] = mapped_column(Integer)
    # Five (x, y) points in photo pixels, as a JSON list of pairs.
    landmarks: Mapped[list[list[float]]] = mapped_column(JSON)
    quality: Mapped[float] = mapped_column(Float)
    photo_sha256: Mapped[str] = mapped_column(String(64), index=True)
    # The aligned 150x150 chip as JPEG: what re-embedding with a new model starts from.
    chip_jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Setting(Base):
    """A named JSON value, e.g. the decision rule in force and where it came from."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


# A setting's stored value as it is (bytes on SQLite, which may hold anything; text on PostgreSQL, whose
# json type is checked on the way in): SQLAlchemy's JSON type would raise JSONDecodeError on a damaged row.
RAW_SETTING = cast(Setting.value, LargeBinary().with_variant(Text(), "postgresql"))


class AuditEntry(Base):
    """One decision or change, kept after the person is removed; never photo or embedding data."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(50))
    person_name: Mapped[str | None] = mapped_column(String(NAME_MAX_LENGTH))
    # No foreign key: the event must survive the person's removal.
    person_id: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(MODEL_ID_MAX_LENGTH))
    rule: Mapped[Any | None] = mapped_column(JSON(none_as_null=True))
    outcome: Mapped[str] = mapped_column(String(50))
    detail: Mapped[Any | None] = mapped_column(JSON(none_as_null=True))


class StoreState(Base):
    """The single row identifying this gallery and counting changes to its faces."""

    __tablename__ = "store_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Random, made when the database is created; binds an index file to its database.
    gallery_id: Mapped[str] = mapped_column(String(32))
    # Bumped with every change a replica holds (faces; settings, which replicas cache too).
    faces_generation: Mapped[int] = mapped_column(Integer)
    # The generation from which ``face_changes`` is complete (the log began with revision 0002).
    log_start: Mapped[int] = mapped_column(Integer, server_default="0")


class FaceChange(Base):
    """A face added or removed at a generation: what replicas replay to catch up (ids only)."""

    __tablename__ = "face_changes"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, index=True)
    face_id: Mapped[int] = mapped_column(Integer)
    removed: Mapped[bool] = mapped_column(Boolean)


class ReplicaHost(Base):
    """A host following the change log: the generation its replica has applied, and when it said so."""

    __tablename__ = "replica_hosts"

    # Random, kept in the host's home folder: one row per home, whatever the machine's name.
    host_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    generation: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When it closed cleanly (None while it runs): no removal waits for it, though its file may hold one.
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


metadata = Base.metadata

__all__ = [
    "HEAD_REVISION",
    "NAMING_CONVENTION",
    "RAW_SETTING",
    "ApiKeyRow",
    "AuditEntry",
    "Base",
    "Face",
    "FaceChange",
    "Person",
    "ReplicaHost",
    "Setting",
    "StoreState",
    "UTCDateTime",
    "metadata",
    "utcnow",
]


class ApiKeyRow(Base):
    """An API key of the HTTP service: its name, scopes and the SHA-256 of the key (never the key itself)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # A JSON list of scope names ("identify", "enrol", "admin").
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
