"""Plain frozen records the store takes and returns; no ORM object leaves the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from gallery.types import Box


@dataclass(frozen=True)
class FaceRecord:
    """A face to store: its embedding and how it was obtained.

    Attributes:
        embedding: (dimension,) float32 descriptor.
        model: id of the embedding model that made ``embedding``.
        box: detector rectangle (left, top, right, bottom) in photo pixels.
        landmarks: five (x, y) points in photo pixels.
        quality: detector score or another quality measure.
        photo_sha256: hex SHA-256 of the source photo's bytes.
        chip_jpeg: the aligned 150x150 face chip, JPEG-encoded (kept for re-embedding).
    """

    embedding: np.ndarray = field(compare=False, repr=False)
    model: str
    box: Box
    landmarks: tuple[tuple[float, float], ...]
    quality: float
    photo_sha256: str
    chip_jpeg: bytes = field(repr=False)


@dataclass(frozen=True)
class PersonRow:
    """An enrolled person and how many faces (of any model) they have."""

    id: int
    name: str
    external_id: str | None
    created_at: datetime
    updated_at: datetime
    face_count: int


@dataclass(frozen=True)
class FaceRow:
    """A stored face without its embedding or chip."""

    id: int
    person_id: int
    model: str
    box: Box
    landmarks: tuple[tuple[float, float], ...]
    quality: float
    photo_sha256: str
    created_at: datetime


@dataclass(frozen=True)
class SearchHit:
    """A person near a query: their nearest face and its Euclidean distance."""

    face_id: int
    person_id: int
    name: str
    distance: float


@dataclass(frozen=True)
class RemovedPerson:
    """What ``remove_person`` erased.

    Attributes:
        wal_cleared: whether the WAL was checkpointed and emptied afterwards, so the removed
            rows' old page images are gone from the database's files (False if readers kept it
            busy; the next open or write of any process finishes the job).
        pending: what still holds copies of the removed faces: ``"index file"`` (it could be
            neither rewritten nor deleted), ``"database"`` (the WAL could not be emptied, or the
            tables vacuumed, yet), ``"host NAME (ID)"`` (a connected host whose replica had not
            applied the removal when it returned; it does by itself); empty when complete.
    """

    person_id: int
    name: str
    external_id: str | None
    face_ids: tuple[int, ...]
    wal_cleared: bool
    pending: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReembedTask:
    """A face stored with another model than the store's, and the chip to re-embed it from."""

    face_id: int
    person_id: int
    model: str
    chip_jpeg: bytes = field(repr=False)


@dataclass(frozen=True)
class AuditEvent:
    """One row of the audit log (``Store.audit_log``).

    Attributes:
        id: increasing with the order events were written.
        at: when, timezone-aware in UTC.
        action: ``enroll``, ``remove``, ``identify``, ``verify``, ``reembed``, ``calibrate``.
        outcome: what came of it (``enrolled``, ``removed``, ``verified``, ...); for
            ``identify``, each face's outcome in order, joined by commas (``match,unknown``).
        person_name, person_id: the person concerned (for ``identify``, the first face's
            match), kept after the person is removed.
        model: the embedding model in use, if any.
        rule: what the decision rule was (kind and fingerprint, a threshold), if any.
        detail: small JSON facts (face ids, distances; for ``identify``, ``{"faces": [{outcome,
            person_id, distance}, ...]}``). Never photo or embedding data.
    """

    id: int
    at: datetime
    action: str
    outcome: str
    person_name: str | None
    person_id: int | None
    model: str | None
    rule: Any
    detail: Any

    @property
    def outcomes(self) -> tuple[str, ...]:
        """The outcome of each face (one for every action but ``identify``)."""
        return tuple(self.outcome.split(","))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, ``at`` in ISO 8601 with its UTC offset."""
        return {**asdict(self), "at": self.at.isoformat()}


@dataclass(frozen=True)
class StoreStats:
    """Counts and locations, for ``gallery info``.

    Attributes:
        faces_by_model: stored faces per embedding model (other models than ``model`` need
            re-embedding before they can be searched).
        indexed_faces: faces in the in-memory index (those of ``model``).
        generation: the faces generation the index reflects.
        index_repair: why the index file was rebuilt when this store was opened, or None.
        data_age_s: seconds since this host's replica was last confirmed current.
    """

    home: Path
    database: str  # the SQLite file, or the server's URL without its password
    index_path: Path
    model: str
    dimension: int
    people: int
    faces: int
    faces_by_model: dict[str, int]
    indexed_faces: int
    generation: int
    schema_revision: str | None
    index_repair: str | None
    data_age_s: float = 0.0
