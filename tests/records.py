"""A stored face without a photo: what store-level tests (and their helper processes) enrol.

The store checks a record's shapes, not where it came from, so one helper serves every test
that writes faces directly: the embedding is the caller's, the photo's digest is derived from
it (distinct embeddings, distinct photos), and the chip starts like a JPEG.
"""

from __future__ import annotations

import hashlib

import numpy as np

from gallery.store import FaceRecord


def face_record(vector: np.ndarray, model: str, *, chip: bytes | None = None) -> FaceRecord:
    """A face record of ``vector`` under ``model``; ``chip``: the chip's bytes (default: derived from the vector)."""
    return FaceRecord(
        embedding=vector,
        model=model,
        box=(10, 20, 110, 120),
        landmarks=((30.0, 50.0), (40.0, 50.0), (80.0, 50.0), (70.0, 50.0), (55.0, 90.0)),
        quality=1.25,
        photo_sha256=hashlib.sha256(vector.tobytes()).hexdigest(),
        chip_jpeg=chip if chip is not None else b"\xff\xd8\xff\xe0 chip of " + vector.tobytes()[:8],
    )
