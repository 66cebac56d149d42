"""The enrolment policy: which face of a photo may be enrolled, whether it is someone else (identify's own
question, asked before the write) or resembles someone enough to say so, whether an added photo is the person,
what is stored of it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gallery.cohorts import CohortDistances, scored_variance
from gallery.decision import (
    COHORT_SIZE,
    Decision,
    DecisionRule,
    Evidence,
    Outcome,
    cohort_from_searches,
    within_verify,
)
from gallery.decision.domain import in_domain_units
from gallery.decision.normalised import NormalisedDistance
from gallery.decision.templates import template_distances
from gallery.errors import (
    AlreadyEnrolled,
    ExternalIdMismatch,
    ImageError,
    LooksLikeSomeoneElse,
    MultipleFaces,
    NoFaceFound,
    NotTheSamePerson,
    PersonNotFound,
    PhotoAlreadyEnrolled,
    PoorQuality,
)
from gallery.identifying import EVIDENCE_DEPTH
from gallery.identifying import evidence as identify_evidence
from gallery.results import Candidate
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


@dataclass
class PendingPerson:
    """A new person accepted earlier in the same folder (``enroll_dir``), not in the gallery's index yet.

    ``key``: negative, so never a stored person id; ``embeddings``: their accepted faces, (n, 128).
    """

    name: str
    key: int
    embeddings: np.ndarray


@dataclass(frozen=True)
class IdentifyAnswer:
    """What identify would answer for a face: the outcome, who (for ``ambiguous``, the nearer two), how sure."""

    outcome: Outcome
    names: tuple[str, ...]  # match: the person; ambiguous: the nearer two; unknown: none
    confidence: float
    in_folder: bool = False  # the person named was accepted earlier in the same folder

    def says(self) -> str:
        """The answer in a desk operator's words."""
        if self.outcome == "match":
            return f"identify would answer {self.names[0]!r} for this face (confidence {self.confidence:.2f})"
        if self.outcome == "ambiguous":
            first, second = self.names
            return f"identify would answer 'ambiguous' between {first!r} and {second!r} for this face"
        return "identify would answer 'unknown' for this face: it looks like nobody enrolled"


