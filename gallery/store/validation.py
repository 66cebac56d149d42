"""What the store accepts: names as stored, and face records checked field by field.

Shared with the code that reads names from elsewhere (folder names in bulk enrolment), so a
name means one person however it reached the gallery.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from gallery.errors import InvalidFaceRecord, ModelMismatch
from gallery.store.records import FaceRecord
from gallery.store.schema import NAME_MAX_LENGTH

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def normalise_name(name: str) -> str:
    """A name in the form the store keeps: Unicode NFC, surrounding whitespace removed.

    NFC makes a name typed on different systems ("José" composed or decomposed) one person.
    Does not check the result: ``clean_name`` does.
    """
    return unicodedata.normalize("NFC", name).strip()


def clean_name(name: str, what: str = "name") -> str:
    """A person's name (or external id) as stored: ``normalise_name``, then checked.

    Raises:
        InvalidFaceRecord: the name is empty, too long or holds control characters.
    """
    if not isinstance(name, str):
        raise InvalidFaceRecord(f"{what} must be a string, not {type(name).__name__}")
    cleaned = normalise_name(name)
    if not cleaned:
        raise InvalidFaceRecord(f"{what} is empty")
    if len(cleaned) > NAME_MAX_LENGTH:
        raise InvalidFaceRecord(f"{what} is longer than {NAME_MAX_LENGTH} characters")
    if any(unicodedata.category(c) == "Cc" for c in cleaned):
        raise InvalidFaceRecord(f"{what} contains control characters")
    return cleaned


def checked_embedding(embedding: np.ndarray, dimension: int) -> np.ndarray:
    """``embedding`` as little-endian float32, after checking it is ``dimension`` finite floats.

    Raises:
        InvalidFaceRecord: it is not.
    """
    vector = np.asarray(embedding)
    if vector.shape != (dimension,) or not np.issubdtype(vector.dtype, np.floating):
        raise InvalidFaceRecord(f"an embedding must be {dimension} floats, got {vector.dtype} {vector.shape}")
    vector = vector.astype("<f4")
    if not np.isfinite(vector).all():
        raise InvalidFaceRecord("an embedding holds non-finite values")
    return vector


def checked_batch(
    entries: Sequence[tuple[str, Sequence[FaceRecord]]], model: str, dimension: int
) -> list[tuple[str, list[tuple[FaceRecord, np.ndarray]]]]:
    """A bulk write's ``(name, faces)`` entries: names cleaned, each face with its checked embedding.

    Raises:
        InvalidFaceRecord: a name appears twice or has no face, or a field is malformed.
        ModelMismatch: a face was embedded by another model than ``model``.
    """
    cleaned = [
        (clean_name(name), [(face, checked_face(face, model, dimension)) for face in faces]) for name, faces in entries
    ]
    if len({name for name, _ in cleaned}) != len(cleaned):
        raise InvalidFaceRecord("add_many needs each name at most once")
    if any(not faces for _, faces in cleaned):
        raise InvalidFaceRecord("add_many needs at least one face per name")
    return cleaned


def checked_queries(embeddings: np.ndarray, dimension: int) -> np.ndarray:
    """Query embeddings, one or (n, dimension), as an (n, dimension) little-endian float32 array.

    Raises:
        InvalidFaceRecord: a query is not ``dimension`` finite floats.
    """
    given = np.asarray(embeddings)
    return np.stack([checked_embedding(q, dimension) for q in (given[None] if given.ndim == 1 else given)])


def checked_face(face: FaceRecord, model: str, dimension: int) -> np.ndarray:
    """The face's embedding as little-endian float32, after checking every field.

    Raises:
        ModelMismatch: the face was embedded by another model than ``model``.
        InvalidFaceRecord: a field is malformed.
    """
    if face.model != model:
        raise ModelMismatch(f"the face was embedded by {face.model!r}; this gallery uses {model!r}")
    vector = checked_embedding(face.embedding, dimension)
    if len(face.box) != 4 or not all(isinstance(v, int | np.integer) for v in face.box):
        raise InvalidFaceRecord(f"box must be 4 integers (left, top, right, bottom), got {face.box!r}")
    points = np.asarray(face.landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise InvalidFaceRecord(f"landmarks must be 5 finite (x, y) points, got shape {points.shape}")
    if not np.isfinite(float(face.quality)):
        raise InvalidFaceRecord("quality must be finite")
    if not isinstance(face.photo_sha256, str) or not _SHA256_HEX.fullmatch(face.photo_sha256):
        raise InvalidFaceRecord("photo_sha256 must be 64 lowercase hex digits")
    if not isinstance(face.chip_jpeg, bytes | bytearray) or not face.chip_jpeg:
        raise InvalidFaceRecord("chip_jpeg must be non-empty bytes")
    return vector
