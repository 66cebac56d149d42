"""What the gallery answers, as JSON: the shapes ``--json`` prints and the HTTP service returns.

One shape per answer, written down once as a ``TypedDict`` so that the CLI's text and JSON
output, whether the answer came from a local ``Gallery`` (its results' ``to_dict()``, through
JSON) or from a service over HTTP, is rendered by one code path that mypy checks. This module
imports nothing heavy: it is what the CLI client runs on.
"""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict


def json_value(value: Any) -> Any:
    """A result's value that JSON has no type for, as the answers carry it: times in ISO 8601, paths as text.

    The ``default`` of ``json.dumps`` for the library's results (``Person.created_at``,
    ``GalleryInfo.home``).
    """
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)  # paths; nothing else reaches here from a result


Outcome = Literal["match", "unknown", "ambiguous", "not_live"]


class CandidateAnswer(TypedDict):
    name: str
    person_id: int
    distance: float


class FaceAnswer(TypedDict):
    """``IdentifiedFace.to_dict()``."""

    box: list[int]
    candidates: list[CandidateAnswer]
    match: CandidateAnswer | None
    outcome: Outcome
    confidence: float
    rule: str


class IdentifyAnswer(TypedDict):
    """The faces of one photo, largest first (``identify --json`` adds the photo's path)."""

    faces: list[FaceAnswer]


class VerifyAnswer(TypedDict):
    """``Verification``."""

    name: str
    person_id: int
    verified: bool
    distance: float
    threshold: float
    box: list[int]


class DomainAnswer(TypedDict):
    """``DomainStatus``: the gallery's spread against the rule's limit, and whether it is crowded."""

    spread: float
    limit: float
    measured: int
    quantile: float
    crowded: bool


class EnrolAnswer(TypedDict):
    """``Enrollment``."""

    name: str
    person_id: int
    face_id: int
    box: list[int]
    new_person: bool
    resembles: str | None
    domain: DomainAnswer | None


class RemovalAnswer(TypedDict):
    """``Removal.to_dict()``: the erasure receipt."""

    name: str
    person_id: int
    faces_removed: int
    pending: list[str]
    erasure_complete: bool


class PersonAnswer(TypedDict):
    """``Person``; times in ISO 8601."""

    id: int
    name: str
    external_id: str | None
    created_at: str
    updated_at: str
    face_count: int


class InfoAnswer(TypedDict):
    """``GalleryInfo.to_dict()``: the rules as stored, with their provenance (null when unreadable)."""

    home: str
    people: int
    faces: int
    model: str
    rule: dict[str, Any] | None
    rule_description: str | None
    rule_fingerprint: str | None
    verify_rule: dict[str, Any] | None
    rule_error: str | None
    schema_revision: str | None
    database: str
    pending_erasure: list[str]
    domain: DomainAnswer | None


class AuditEventAnswer(TypedDict):
    """``AuditEvent.to_dict()``: ``at`` in ISO 8601 with its UTC offset."""

    id: int
    at: str
    action: str
    outcome: str
    person_name: str | None
    person_id: int | None
    model: str | None
    rule: Any
    detail: Any


class GalleryAnswers(Protocol):
    """The questions both a local gallery (``gallery.cli.local``) and the service (``GalleryClient``) answer.

    Every method raises the ``GalleryError`` the library raises for the same question.
    """

    def identify(self, photo: Path, *, top_k: int = 5, upsample: int = 0) -> IdentifyAnswer: ...

    def verify(self, name: str, photo: Path) -> VerifyAnswer: ...

    def enroll(
        self,
        name: str,
        photo: Path,
        *,
        add: bool = False,
        largest: bool = False,
        allow_similar: bool = False,
        allow_different: bool = False,
        external_id: str | None = None,
    ) -> EnrolAnswer: ...

    def remove(self, name: str) -> RemovalAnswer: ...

    def people(self) -> list[PersonAnswer]: ...

    def info(self) -> InfoAnswer: ...

    def audit_log(
        self,
        *,
        limit: int = 50,
        action: str | None = None,
        person: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEventAnswer]: ...
