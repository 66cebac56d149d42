"""The Gallery facade: enroll, identify, verify and remove people.

The only place that joins the face pipeline (gallery.vision) and storage (gallery.store),
and so the keeper of their consistency: a face is embedded before any write starts, and
each write is one store call (database commit, then index save, under the store's
cross-process lock), so bad input or a crash leaves no half-enrolled person.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
from PIL import Image

from gallery.decision import DEFAULT_RULE, DLIB_DISTANCE_THRESHOLD, DecisionRule, Evidence, rule_from_dict
from gallery.errors import AlreadyEnrolled, LooksLikeSomeoneElse, MultipleFaces, NoFaceFound, PoorQuality
from gallery.results import Candidate, Enrollment, GalleryInfo, IdentifiedFace, Person, Removal, Verification
from gallery.store import FaceRecord, PersonNotFound, Store
from gallery.vision.image import ImageInput, load_rgb, photo_sha256, read_photo
from gallery.vision.pipeline import Face, FacePipeline, default_pipeline
from gallery.vision.quality import assess

HOME_ENV = "GALLERY_HOME"
RULE_SETTING = "decision_rule"
VERIFY_SETTING = "verify_rule"
CHIP_JPEG_QUALITY = 95
UPSAMPLE_RETRY_MAX_PIXELS = 1_000_000  # upsampling quadruples the detector's cost: small photos only  # the stored chip is what `reembed` works from: keep it near-lossless

log = logging.getLogger(__name__)


def default_home() -> Path:
    """``$GALLERY_HOME``, else the platform's user data directory for gallery."""
    return Path(os.environ.get(HOME_ENV) or platformdirs.user_data_dir("gallery"))