class IdentifyQuestion:
    """identify's decision for one face, asked by the enrolment checks before a write.

    The same search, evidence and scoring as identify (``gallery.identifying``: each person at
    their corrected template or nearest photo, as the rule reads them, with cohort distances), the
    rule in force and the gallery's size, among the enrolled people other than the one a photo is
    being added to, plus people accepted earlier in the same folder (``pending``; their cohort
    distances computed here from their photos, since they are not indexed yet). ``answers`` also
    decides under the rule's review table (``NormalisedDistance.for_review``), on the same evidence.

    Args:
        store: the gallery's.
        people: the gallery's templates and cohort distances (``Gallery``'s, shared with identify).
        rule: the identify rule in force.
        verify_threshold: verify's threshold in force: identify's match must pass it too (``within_verify``).
        depth: identities searched per face (identify's ``EVIDENCE_DEPTH``).
    """

    def __init__(
        self,
        store: Store,
        people: CohortDistances,
        rule: DecisionRule,
        verify_threshold: float,
        *,
        depth: int = EVIDENCE_DEPTH,
    ) -> None:
        self._store = store
        self._people = people
        self.rule = rule  # read by the enrolment's domain check too
        self.verify_threshold = verify_threshold  # read by refuse_not_the_person too
        self._depth = depth
        self._variance = scored_variance(rule)
        self._enrolled = store.people_count()
        self._review = rule.for_review() if isinstance(rule, NormalisedDistance) else None
        domain = people.domain(rule)  # identify's scale in a crowded gallery (the stored people's)
        self._scale = 1.0 if domain is None else domain.scale

    def answer(
        self,
        embedding: np.ndarray,
        *,
        excluding: PersonRow | None = None,
        pending: Sequence[PendingPerson] = (),
    ) -> IdentifyAnswer:
        """What identify would answer for ``embedding`` were ``excluding`` not enrolled (``pending`` enrolled)."""
        return self.answers(embedding, excluding=excluding, pending=pending)[0]

    def answers(
        self,
        embedding: np.ndarray,
        *,
        excluding: PersonRow | None = None,
        pending: Sequence[PendingPerson] = (),
    ) -> tuple[IdentifyAnswer, IdentifyAnswer | None]:
        """``answer``, and what identify would answer under the rule's review table (None: the rule has none)."""
        ranked, names, size = self._evidence(embedding, excluding, pending)
        scaled = in_domain_units(ranked, self._scale)
        decision = self.rule.decide(scaled, size) if ranked else None
        if decision is not None and decision.index is not None:  # identify's own check (``within_verify``)
            chosen = ranked[decision.index].person_id
            nearest = (
                self._people.templates.nearest_photo(chosen, embedding)
                if chosen >= 0
                else float(np.linalg.norm(_folder_person(pending, chosen).embeddings - embedding, axis=1).min())
            )
            decision = within_verify(decision, nearest, self.verify_threshold)
        review = None if self._review is None or not ranked else self._review.decide(scaled, size)
        return _answer(decision, ranked, names), None if self._review is None else _answer(review, ranked, names)

    def _evidence(
        self, embedding: np.ndarray, excluding: PersonRow | None, pending: Sequence[PendingPerson]
    ) -> tuple[list[Evidence], dict[int, str], int]:
        """identify's evidence for the face (nearest first), the names of the people in it, the gallery's size."""
        excluded = None if excluding is None else excluding.id
        (hits,) = self._people.templates.search(embedding[None, :], self._depth + 1, self._variance)
        stored = tuple(Candidate(h.name, h.person_id, h.distance) for h in hits if h.person_id != excluded)
        evidence = identify_evidence(self._people, stored[: self._depth], self.rule)
        names = {c.person_id: c.name for c in stored}
        folder: list[tuple[float, PendingPerson]] = []
        for person in pending:
            folder.append((self._score(person, embedding), person))
            names[person.key] = person.name
        # Merge by distance; the order within each list is kept, so a stored person in the nearest
        # two was in identify's nearest two and carries its cohort distance.
        merged = sorted(
            [(e.distance, e) for e in evidence]
            + [(d, Evidence(p.key, d, None)) for d, p in sorted(folder, key=lambda item: item[0])],
            key=lambda item: item[0],
        )
        ranked = [e for _, e in merged[: self._depth]]
        if self.rule.uses_cohort:
            ranked = [
                Evidence(e.person_id, e.distance, _pending_cohort(self._store, e.person_id, pending))
                if e.person_id < 0 and rank < 2
                else e
                for rank, e in enumerate(ranked)
            ]
        return ranked, names, self._enrolled - (excluded is not None) + len(pending)

    def _score(self, person: PendingPerson, embedding: np.ndarray) -> float:
        """A folder person's distance as identify will score them once stored (template or nearest photo)."""
        vectors = person.embeddings.astype(np.float64)
        if self._variance is None:
            return float(np.linalg.norm(vectors - embedding, axis=1).min())
        mean = vectors.mean(axis=0)[None, :]
        return float(template_distances(embedding, mean, np.array([len(vectors)]), float(self._variance))[0])


def _answer(decision: Decision | None, ranked: list[Evidence], names: dict[int, str]) -> IdentifyAnswer:
    """A rule's decision on the ranked evidence in a desk operator's terms (None: nobody to decide on)."""
    if decision is None:
        return IdentifyAnswer("unknown", (), 1.0)
    if decision.outcome == "match" and decision.index is not None:
        chosen = ranked[decision.index]
        return IdentifyAnswer("match", (names[chosen.person_id],), decision.confidence, chosen.person_id < 0)
    if decision.outcome == "ambiguous" and len(ranked) >= 2:
        pair = (names[ranked[0].person_id], names[ranked[1].person_id])
        return IdentifyAnswer("ambiguous", pair, decision.confidence, ranked[0].person_id < 0)
    return IdentifyAnswer("unknown", (), decision.confidence)


