"""The enrolment policy: which face of a photo may be enrolled, whether it is someone else, what is stored of it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from gallery.errors import (
    AlreadyEnrolled,
    ExternalIdMismatch,
    ImageError,
    LooksLikeSomeoneElse,
    MultipleFaces,
    NoFaceFound,
    PersonNotFound,
    PhotoAlreadyEnrolled,
    PoorQuality,
)
from gallery.store import FaceRecord, PersonRow, Store, clean_name
from gallery.store.validation import new_name
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


def enrolment_names(name: str, external_id: str | None, *, add: bool) -> tuple[str, str | None]:
    """The name and external id of an enrolment, checked before any photo work.

    A new person's name and external id must pass ``new_name``; ``add`` looks a name up, so
    one stored before those rules is still found.

    Raises:
        InvalidName: naming what is wrong.
    """
    check = clean_name if add else new_name
    return check(name), None if external_id is None else check(external_id, "external id")


def refuse_person(existing: PersonRow | None, name: str, *, add: bool, external_id: str | None) -> None:
    """Refuse an enrolment whose name does not fit ``add`` (``existing``: who holds the name now).

    Raises:
        AlreadyEnrolled: the name is taken and ``add`` is not set. PersonNotFound: ``add`` for
        an unknown name. ExternalIdMismatch: ``add`` with an external id the person does not carry.
    """
    if existing is not None and not add:
        raise AlreadyEnrolled(f"{existing.name!r} is already enrolled; use add=True (--add) to add another photo")
    if existing is None and add:
        raise PersonNotFound(f"no person named {name!r} to add a photo to; enrol them first")
    if existing is not None and external_id is not None and external_id != existing.external_id:
        carried = "no external id" if existing.external_id is None else f"external id {existing.external_id!r}"
        raise ExternalIdMismatch(
            f"{existing.name!r} carries {carried}, not {external_id!r}; adding a photo never changes it"
        )


def refuse_known_photo(holder: str | None, name: str) -> None:
    """Refuse a photo enrolled already (``holder``: whose it is, by the SHA-256 of the file, or None).

    Raises:
        PhotoAlreadyEnrolled: naming the person who holds it.
    """
    if holder is None:
        return
    if holder == name:
        raise PhotoAlreadyEnrolled(f"this photo (the same file) is enrolled already, as {holder!r}'s", holder=holder)
    raise PhotoAlreadyEnrolled(
        f"this photo (the same file) is enrolled already, as {holder!r}'s: one photo cannot enrol two people",
        holder=holder,
    )


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
