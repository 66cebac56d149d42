"""The Gallery facade: enroll, identify, verify and remove people; calibrate and evaluate its rules.

The facade layer is the only place that joins the face pipeline (gallery.vision) and storage
(gallery.store), and so the keeper of their consistency: a face is embedded before any write
starts, and each write is one store call (database commit, then index save, under the store's
cross-process lock), so bad input or a crash leaves no half-enrolled person. This module is
its entry point; its helpers are ``enrolment`` (the enrolment policy), ``bulk`` (folder
enrolment), ``cohorts`` (what learned rules read of the gallery), ``rules_in_force`` (the
stored or shipped rules), ``reembedding`` (one model per search), ``rule_learning`` (the
calibrate and evaluate methods) over ``calibrating`` (labelled photos to rules and reports),
``audit`` (the log writer) and ``runtime`` (home and threads).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gallery.arguments import text, whole_number
from gallery.audit import AuditPolicy, AuditWriter, audit_policy, identify_detail, rule_reference
from gallery.bulk import FolderEnrolment
from gallery.cohorts import CohortDistances
from gallery.decision import DecisionRule
from gallery.enrolment import (
    IdentifyQuestion,
    check_lookalike,
    enrolment_face,
    enrolment_names,
    face_record,
    overrides,
    refuse_known_photo,
    refuse_not_the_person,
    refuse_person,
)
from gallery.errors import NoFaceFound, NotLive, RuleInvalid
from gallery.hosting import Hosting
from gallery.identifying import decide_faces
from gallery.reembedding import OneModel
from gallery.reporting import Reporting
from gallery.results import (
    DataState,
    Enrollment,
    FolderEnrollment,
    IdentifiedFace,
    Person,
    Reembedding,
    Removal,
    Verification,
)
from gallery.rule_learning import RuleLearning
from gallery.rules_in_force import RulesInForce
from gallery.runtime import default_home
from gallery.store import DEFAULT_MAX_STALENESS_S, PersonNotFound, Store
from gallery.vision.image import ImageInput, load_rgb, photo_sha256, read_photo
from gallery.vision.pipeline import MAX_UPSAMPLE, Face, FacePipelineProtocol, default_pipeline

# Candidates a caller may ask for per face (the CLI's --top-k range): the search allocates k per face.
MAX_TOP_K = 100

LivenessCheck = Callable[[np.ndarray, Face], bool]
"""``check(photo, face) -> bool``: is this face a live person (not a print, screen or mask)?