class Gallery:
    """A face gallery stored in one folder (``home``).

    Safe to share between threads; several processes may open the same home (writes
    are serialised by a file lock, reads never wait for them). Use as a context manager
    or call ``close()`` so pending audit entries are written.

    Args:
        home: the gallery folder; defaults to ``default_home()``. Created if missing.
        pipeline: the face pipeline to use (tests inject one); defaults to the process-wide one.
    """

    def __init__(self, home: str | os.PathLike | None = None, *, pipeline: FacePipeline | None = None) -> None:
        self._pipeline = pipeline or default_pipeline()
        self.home = Path(home) if home is not None else default_home()
        self._store = Store.open(self.home, model=self._pipeline.model_id)
        self._audit = _AuditWriter(self._store)

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Write pending audit entries and release the database."""
        self._audit.close()
        self._store.close()

    # ---- writes ----------------------------------------------------------------------

    def enroll(
        self,
        name: str,
        image: ImageInput,
        *,
        add: bool = False,
        largest: bool = False,
        allow_similar: bool = False,
        external_id: str | None = None,
    ) -> Enrollment:
        """Enrol ``name`` from one photo holding exactly one face.

        Args:
            name: the person's name, unique in the gallery.
            image: a path, bytes, a PIL image or an HxWx3 uint8 RGB array.
            add: add this photo to a person already enrolled (otherwise their name is refused).
            largest: take the largest face when the photo holds several.
            allow_similar: enrol even if the face already matches another enrolled person.
            external_id: the host system's id for a new person.

        Raises:
            ImageError: the photo cannot be used. NoFaceFound, MultipleFaces, PoorQuality.
            AlreadyEnrolled, PersonNotFound (``add`` for an unknown name), LooksLikeSomeoneElse.
        """
        photo = read_photo(image) if isinstance(image, (str, os.PathLike)) else image
        face = self._single_face(photo, largest=largest)
        record = FaceRecord(
            embedding=face.embedding,
            model=self._pipeline.model_id,
            box=face.box,
            landmarks=tuple((float(x), float(y)) for x, y in face.landmarks),
            quality=face.score,
            photo_sha256=photo_sha256(photo),
            chip_jpeg=_jpeg(face.chip),
        )
        # The checks and the write hold one lock, so another process cannot enrol the same
        # name or face in between.
        with self._store.write_lock():
            existing = self._store.find_person(name)
            if existing is not None and not add:
                raise AlreadyEnrolled(f"{existing.name!r} is already enrolled; use add=True (--add) to add another photo")
            if existing is None and add:
                raise PersonNotFound(f"no person named {name!r} to add a photo to; enrol them first")
            if not allow_similar:
                self._refuse_lookalike(face, existing)
            if existing is None:
                person_id, face_id = self._store.add_person_with_face(name, record, external_id=external_id)
            else:
                person_id, face_id = existing.id, self._store.add_face(existing.id, record)
        person = self._store.person(person_id)
        assert person is not None
        self._audit.put("enroll", outcome="added" if existing else "enrolled", person_name=person.name,
                        person_id=person_id, model=self._pipeline.model_id, detail={"face_id": face_id})
        return Enrollment(person.name, person_id, face_id, face.box, new_person=existing is None)

    def remove(self, name: str) -> Removal:
        """Erase a person: their rows, embeddings and chips, from database, WAL and index.

        Raises:
            PersonNotFound: nobody is enrolled under ``name``.
        """
        removed = self._store.remove_person(name)
        self._audit.put("remove", outcome="removed", person_name=removed.name, person_id=removed.person_id,
                        detail={"faces": len(removed.face_ids)})
        return Removal(removed.name, removed.person_id, len(removed.face_ids))

    # ---- reads -----------------------------------------------------------------------

    def identify(self, image: ImageInput, *, top_k: int = 5, upsample: int = 0) -> list[IdentifiedFace]:
        """Who is in the photo: one result per face, largest face first.

        Args:
            image: a path, bytes, a PIL image or an HxWx3 uint8 RGB array.
            top_k: candidates reported per face.
            upsample: detector upsampling steps (finds smaller faces, slower).

        Raises:
            ImageError: the photo cannot be used. (A photo without faces gives an empty list.)
        """
        found = self._pipeline.faces(image, upsample=upsample)
        if not found:
            self._audit.put("identify", outcome="no_face")
            return []
        rule = self.rule()
        hits = self._store.search(np.stack([f.embedding for f in found]), k=max(top_k, 2))
        gallery_size = self._store.people_count()
        results = []
        for face, face_hits in zip(found, hits, strict=True):
            candidates = tuple(Candidate(h.name, h.person_id, h.distance) for h in face_hits)
            evidence = [Evidence(person_id=c.person_id, distance=c.distance) for c in candidates]
            decision = rule.decide(evidence, gallery_size)
            match = candidates[decision.index] if decision.index is not None else None
            results.append(
                IdentifiedFace(face.box, candidates[:top_k], match, decision.outcome, decision.confidence, rule.describe())
            )
        self._audit.put(
            "identify",
            outcome=",".join(r.outcome for r in results),
            person_name=results[0].match.name if results[0].match else None,
            person_id=results[0].match.person_id if results[0].match else None,
            model=self._pipeline.model_id,
            rule=rule.to_dict(),
            detail={"faces": [{"outcome": r.outcome, "person_id": r.match.person_id if r.match else None,
                               "distance": r.candidates[0].distance if r.candidates else None} for r in results]},
        )
        return results

    def verify(self, name: str, image: ImageInput) -> Verification:
        """Is the largest face in the photo the enrolled person ``name``?

        Raises:
            PersonNotFound, NoFaceFound, ImageError.
        """
        person = self._store.find_person(name)
        if person is None:
            raise PersonNotFound(f"no person named {name!r} is enrolled")
        face = self._largest_face(image)
        _, embeddings = self._store.embeddings_for(person.id)
        distance = float(np.min(np.linalg.norm(embeddings - face.embedding, axis=1)))
        threshold = float(self._store.get_setting(VERIFY_SETTING, {}).get("threshold", DLIB_DISTANCE_THRESHOLD))
        verified = distance <= threshold
        self._audit.put("verify", outcome="verified" if verified else "rejected", person_name=person.name,
                        person_id=person.id, model=self._pipeline.model_id,
                        rule={"threshold": threshold}, detail={"distance": distance})
        return Verification(person.name, person.id, verified, distance, threshold, face.box)

    def people(self) -> list[Person]:
        """Everyone enrolled, by name."""
        return self._store.people()

    def rule(self) -> DecisionRule:
        """The decision rule in force: the calibrated one stored in the gallery, else the default."""
        stored = self._store.get_setting(RULE_SETTING)
        return rule_from_dict(stored["rule"]) if stored else DEFAULT_RULE

    def info(self) -> GalleryInfo:
        """Where the gallery lives, what it holds and which rules decide."""
        stats = self._store.stats()
        stored = self._store.get_setting(RULE_SETTING)
        rule = stored if stored else {"rule": DEFAULT_RULE.to_dict(), "provenance": "built-in default"}
        verify = self._store.get_setting(VERIFY_SETTING) or {
            "threshold": DLIB_DISTANCE_THRESHOLD, "provenance": "dlib's documented threshold"}
        return GalleryInfo(stats.home, stats.people, stats.faces, stats.model, rule, verify, stats.schema_revision)

    # ---- helpers ---------------------------------------------------------------------

    def _single_face(self, image: ImageInput, *, largest: bool) -> Face:
        rgb = load_rgb(image)
        found = self._pipeline.faces(rgb)
        if not found and rgb.shape[0] * rgb.shape[1] <= UPSAMPLE_RETRY_MAX_PIXELS:
            # The detector needs ~80 px faces; look closer so that a small face is refused
            # as too small (which the user can fix) rather than reported as absent.
            found = self._pipeline.faces(rgb, upsample=1)
        if not found:
            raise NoFaceFound("no face found in the photo")
        if len(found) > 1 and not largest:
            raise MultipleFaces(f"the photo holds {len(found)} faces; enrolment needs one (or largest=True / --largest)")
        face = found[0]
        quality = assess(face.box, face.score, face.chip)
        if not quality.acceptable:
            raise PoorQuality(f"cannot enrol this face: {quality.problem}")
        return face

    def _largest_face(self, image: ImageInput) -> Face:
        found = self._pipeline.faces(image)
        if not found:
            raise NoFaceFound("no face found in the photo")
        return found[0]

    def _refuse_lookalike(self, face: Face, person: Person | None) -> None:
        (hits,) = self._store.search(face.embedding[None, :], k=2)
        for hit in hits:
            if hit.distance <= DLIB_DISTANCE_THRESHOLD and (person is None or hit.person_id != person.id):
                raise LooksLikeSomeoneElse(
                    f"this face matches {hit.name!r} (distance {hit.distance:.3f}); "
                    "pass allow_similar=True (--allow-similar) if they really are different people",
                    other=hit.name,
                )


def _jpeg(chip: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chip).save(buf, format="JPEG", quality=CHIP_JPEG_QUALITY)
    return buf.getvalue()


class _AuditWriter:
    """Writes audit events on a background thread, so a door's answer never waits for the log.

    Identify calls would otherwise each take the database's write lock and wait behind an
    enrolment in another process. Events are written in order; ``close`` drains the queue.
    """

    _STOP = object()

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="gallery-audit", daemon=True)
        self._thread.start()

    def put(self, action: str, **fields: Any) -> None:
        self._queue.put((action, fields))

    def close(self) -> None:
        self._queue.put(self._STOP)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not self._STOP:
            action, fields = item
            try:
                self._store.audit(action, **fields)
            except Exception:  # the log must never take the door down; say so loudly instead
                log.exception("could not write %s audit event", action)
