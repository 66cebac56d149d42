"""What the Gallery API returns: small frozen dataclasses, easy to print or serialise."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gallery.decision.records import RuleRecord, VerifyRecord
from gallery.decision.rule import Outcome
from gallery.store import PersonRow as Person
from gallery.store.validation import escape_unprintable
from gallery.types import Box

__all__ = [
    "Candidate",
    "DataState",
    "DomainStatus",
    "Enrollment",
    "EnrolmentInterrupted",
    "FolderEnrollment",
    "GalleryInfo",
    "IdentifiedFace",
    "Person",
    "PhotoFailure",
    "Reembedding",
    "Removal",
    "Verification",
]


@dataclass(frozen=True)
class Candidate:
    """An enrolled identity near a probe face.

    ``distance`` is the person's score under the rule in force: the distance to the person's
    template (the mean of their enrolled descriptors), corrected for their number of photos
    (``gallery.decision.templates``); for a person with one photo, their photo's distance. Under a
    rule without a within-person variance (the plain distance rule, a learned rule stored before
    issue 12) it is the distance to their nearest enrolled photo.
    """

    name: str
    person_id: int
    distance: float


@dataclass(frozen=True)
class DataState:
    """How current the gallery data a decision was made on was.

    Attributes:
        version: the gallery's generation (it moves with every enrolment, removal or new rule).
        age_s: seconds since this host's replica was last confirmed to be the database's
            current state (0 on SQLite; on a database server it grows while the server is
            unreachable, up to the maximum staleness, after which nothing is decided).
    """

    version: int
    age_s: float


@dataclass(frozen=True)
class IdentifiedFace:
    """The answer for one face of an identify call.

    Attributes:
        box: (left, top, right, bottom) in the photo's pixels.
        candidates: nearest enrolled identities, nearest first (at most top_k).
        match: the identity the rule accepted, or None (unknown or ambiguous).
        outcome: "match", "unknown" or "ambiguous" (two identities nearly equally close).
        confidence: the rule's probability that its outcome is right, in [0, 1].
        rule: the decision rule in force, in words.
        data: how current the data decided on was.
    """

    box: Box
    candidates: tuple[Candidate, ...]
    match: Candidate | None
    outcome: Outcome
    confidence: float
    rule: str
    # Not part of the answer's equality: the same decision on the same data, however old, is the same answer.
    data: DataState | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DomainStatus:
    """Whether this gallery's people sit as far apart as the calibration's galleries' did (``gallery.decision.domain``).

    Attributes:
        spread: the median distance between the measured people's templates.
        limit: the spread below which only ``quantile`` of the calibration's galleries of this
            size fell.
        measured: how many people were measured (all, or every k-th of them: at most 50).
        quantile: that share (0.05: one calibration gallery in twenty is called crowded by chance).
        crowded: spread < limit: the faces sit closer together than the rule was learned on, and
            its stranger rate is not expected to hold here (calibrate on this site's photos).
        scale: what identify multiplies every distance by before the rule decides: above 1 when
            crowded (a match gets harder), 1 otherwise (``gallery.decision.domain``).
    """

    spread: float
    limit: float
    measured: int
    quantile: float
    crowded: bool
    scale: float = 1.0


@dataclass(frozen=True)
class Enrollment:
    """A face stored for a person.

    Attributes:
        resembles: an enrolled person (or one earlier in the same folder) whom identify would
            answer for this face at the rule's review stranger rate, though not at its own: the
            desk should check they are not one person under two names (``gallery.enrolment.check_lookalike``).
            With ``allow_similar``, also the person identify would answer outright. None: nobody.
        domain: the rule's domain check on the gallery with this face in it (``DomainStatus``;
            the desk warns when it is crowded). None: nothing to check (one person, a rule
            without a check), and in a folder's report, whose own ``domain`` says it once at the end.
    """

    name: str
    person_id: int
    face_id: int
    box: Box
    new_person: bool
    resembles: str | None = None
    domain: DomainStatus | None = None


@dataclass(frozen=True)
class PhotoFailure:
    """A photo ``enroll_dir`` could not enrol.

    Attributes:
        photo: the photo's path, as found (a file name that is not UTF-8 keeps its bytes).
        name: the name the folder gives it, as found.
        error: the error's class name (``NoFaceFound``, ``PoorQuality``, ``LooksLikeSomeoneElse``, ...).
        reason: the error's message.
    """

    photo: Path
    name: str
    error: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """As JSON, in printable text: see ``shown``."""
        return {"photo": shown(self.photo), "name": shown(self.name), "error": self.error, "reason": shown(self.reason)}

    def describe(self) -> str:
        """One printable line: ``refused PHOTO (NAME): ERROR: REASON``."""
        return f"refused {shown(self.photo)} ({shown(self.name)}): {self.error}: {shown(self.reason)}"


@dataclass(frozen=True)
class FolderEnrollment:
    """What ``enroll_dir`` did with a folder of photos.

    Attributes:
        photos: photos found in the folder.
        enrolled: one entry per face stored (``new_person`` on a person's first face).
        skipped: photos already in the gallery (by SHA-256 of the file), left alone.
        failures: photos that could not be enrolled, with the reason.
        domain: the rule's domain check on the gallery after the folder (``Enrollment.domain``).
    """

    photos: int
    enrolled: tuple[Enrollment, ...]
    skipped: tuple[Path, ...]
    failures: tuple[PhotoFailure, ...]
    domain: DomainStatus | None = None

    def to_dict(self) -> dict[str, Any]:
        """As JSON; paths and refused names in printable text (see ``shown``)."""
        return {
            "photos": self.photos,
            "enrolled": [asdict(e) for e in self.enrolled],
            "skipped": [shown(path) for path in self.skipped],
            "failures": [failure.to_dict() for failure in self.failures],
            "domain": None if self.domain is None else asdict(self.domain),
        }


def shown(text: str | Path) -> str:
    """A path or name from outside, as text that always prints and reads as what it is.

    Bytes of a file name that are not UTF-8 show as ``\\xe9`` (``os.fsdecode`` keeps them as
    surrogate escapes, which no terminal or JSON reader accepts), and invisible or control
    characters as ``\\u202e``, so a line is never cut, reordered or hidden by them.
    """
    return escape_unprintable(os.fsdecode(text))


class EnrolmentInterrupted(KeyboardInterrupt):
    """``enroll_dir`` was interrupted (Ctrl-C); ``report`` says what it had done by then.

    A ``KeyboardInterrupt``, so a caller that does not look for it stops as on any Ctrl-C.
    Every person in ``report.enrolled`` is committed, whole (a batch of people is one
    transaction); photos neither enrolled, skipped nor refused were not processed, and running
    the same folder again enrols them (photos already in the gallery are skipped).
    """

    def __init__(self, report: FolderEnrollment) -> None:
        done = len(report.enrolled) + len(report.skipped) + len(report.failures)
        super().__init__(f"enroll_dir interrupted after {done} of {report.photos} photo(s)")
        self.report = report


@dataclass(frozen=True)
class Verification:
    """A 1:1 check of a photo against one enrolled person.

    Attributes:
        verified: the face is within ``threshold`` of the person's nearest enrolled face.
    """

    name: str
    person_id: int
    verified: bool
    distance: float
    threshold: float
    box: Box


@dataclass(frozen=True)
class Removal:
    """A person removed from the gallery, and whether their biometric data is erased from its files.

    Attributes:
        pending: what still holds copies of the removed embeddings or chips; empty when the
            erasure is complete. ``"index file"``: ``faces.faiss`` (or a slice file) could be
            neither rewritten nor deleted (a read-only or immutable folder); ``"database"``:
            ``gallery.db`` and its WAL keep the rows' old pages until a reader in the middle of
            a read lets the WAL be emptied (on PostgreSQL: the tables could not be vacuumed);
            ``"host NAME (ID)"``: a host sharing the database whose replica had not applied the
            removal after a few seconds (it is offline; it applies it when it reconnects). The
            removal itself is committed either way: the person is gone from every search. The next
            open of the gallery, or its next write, by any process, finishes the local erasure.
    """

    name: str
    person_id: int
    faces_removed: int
    pending: tuple[str, ...] = ()

    @property
    def erasure_complete(self) -> bool:
        """No copy of the removed faces is left in the gallery's files."""
        return not self.pending

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pending": list(self.pending), "erasure_complete": self.erasure_complete}


@dataclass(frozen=True)
class Reembedding:
    """What ``reembed`` did.

    Attributes:
        reembedded: faces re-embedded (0 when every face was of ``model`` already).
        model: the model every face is now embedded by: the gallery's.
    """

    reembedded: int
    model: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GalleryInfo:
    """Where a gallery lives, what it holds and which rules decide.

    Attributes:
        rule: the identify rule in force and its provenance (``rule.provenance.source`` is
            ``"calibrated"`` or ``"shipped default"``); None when the stored one cannot be
            trusted (``rule_error`` says why; identify refuses until it is replaced).
        rule_description: that rule, in words (None with it).
        rule_fingerprint: what the audit log records of the rule each identify used (None with it).
        verify_rule: the 1:1 distance threshold in force and its provenance; None when the
            stored one cannot be trusted (verify and enrolment refuse until it is replaced).
        database: where the data is: the SQLite file, or the PostgreSQL URL without its password.
        pending_erasure: what a removal could not erase yet (``Removal.pending``'s local part: ``"index
            file"``, ``"database"``); the next open or write finishes it.
        domain: the identify rule's domain check on this gallery (``DomainStatus``); None when
            there is nothing to check: one person or none, or a rule without a check.
        rule_error: None when both rules in force can be read and trusted; else the
            ``RuleInvalid`` message of each that cannot (``"; "`` between them), naming the
            setting, the problem and the way back.
    """

    home: Path
    people: int
    faces: int
    model: str
    rule: RuleRecord | None
    rule_description: str | None
    rule_fingerprint: str | None
    verify_rule: VerifyRecord | None
    schema_revision: str | None
    rule_error: str | None = None
    database: str = ""  # the SQLite file, or the server's URL without its password
    pending_erasure: tuple[str, ...] = ()  # what a removal could not erase yet (``Removal.pending``)
    domain: DomainStatus | None = None

    @property
    def outgrown_calibration(self) -> bool:
        """More people are enrolled than the rule was calibrated for: it is stricter than its target."""
        return self.rule is not None and self.people > self.rule.provenance.gallery_size

    def to_dict(self) -> dict[str, Any]:
        """``info --json``: the rules as stored ({rule, provenance}, {threshold, provenance}; null if unreadable)."""
        return {
            "home": self.home,
            "people": self.people,
            "faces": self.faces,
            "model": self.model,
            "rule": self.rule.to_dict() if self.rule else None,
            "rule_description": self.rule_description,
            "rule_fingerprint": self.rule_fingerprint,
            "verify_rule": self.verify_rule.to_dict() if self.verify_rule else None,
            "rule_error": self.rule_error,
            "schema_revision": self.schema_revision,
            "database": self.database,
            "pending_erasure": list(self.pending_erasure),
            "domain": None if self.domain is None else asdict(self.domain),
        }
