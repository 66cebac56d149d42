"""Bulk enrolment from a folder (``Gallery.enroll_dir``): photos hashed, skipped when already the
person's and refused when someone else's, faces embedded in batches shared across photos, people
written in batches, each whole or not at all."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gallery.audit import AuditWriter
from gallery.enrolment import (
    IdentifyQuestion,
    PendingPerson,
    check_lookalike,
    enrolment_face,
    face_record,
    overrides,
    refuse_known_photo,
)
from gallery.errors import GalleryError, ImageError, InvalidName, LooksLikeSomeoneElse, PhotoAlreadyEnrolled
from gallery.folders import PersonPhotos, scan_people_folder
from gallery.results import Enrollment, EnrolmentInterrupted, FolderEnrollment, PhotoFailure
from gallery.store import Store, clean_name
from gallery.store.validation import escape_unprintable, new_name
from gallery.vision.image import load_rgb, photo_sha256, read_photo
from gallery.vision.pipeline import Face, FacePipelineProtocol


class FolderEnrolment:
    """One ``enroll_dir`` run over a folder (see ``Gallery.enroll_dir`` for the policy).

    Args:
        store, pipeline, audit: the gallery's.
        largest, allow_similar: as for ``Gallery.enroll``.
        question: makes identify's question under the rule in force (``Gallery._question``), for
            the lookalike check; asked once per batch, inside the write lock.
        progress: called as ``progress(photos_done, photos_total)``.
    """

    def __init__(
        self,
        store: Store,
        pipeline: FacePipelineProtocol,
        audit: AuditWriter,
        *,
        largest: bool,
        allow_similar: bool,
        question: Callable[[], IdentifyQuestion],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._audit = audit
        self._largest = largest
        self._allow_similar = allow_similar
        self._question = question
        self._run = _FolderRun(total=0, progress=progress)

    def enrol(self, folder: str | os.PathLike, *, batch_photos: int) -> FolderEnrollment:
        """Enrol the folder in batches of about ``batch_photos`` photos (whole people)."""
        people = scan_people_folder(folder)
        self._run.total = sum(len(p.photos) for p in people)
        batch: list[PersonPhotos] = []
        try:
            for person in people:
                batch.append(person)
                if sum(len(p.photos) for p in batch) >= batch_photos:
                    self._enroll_people(batch)
                    batch = []
            if batch:
                self._enroll_people(batch)
        except KeyboardInterrupt:  # Ctrl-C: what was committed stays; say what that was
            raise EnrolmentInterrupted(self._report()) from None
        return self._report()

    def _report(self) -> FolderEnrollment:
        run = self._run
        return FolderEnrollment(run.total, tuple(run.enrolled), tuple(run.skipped), tuple(run.failures))

    def _enroll_people(self, people: list[PersonPhotos]) -> None:
        """One batch: hash, skip known photos, detect, embed together, check, write once."""
        run = self._run
        hashed: list[_PhotoJob] = []
        for person in people:
            try:
                name = self._person_name(person.name)
            except GalleryError as error:
                for path in person.photos:
                    run.fail(path, person.name, error, done=True)
                continue
            for path in person.photos:
                try:
                    hashed.append(_PhotoJob(path, name, photo_sha256(read_photo(path))))
                except ImageError as error:
                    run.fail(path, name, error, done=True)
        known = self._store.photos_enrolled(job.sha256 for job in hashed)
        photos: list[_PhotoJob] = []
        seen: dict[str, _PhotoJob] = {}
        for job in hashed:
            if self._known(job, known.get(job.sha256), counted=False):
                continue
            first = seen.setdefault(job.sha256, job)
            if first is job:
                photos.append(job)
            elif first.name == job.name:  # the same file twice for one person
                run.skip(job.path)
            else:
                where = escape_unprintable(first.path.name)
                refusal = f"this photo (the same file) is also in the folder as {first.name!r}'s ({where})"
                run.fail(job.path, job.name, PhotoAlreadyEnrolled(refusal, holder=first.name), done=True)
        readable: list[_PhotoJob] = []

        def decoded() -> Iterator[np.ndarray]:
            for job in photos:
                try:
                    rgb = load_rgb(job.path)
                except ImageError as error:
                    run.fail(job.path, job.name, error, done=True)
                    continue
                job.shape = rgb.shape
                readable.append(job)
                yield rgb
                run.advance()  # the pipeline has finished with this photo's pixels

        for job, found in zip(readable, self._pipeline.faces_many(decoded()), strict=True):
            try:
                if not found:
                    found = self._pipeline.look_closer(job.path, job.shape)  # as Gallery.enroll does
                job.face = enrolment_face(found, largest=self._largest)
            except GalleryError as error:
                run.fail(job.path, job.name, error)
        self._write_people([job for job in readable if job.face is not None])

    def _person_name(self, name: str) -> str:
        """The name a folder gives, as stored; one that no new person may have only if it is enrolled already.

        Raises:
            InvalidName: naming what is wrong.
        """
        try:
            return new_name(name)
        except InvalidName:
            if self._store.find_person(clean_name(name)) is None:
                raise
            return clean_name(name)  # stored before today's name rules: still found, as ``enroll --add`` finds it

    def _known(self, job: _PhotoJob, holder: str | None, *, counted: bool) -> bool:
        """Whether the photo is enrolled already: skipped if as this person's, refused if as someone else's.

        ``counted``: the photo has been counted as processed already.
        """
        if holder is None:
            return False
        if holder == job.name:
            self._run.skipped.append(job.path)
            if not counted:
                self._run.advance()
            return True
        try:
            refuse_known_photo(holder, job.name)
        except PhotoAlreadyEnrolled as error:
            self._run.fail(job.path, job.name, error, done=not counted)
        return True

    def _write_people(self, jobs: list[_PhotoJob]) -> None:
        """Check faces against the gallery and each other, then write every accepted person at once."""
        run = self._run
        by_name: dict[str, list[_PhotoJob]] = {}
        for job in jobs:
            by_name.setdefault(job.name, []).append(job)
        accepted: dict[str, list[_PhotoJob]] = {}
        # New people accepted earlier in this batch: searched beside the index, which lacks them.
        pending: dict[str, PendingPerson] = {}
        # One hold of the lock for the checks and the write, as in ``enroll``.
        with self._store.write_lock():
            existing = {name: self._store.find_person(name) for name in by_name}
            question = self._question()
            resembling: dict[Path, str] = {}
            # Another process may have enrolled some of these photos since they were checked.
            known = self._store.photos_enrolled(job.sha256 for job in jobs)
            for name, person_jobs in by_name.items():
                for job in person_jobs:
                    if self._known(job, known.get(job.sha256), counted=True):
                        continue
                    others = [p for other, p in pending.items() if other != name]
                    try:
                        resembles = check_lookalike(
                            question, job.enrolled_face, existing[name], others, allow_similar=self._allow_similar
                        )
                    except LooksLikeSomeoneElse as error:
                        run.fail(job.path, name, error)
                        continue
                    if resembles is not None:
                        resembling[job.path] = resembles
                    accepted.setdefault(name, []).append(job)
                    if existing[name] is None:
                        _pend(pending, name, job.enrolled_face.embedding)
            model = self._pipeline.model_id
            entries = [
                (name, [face_record(j.enrolled_face, model, j.sha256) for j in person_jobs])
                for name, person_jobs in accepted.items()
            ]
            written = self._store.add_many(entries) if entries else []
        for (name, person_jobs), (person_id, face_ids) in zip(accepted.items(), written, strict=True):
            is_new = existing[name] is None
            for i, (job, face_id) in enumerate(zip(person_jobs, face_ids, strict=True)):
                run.enrolled.append(
                    Enrollment(
                        name, person_id, face_id, job.enrolled_face.box, is_new and i == 0, resembling.get(job.path)
                    )
                )
            resembled = sorted({resembling[j.path] for j in person_jobs if j.path in resembling})
            self._audit.put(
                "enroll",
                outcome="enrolled" if is_new else "added",
                person_name=name,
                person_id=person_id,
                model=self._pipeline.model_id,
                detail={"face_ids": list(face_ids), "source": "enroll_dir"}
                | ({"resembles": resembled} if resembled else {})
                | overrides(allow_similar=self._allow_similar, allow_different=False),
            )


def _pend(pending: dict[str, PendingPerson], name: str, embedding: np.ndarray) -> None:
    """Count a face accepted for a new person of this batch among the people later photos are checked against."""
    person = pending.get(name)
    if person is None:
        pending[name] = PendingPerson(name, -1 - len(pending), embedding[None, :].copy())
    else:
        person.embeddings = np.vstack([person.embeddings, embedding[None, :]])


@dataclass
class _PhotoJob:
    """One photo of a bulk enrolment on its way through the pipeline."""

    path: Path
    name: str
    sha256: str
    shape: tuple[int, ...] = (0, 0)
    face: Face | None = None

    @property
    def enrolled_face(self) -> Face:
        assert self.face is not None
        return self.face


@dataclass
class _FolderRun:
    """The running tally of an ``enroll_dir`` call, and its progress reports."""

    total: int
    progress: Callable[[int, int], None] | None
    done: int = 0
    enrolled: list[Enrollment] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failures: list[PhotoFailure] = field(default_factory=list)

    def advance(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def skip(self, path: Path) -> None:
        self.skipped.append(path)
        self.advance()

    def fail(self, path: Path, name: str, error: GalleryError, *, done: bool = False) -> None:
        """Record a refused photo; ``done`` when it had not been counted as processed yet."""
        self.failures.append(PhotoFailure(path, name, type(error).__name__, str(error)))
        if done:
            self.advance()