Called with the whole photo (HxWx3 uint8 RGB, as decoded) and the detected face; False
vetoes the face. An exception propagates (the call fails closed).
"""


class Gallery(RuleLearning, Reporting):
    """A face gallery stored in one folder (``home``).

    Safe to share between threads; several processes may open the same home (writes
    are serialised by a file lock, reads never wait for them). Use as a context manager
    or call ``close()`` so pending audit entries are written.

    Args:
        home: the gallery folder; defaults to ``default_home()``. Created if missing.
        pipeline: the face pipeline to use (tests inject one); defaults to the process-wide one.
        liveness: an optional anti-spoofing check consulted by ``identify`` and ``verify``
            for every face before it is searched (see ``LivenessCheck``). gallery has none
            of its own: without one, a printed photo of an enrolled person is recognised.
        audit: what happens when an audit event cannot be written (``gallery.audit.AuditWriter``):
            ``"best_effort"`` (default) answers, logs one warning line, holds the events in
            memory and retries them, and counts those lost (``audit_status``); ``"required"``
            writes each event before the call returns and raises ``AuditNotWritten`` if it
            cannot (identify and verify then give no answer: fail closed).
        database_url: None (default) for ``gallery.db`` in ``home``; ``postgresql://user@host/db``
            for a database shared by the hosts of a site (``home`` then keeps this host's index
            replica). See the README's "Many doors, one gallery".
        max_staleness_s: (database server) how long identify answers from this host's replica
            while the database is unreachable before it refuses with ``DataTooStale``.

    Raises:
        SchemaTooNew: the gallery was written by a newer version of gallery.
        NotAGallery, StoreBusy, StorageFailure: the folder cannot be opened as a gallery.
        InvalidDatabaseUrl, DatabaseLoginRefused, DatabaseUnavailable: the database server's URL
            is wrong, it refused the login, or it cannot be reached.
        InvalidArgument: ``audit`` is not one of the policies.
    """

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        *,
        pipeline: FacePipelineProtocol | None = None,
        liveness: LivenessCheck | None = None,
        audit: AuditPolicy = "best_effort",
        database_url: str | None = None,
        max_staleness_s: float = DEFAULT_MAX_STALENESS_S,
    ) -> None:
        audit = audit_policy(audit)
        self._pipeline = pipeline or default_pipeline()
        self._liveness = liveness
        # Absolute and resolved: what `info` shows and errors name must not depend on the working directory.
        self.home = (Path(home) if home is not None else default_home()).resolve()
        self._store = Store.open(
            self.home, model=self._pipeline.model_id, database_url=database_url, max_staleness_s=max_staleness_s
        )
        try:
            self._one_model = OneModel(self._store, self._pipeline.model_id)
        except BaseException:
            self._store.close()
            raise
        self._cohorts = CohortDistances(self._store)
        self._rules = RulesInForce(self._store)
        self._audit = AuditWriter(self._store, audit)
        self.hosting = Hosting(self._store, self._audit)  # API keys, data version, readiness: for services

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Write pending audit entries (one last try; see ``audit_status``) and release the database."""
        try:
            self._audit.close()
        finally:
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
        allow_different: bool = False,
        external_id: str | None = None,
    ) -> Enrollment:
        """Enrol ``name`` from one photo holding exactly one face.

        Args:
            name: the person's name, unique in the gallery.
            image: a path, bytes, a PIL image or an HxWx3 uint8 RGB array.
            add: add this photo to a person already enrolled (otherwise their name is refused).
            largest: take the largest face when the photo holds several.
            allow_similar: enrol even if identify would already answer another enrolled person
                for the face (the lookalike check, ``gallery.enrolment.check_lookalike``); the
                enrolment then names them in ``resembles``.
            allow_different: with ``add``, add the photo even if its face is not the person's by
                the verify threshold in force (``NotTheSamePerson``); audited.
            external_id: the host system's id for a new person; with ``add``, it must be the
                one the person carries (adding a photo never changes it).

        Returns:
            The face stored; ``resembles`` names an enrolled person identify would answer for it
            at the rule's review stranger rate (enrolled anyway: check they are different people);
            ``domain`` says whether the gallery's faces now crowd closer than the rule was learned on.

        Raises:
            InvalidName: the name (or external id) cannot be a person's (``gallery.store.validation.new_name``).
            ImageError: the photo cannot be used. NoFaceFound, MultipleFaces, PoorQuality.
            AlreadyEnrolled, PersonNotFound (``add`` for an unknown name), ExternalIdMismatch,
            PhotoAlreadyEnrolled (this very file, naming whose it is), LooksLikeSomeoneElse,
            NotTheSamePerson (``add`` of a face that is not theirs).
            RuleInvalid: a check needs a rule in force that cannot be trusted (nothing is enrolled).
            ModelMismatch: the gallery holds faces of another model; run ``reembed`` first.
        """
        self._one_model.require()
        name, external_id = enrolment_names(name, external_id, add=add)
        photo = read_photo(image) if isinstance(image, (str, os.PathLike)) else image
        face = self._single_face(photo, largest=largest)
        sha256 = photo_sha256(photo)
        record = face_record(face, self._pipeline.model_id, sha256)
        # The checks and the write hold one lock, so another process cannot enrol the same
        # name, photo or face in between.
        with self._store.write_lock():
            existing = self._store.find_person(name)
            refuse_person(existing, name, add=add, external_id=external_id)
            refuse_known_photo(self._store.photos_enrolled([sha256]).get(sha256), name)
            question = self._question()
            if existing is not None and not allow_different:
                refuse_not_the_person(self._store, question, face, existing)
            resembles = check_lookalike(question, face, existing, allow_similar=allow_similar)
            if existing is None:
                person_id, face_id = self._store.add_person_with_face(name, record, external_id=external_id)
            else:
                person_id, face_id = existing.id, self._store.add_face(existing.id, record)
        person = self._store.person(person_id)
        assert person is not None
        self._audit.put(
            "enroll",
            outcome="added" if existing else "enrolled",
            person_name=person.name,
            person_id=person_id,
            model=self._pipeline.model_id,
            detail={"face_id": face_id}
            | ({} if resembles is None else {"resembles": resembles})
            | overrides(allow_similar=allow_similar, allow_different=allow_different and add),
        )
        return Enrollment(
            person.name,
            person_id,
            face_id,
            face.box,
            new_person=existing is None,
            resembles=resembles,
            domain=self._cohorts.domain(question.rule),
        )

    def enroll_dir(
        self,
        folder: str | os.PathLike,
        *,
        largest: bool = False,
        allow_similar: bool = False,
        batch_photos: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> FolderEnrollment:
        """Enrol everyone in a folder: one sub-folder per person, or one photo per person named after the file.

        The enrolment policy is ``enroll``'s (one face or the largest, the quality gate, the
        lookalike check, also against people earlier in the same folder), except that photos
        of a name already enrolled are added to that person. A photo enrolled already (same file
        SHA-256) is skipped if it is this person's (so an interrupted run is simply started again)
        and refused if it is someone else's. Faces are embedded in batches across photos, and
        written in batches of whole people: each person's photos are stored together or not at all.

        Args:
            folder: the folder to enrol (layouts: ``gallery.folders``).
            largest: take the largest face of photos holding several.
            allow_similar: enrol faces even if they match another person.
            batch_photos: photos per write (rounded up to whole people); bounds memory and the
                work an interruption loses.
            progress: called as ``progress(photos_done, photos_total)`` as photos are processed.

        Returns:
            What was enrolled, skipped and refused (with reasons), and the domain check after it;
            a bad photo never stops the run.

        Raises:
            ImageNotFound: ``folder`` is not a folder. StoreError: the gallery itself failed.
            InvalidArgument: ``batch_photos`` is not a whole number of at least 1.
        """
        batch_photos = whole_number("batch_photos", batch_photos, minimum=1)
        self._one_model.require()
        bulk = FolderEnrolment(
            self._store,
            self._pipeline,
            self._audit,
            largest=largest,
            allow_similar=allow_similar,
            question=self._question,
            progress=progress,
        )
        report = bulk.enrol(folder, batch_photos=batch_photos)
        return dataclasses.replace(report, domain=self._cohorts.domain(self.rule()))

    def remove(self, name: str) -> Removal:
        """Erase a person: their rows, embeddings and chips, from database, WAL and index.

        Returns:
            The removal; ``pending`` names the files that still hold copies of the faces when
            the erasure could not finish (``Removal.erasure_complete`` is then False).

        Raises:
            PersonNotFound: nobody is enrolled under ``name``.
            GalleryVanished: the gallery's folder was deleted or moved while open.
        """
        removed = self._store.remove_person(name)
        detail: dict[str, object] = {"faces": len(removed.face_ids)}
        if removed.pending:
            detail["erasure_pending"] = list(removed.pending)
        self._audit.put(
            "remove", outcome="removed", person_name=removed.name, person_id=removed.person_id, detail=detail
        )
        return Removal(removed.name, removed.person_id, len(removed.face_ids), pending=removed.pending)

    def reembed(self, *, batch_size: int = 64) -> Reembedding:
        """Re-embed the faces stored by another (older) model with this gallery's model, from their chips.

        Each face keeps its person, box and chip and gets a new embedding (and a new face id).
        Batches are written as they are done, so an interrupted run is finished by running it
        again. Until every face is re-embedded, ``enroll``, ``identify`` and ``verify`` refuse.

        Returns:
            How many faces were re-embedded (0 when every face is of this model already), and
            the model that embedded them.

        Raises:
            InvalidArgument: ``batch_size`` is not a whole number of at least 1.
        """
        batch_size = whole_number("batch_size", batch_size, minimum=1)
        count, models = self._one_model.reembed(self._pipeline.embedder, batch_size=batch_size)
        if count:
            self._audit.put(
                "reembed",
                outcome="reembedded",
                model=self._pipeline.model_id,
                detail={"faces": count, "from_models": models},
            )
        return Reembedding(count, self._pipeline.model_id)

    # ---- reads -----------------------------------------------------------------------

    def identify(self, image: ImageInput, *, top_k: int = 5, upsample: int = 0) -> list[IdentifiedFace]:
        """Who is in the photo: one result per face, largest face first.

        Args:
            image: a path, bytes, a PIL image or an HxWx3 uint8 RGB array.
            top_k: candidates reported per face, 1 to 100.
            upsample: detector upsampling steps, 0 to 3 (finds smaller faces, about 4x slower a step).

        Raises:
            ImageError: the photo cannot be used. (A photo without faces gives an empty list.)
            ModelMismatch: the gallery holds faces of another model; run ``reembed`` first.
            InvalidArgument: ``top_k`` or ``upsample`` is not a whole number in its range.

        A face the liveness check (if any) vetoes is not searched: its outcome is ``not_live``.
        """
        top_k = whole_number("top_k", top_k, minimum=1, maximum=MAX_TOP_K)
        upsample = whole_number("upsample", upsample, minimum=0, maximum=MAX_UPSAMPLE)
        self._one_model.require()
        rgb = load_rgb(image)
        found = self._pipeline.faces(rgb, upsample=upsample)
        if not found:
            self._audit.put("identify", outcome="no_face")
            return []
        try:
            rule = self.rule()
            verify_threshold = self.verify_threshold()  # a match must pass it too (``within_verify``)
        except RuleInvalid as error:
            self._audit_refusal("identify", error)
            raise
        live = [self._is_live(rgb, face) for face in found]
        domain = self._cohorts.domain(rule)  # kept until the faces change; the audit records what was used
        scale = 1.0 if domain is None else domain.scale
        results = decide_faces(
            self._cohorts,
            rule,
            found,
            live,
            top_k=top_k,
            gallery_size=self._store.people_count(),
            verify_threshold=verify_threshold,
            scale=scale,
        )
        data = DataState(*self._store.data_state())
        results = [dataclasses.replace(r, data=data) for r in results]
        self._audit.put(
            "identify",
            outcome=",".join(r.outcome for r in results),
            person_name=results[0].match.name if results[0].match else None,
            person_id=results[0].match.person_id if results[0].match else None,
            model=self._pipeline.model_id,
            rule=rule_reference(rule),
            detail=identify_detail(results, scale),
        )
        return results

    def verify(self, name: str, image: ImageInput) -> Verification:
        """Is the largest face in the photo the enrolled person ``name``?

        Raises:
            PersonNotFound, NoFaceFound, ImageError.
            NotLive: the liveness check vetoed the face.
            ModelMismatch: the gallery holds faces of another model; run ``reembed`` first.
            InvalidArgument: ``name`` is not a string.
        """
        name = text("name", name)
        self._one_model.require()
        person = self._store.find_person(name)
        if person is None:
            raise PersonNotFound(f"no person named {name!r} is enrolled")
        rgb = load_rgb(image)
        face = self._largest_face(rgb)
        if not self._is_live(rgb, face):
            self._audit.put(
                "verify",
                outcome="not_live",
                person_name=person.name,
                person_id=person.id,
                model=self._pipeline.model_id,
            )
            raise NotLive("the liveness check rejected the face (a photo, a screen or a mask?)")
        _, embeddings = self._store.embeddings_for(person.id)
        distance = float(np.min(np.linalg.norm(embeddings - face.embedding, axis=1)))
        try:
            threshold = self.verify_threshold()
        except RuleInvalid as error:
            self._audit_refusal("verify", error, person_name=person.name, person_id=person.id)
            raise
        verified = distance <= threshold
        self._audit.put(
            "verify",
            outcome="verified" if verified else "rejected",
            person_name=person.name,
            person_id=person.id,
            model=self._pipeline.model_id,
            rule={"threshold": threshold},
            detail={"distance": distance},
        )
        return Verification(person.name, person.id, verified, distance, threshold, face.box)

    def people(self) -> list[Person]:
        """Everyone enrolled, by name."""
        return self._store.people()

    def rule(self) -> DecisionRule:
        """The identify rule in force: the one ``calibrate`` stored in the gallery, else the shipped default.

        Raises:
            RuleInvalid: the stored rule cannot be trusted (identify refuses to decide with it).
        """
        return self._rules.identify_rule()

    def verify_threshold(self) -> float:
        """The 1:1 distance threshold in force: the one ``calibrate`` stored, else the shipped default.

        Raises:
            RuleInvalid: the stored threshold cannot be trusted (verify and enroll refuse).
        """
        return self._rules.verify_threshold()

    # ---- helpers ---------------------------------------------------------------------

    def _question(self) -> IdentifyQuestion:
        """identify's decision as the enrolment checks ask it: the rule in force, the gallery's size now."""
        return IdentifyQuestion(self._store, self._cohorts, self.rule(), self.verify_threshold())

    def _audit_refusal(self, action: str, error: RuleInvalid, **person: object) -> None:
        """A door asked and the gallery refused to decide: that is audited too (outcome ``refused``)."""
        self._audit.put(
            action,
            outcome="refused",
            model=self._pipeline.model_id,
            detail={"error": type(error).__name__, "setting": error.setting, "problem": error.problem},
            **person,
        )

    def _is_live(self, rgb: np.ndarray, face: Face) -> bool:
        return self._liveness is None or bool(self._liveness(rgb, face))

    def _single_face(self, image: ImageInput, *, largest: bool) -> Face:
        rgb = load_rgb(image)
        found = self._pipeline.faces(rgb) or self._pipeline.look_closer(rgb, rgb.shape)
        return enrolment_face(found, largest=largest)

    def _largest_face(self, image: ImageInput) -> Face:
        found = self._pipeline.faces(image)
        if not found:
            raise NoFaceFound("no face found in the photo")
        return found[0]
