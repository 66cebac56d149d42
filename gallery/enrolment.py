"""The enrolment policy: which face of a photo may be enrolled, whether it is someone else, what is stored of it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from gallery.errors import ImageError, LooksLikeSomeoneElse, MultipleFaces, NoFaceFound, PoorQuality
from gallery.store import FaceRecord, PersonRow, Store
from gallery.vision.chips import CHIP_SIZE
from gallery.vision.image import load_rgb
from gallery.vision.pipeline import Face
from gallery.vision.quality import assess

CHIP_JPEG_QUALITY = 95  # the stored chip is what `reembed` works from: keep it near-lossless


def enrolment_face(found: list[Face], *, largest: bool) -> Face:
    """The face a photo enrols under the enrolment policy (``found`` largest first), or why none.

    Raises:
        NoFaceFound, MultipleFaces (unless ``largest``), PoorQuality.
    """
    if not found:
        raise NoFaceFound("no face found in the photo")
    if len(found) > 1 and not largest:
        raise MultipleFaces(f"the photo holds {len(found)} faces; enrolment needs one (or largest=True / --largest)")
    face = found[0]
    quality = assess(face.box, face.score, face.chip)
    if not quality.acceptable:
        raise PoorQuality(f"cannot enrol this face: {quality.problem}")
    return face


def refuse_lookalike(store: Store, face: Face, person: PersonRow | None, threshold: float) -> None:
    """Refuse a face within ``threshold`` (the verify threshold: a 1:1 question) of someone other than ``person``.

    Raises:
        LooksLikeSomeoneElse: naming the enrolled person the face matches.
    """
    (hits,) = store.search(face.embedding[None, :], k=2)
    for hit in hits:
        if hit.distance <= threshold and (person is None or hit.person_id != person.id):
            raise LooksLikeSomeoneElse(
                f"this face matches {hit.name!r} (distance {hit.distance:.3f}); "
                "pass allow_similar=True (--allow-similar) if they really are different people",
                other=hit.name,
            )


def face_record(face: Face, model: str, photo_sha256: str) -> FaceRecord:
    """What the store keeps of an enrolled face: embedding, box, landmarks, quality, photo hash and chip."""
    return FaceRecord(
        embedding=face.embedding,
        model=model,
        box=face.box,
        landmarks=tuple((float(x), float(y)) for x, y in face.landmarks),
        quality=face.score,
        photo_sha256=photo_sha256,
        chip_jpeg=_jpeg(face.chip),
    )


def stored_chip_pixels(face_id: int, chip_jpeg: bytes) -> np.ndarray:
    """A stored chip decoded for the embedder (``reembed``).

    Raises:
        ImageError: the stored chip is not a CHIP_SIZE-square image.
    """
    try:
        chip = load_rgb(chip_jpeg)
    except ImageError as error:
        raise ImageError(f"face {face_id}'s stored chip cannot be decoded: {error}") from error
    if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ImageError(
            f"face {face_id}'s stored chip is {chip.shape[1]}x{chip.shape[0]}, not {CHIP_SIZE}x{CHIP_SIZE}"
        )
    return chip


def _jpeg(chip: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chip).save(buf, format="JPEG", quality=CHIP_JPEG_QUALITY)
    return buf.getvalue()
