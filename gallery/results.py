"""What the Gallery API returns: small frozen dataclasses, easy to print or serialise."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gallery.decision.records import RuleRecord, VerifyRecord
from gallery.decision.rule import Outcome
from gallery.store import PersonRow as Person
from gallery.types import Box

__all__ = [
    "Candidate",
    "Enrollment",
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
    """An enrolled identity near a probe face."""

    name: str
    person_id: int
    distance: float


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
    """

    box: Box
    candidates: tuple[Candidate, ...]
    match: Candidate | None
    outcome: Outcome
    confidence: float
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Enrollment:
    """A face stored for a person."""

    name: str
    person_id: int
    face_id: int
    box: Box
    new_person: bool


@dataclass(frozen=True)
class PhotoFailure:
    """A photo ``enroll_dir`` could not enrol.

    Attributes:
        error: the error's class name (``NoFaceFound``, ``PoorQuality``, ``LooksLikeSomeoneElse``, ...).
        reason: the error's message.
    """

    photo: Path
    name: str
    error: str
    reason: str


@dataclass(frozen=True)
class FolderEnrollment:
    """What ``enroll_dir`` did with a folder of photos.

    Attributes:
        photos: photos found in the folder.
        enrolled: one entry per face stored (``new_person`` on a person's first face).
        skipped: photos already in the gallery (by SHA-256 of the file), left alone.
        failures: photos that could not be enrolled, with the reason.
    """

    photos: int
    enrolled: tuple[Enrollment, ...]
    skipped: tuple[Path, ...]
    failures: tuple[PhotoFailure, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
            a read lets the WAL be emptied. The removal itself is committed either way: the
            person is gone from every search. The next open of the gallery, or its next write,
            by any process, finishes the erasure.
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
            ``"calibrated"`` or ``"shipped default"``).
        rule_description: that rule, in words.
        rule_fingerprint: what the audit log records of the rule each identify used.
        verify_rule: the 1:1 distance threshold in force and its provenance.
    """

    home: Path
    people: int
    faces: int
    model: str
    rule: RuleRecord
    rule_description: str
    rule_fingerprint: str
    verify_rule: VerifyRecord
    schema_revision: str | None

    @property
    def outgrown_calibration(self) -> bool:
        """More people are enrolled than the rule was calibrated for: it is stricter than its target."""
        return self.people > self.rule.provenance.gallery_size

    def to_dict(self) -> dict[str, Any]:
        """``info --json``: the rules as stored (``{rule, provenance}`` and ``{threshold, provenance}``)."""
        return {
            "home": self.home,
            "people": self.people,
            "faces": self.faces,
            "model": self.model,
            "rule": self.rule.to_dict(),
            "rule_description": self.rule_description,
            "rule_fingerprint": self.rule_fingerprint,
            "verify_rule": self.verify_rule.to_dict(),
            "schema_revision": self.schema_revision,
        }
