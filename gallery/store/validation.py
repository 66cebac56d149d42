"""What the store accepts: names as stored, and face records checked field by field.

Shared with the code that reads names from elsewhere (folder names in bulk enrolment), so a
name means one person however it reached the gallery.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from gallery.errors import InvalidFaceRecord, InvalidName, ModelMismatch
from gallery.store.records import FaceRecord
from gallery.store.schema import NAME_MAX_LENGTH

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def normalise_name(name: str) -> str:
    """A name in the form the store keeps and looks up: Unicode NFC, surrounding whitespace removed.

    NFC makes a name typed on different systems ("José" composed or decomposed) one person.
    Not NFKC: that would rewrite what people wrote (ª → a, Ⅸ → IX) and would stop names stored
    in NFC from being found; ``new_name`` refuses compatibility characters instead, so two names
    enrolled under its rules never differ only by one. Does not check the result: ``clean_name`` does.
    """
    return unicodedata.normalize("NFC", name).strip()


def clean_name(name: str, what: str = "name") -> str:
    """A person's name (or external id) as stored and looked up: ``normalise_name``, then checked.

    Refuses only what can never be stored or typed (so every name stored so far is still found
    and can be removed); a new person's name must also pass ``new_name``.

    Raises:
        InvalidName: the name is empty, too long, or holds control characters or unpaired
            surrogates (a file name or argument that was not UTF-8).
    """
    if not isinstance(name, str):
        raise InvalidName(f"{what} must be a string, not {type(name).__name__}")
    cleaned = normalise_name(name)
    if not cleaned:
        raise InvalidName(f"{what} is empty")
    if len(cleaned) > NAME_MAX_LENGTH:
        raise InvalidName(f"{what} is longer than {NAME_MAX_LENGTH} characters")
    for char in cleaned:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidName(f"{what} {shown_name(cleaned)} holds {_why_refused(char)}")
    return cleaned


def new_name(name: str, what: str = "name") -> str:
    """A new person's name (or external id): ``clean_name``, and nothing that hides what it says.

    Two names that look the same on a screen must be one name, so a new name may not hold
    invisible characters (Unicode format characters, category Cf: zero-width spaces and
    joiners, direction overrides and isolates, the BOM; other default-ignorable code points:
    variation selectors, the combining grapheme joiner, Hangul fillers), line or paragraph
    separators, non-characters, or compatibility characters (fullwidth and halfwidth forms,
    ligatures, presentation forms, no-break spaces: anything Unicode's NFKC would rewrite).
    Letters of every script, accents, apostrophes, hyphens and inner spaces are fine.

    Raises:
        InvalidName: naming the first offending code point.
    """
    cleaned = clean_name(name, what)
    for char in cleaned:
        if _hidden(char):
            raise InvalidName(f"{what} {shown_name(cleaned)} holds {_why_refused(char)}")
    folded = unicodedata.normalize("NFKC", cleaned)
    if folded != cleaned:
        char = next(c for c in cleaned if unicodedata.normalize("NFKC", c) != c)
        raise InvalidName(
            f"{what} {shown_name(cleaned)} holds {_code_point(char)}, a compatibility form of "
            f"{unicodedata.normalize('NFKC', char)!r}: write {folded!r}"
        )
    return cleaned


def shown_name(text: str) -> str:
    """``text`` quoted for a message or a terminal: every character that is not printable escaped.

    Bytes that were not UTF-8 (surrogate escapes, as Python decodes such file names and
    arguments) show as ``\\xe9``, invisible and control characters as ``\\u202e``, so a message
    can always be printed and never reorders or hides the text around it.
    """
    return "'" + escape_unprintable(text) + "'"


def escape_unprintable(text: str) -> str:
    """``text`` with every character that is not printable backslash-escaped (surrogate escapes as their byte)."""
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    point = ord(char)
    if 0xDC80 <= point <= 0xDCFF:  # a byte that was not UTF-8, escaped by os.fsdecode or sys.argv
        return f"\\x{point - 0xDC00:02x}"
    return f"\\x{point:02x}" if point <= 0xFF else f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"


# Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties) beyond category Cf: drawn as nothing.
_IGNORABLE_RANGES = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors and vowel separator
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # unassigned, reserved as ignorable
    (0xE0000, 0xE0FFF),  # tags and variation selectors supplement
)


def _hidden(char: str) -> bool:
    """An invisible, separator or non-character code point: refused in new names."""
    point = ord(char)
    return (
        unicodedata.category(char) in ("Cf", "Zl", "Zp")
        or any(low <= point <= high for low, high in _IGNORABLE_RANGES)
        or 0xFDD0 <= point <= 0xFDEF
        or (point & 0xFFFE) == 0xFFFE  # U+FFFE, U+FFFF and their counterparts in every plane
    )


def _code_point(char: str) -> str:
    name = unicodedata.name(char, "")  # control characters have none
    return f"U+{ord(char):04X} {name}" if name else f"U+{ord(char):04X}"


def _why_refused(char: str) -> str:
    point, category = ord(char), unicodedata.category(char)
    if category == "Cs":
        if 0xDC80 <= point <= 0xDCFF:
            return (
                f"byte 0x{point - 0xDC00:02X} that is not UTF-8 (U+{point:04X}, an unpaired surrogate): "
                "a name must be UTF-8 text"
            )
        return f"U+{point:04X}, an unpaired surrogate: a name must be valid Unicode text"
    if category == "Cc":
        return f"{_code_point(char)}, a control character"
    if category in ("Zl", "Zp"):
        return f"{_code_point(char)}, a line or paragraph separator"
    if unicodedata.category(char) == "Cn" and not 0xFFF0 <= point <= 0xFFF8 and not 0xE0000 <= point <= 0xE0FFF:
        return f"U+{point:04X}, a Unicode non-character"
    return f"{_code_point(char)}, an invisible character (names that look alike must be one name)"


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