def _folder_person(pending: Sequence[PendingPerson], key: int) -> PendingPerson:
    (person,) = [p for p in pending if p.key == key]
    return person


def _pending_cohort(store: Store, key: int, pending: Sequence[PendingPerson]) -> float:
    """A folder person's cohort distance (``cohort_from_searches``) among the gallery and the folder's others."""
    person = _folder_person(pending, key)
    searches = store.search(person.embeddings, k=COHORT_SIZE + 1)
    hits = [[(h.person_id, h.distance) for h in face_hits] for face_hits in searches]
    for other in pending:
        if other.key != key:
            gaps = np.linalg.norm(other.embeddings[:, None].astype(np.float64) - person.embeddings[None], axis=2)
            hits.append([(other.key, float(gaps.min()))])
    return cohort_from_searches(key, hits)


def check_lookalike(
    question: IdentifyQuestion,
    face: Face,
    person: PersonRow | None,
    pending: Sequence[PendingPerson] = (),
    *,
    allow_similar: bool = False,
) -> str | None:
    """Refuse a face identify would already answer with someone else for; else whom it resembles, if anyone.

    The refusal is identify's own question (1:N, the rule in force at this size). A face that
    passes it but that the rule's review table would match (``Review``: a higher stranger rate)
    is enrolled, and its enrolment names that person: most duplicates the refusal misses land
    there, and so do some genuine newcomers, which is why it warns rather than refuses.

    Args:
        person: the person a photo is being added to (not "someone else").
        pending: people accepted earlier in the same folder, other than the one this photo enrols.
        allow_similar: do not refuse; a face identify would match is then reported as resembling.

    Returns:
        The enrolled person the face resembles (the nearer of an ambiguous two), or None.

    Raises:
        LooksLikeSomeoneElse: naming the enrolled person identify would answer (the nearer of an
        ambiguous two), and saying so in words.
    """
    answer, review = question.answers(face.embedding, excluding=person, pending=pending)
    if answer.outcome in ("match", "ambiguous"):
        if allow_similar:
            return answer.names[0]
        where = " (a person earlier in the same folder)" if answer.in_folder else ""
        raise LooksLikeSomeoneElse(
            f"{answer.says()}{where}; pass allow_similar=True (--allow-similar) if they really are different people",
            other=answer.names[0],
        )
    if review is not None and review.outcome in ("match", "ambiguous"):
        return review.names[0]
    return None


def refuse_not_the_person(store: Store, question: IdentifyQuestion, face: Face, person: PersonRow) -> None:
    """Refuse a photo added to ``person`` whose face is not them by verify's threshold (the question's; 1:1).

    Raises:
        NotTheSamePerson: with the distance, the threshold, and whom identify would answer instead.
    """
    threshold = question.verify_threshold
    _, enrolled = store.embeddings_for(person.id)
    distance = float(np.min(np.linalg.norm(enrolled - face.embedding, axis=1))) if len(enrolled) else np.inf
    if distance <= threshold:
        return
    answer = question.answer(face.embedding, excluding=person)
    raise NotTheSamePerson(
        f"this face is not {person.name!r}: distance {distance:.3f} to their nearest enrolled photo, verify "
        f"accepts up to {threshold:.3f}; {answer.says()}; pass allow_different=True (--allow-different) "
        "if it really is them",
        other=answer.names[0] if answer.names else None,
    )


def overrides(*, allow_similar: bool, allow_different: bool) -> dict[str, list[str]]:
    """The checks an enrolment was told to skip, for its audit entry (nothing when none)."""
    skipped = [flag for flag, on in (("allow_similar", allow_similar), ("allow_different", allow_different)) if on]
    return {"overrides": skipped} if skipped else {}


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
