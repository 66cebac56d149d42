"""A gallery opened in this process, answering as the service does: its results as JSON values.

The commands render ``gallery.client.answers`` shapes, whichever gallery answered; this is the
local side. Results go through JSON (``to_dict()``, then ``json.dumps``/``loads``) so that a
command sees what the service would have sent, times as ISO 8601 text and boxes as lists:
what a local command prints is what the same command prints with ``--server``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gallery.client.answers import json_value

if TYPE_CHECKING:
    from gallery.client.answers import (
        AuditEventAnswer,
        EnrolAnswer,
        GalleryAnswers,
        IdentifyAnswer,
        InfoAnswer,
        PersonAnswer,
        RemovalAnswer,
        VerifyAnswer,
    )
    from gallery.gallery import Gallery


def as_sent(value: Any) -> Any:
    """``value`` as the JSON values it prints as: what a client of the service receives."""
    return json.loads(json.dumps(value, default=json_value))


class LocalAnswers:
    """``GalleryAnswers`` from an open ``Gallery``."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery

    def identify(self, photo: Path, *, top_k: int = 5, upsample: int = 0) -> IdentifyAnswer:
        found = self.gallery.identify(photo, top_k=top_k, upsample=upsample)
        answer: IdentifyAnswer = as_sent({"faces": [face.to_dict() for face in found]})
        return answer

    def verify(self, name: str, photo: Path) -> VerifyAnswer:
        answer: VerifyAnswer = as_sent(asdict(self.gallery.verify(name, photo)))
        return answer

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
    ) -> EnrolAnswer:
        enrolment = self.gallery.enroll(
            name,
            photo,
            add=add,
            largest=largest,
            allow_similar=allow_similar,
            allow_different=allow_different,
            external_id=external_id,
        )
        answer: EnrolAnswer = as_sent(asdict(enrolment))
        return answer

    def remove(self, name: str) -> RemovalAnswer:
        answer: RemovalAnswer = as_sent(self.gallery.remove(name).to_dict())
        return answer

    def people(self) -> list[PersonAnswer]:
        answer: list[PersonAnswer] = as_sent([asdict(person) for person in self.gallery.people()])
        return answer

    def info(self) -> InfoAnswer:
        answer: InfoAnswer = as_sent(self.gallery.info().to_dict())
        return answer

    def audit_log(
        self,
        *,
        limit: int = 50,
        action: str | None = None,
        person: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEventAnswer]:
        events = self.gallery.audit_log(
            limit=limit, action=action, person=person, outcome=outcome, since=since, until=until
        )
        answer: list[AuditEventAnswer] = as_sent([event.to_dict() for event in events])
        return answer


if TYPE_CHECKING:  # mypy rejects this if the local answers drift from the service's (``GalleryClient``)

    def _answers_as_the_service_does(gallery: Gallery) -> GalleryAnswers:
        return LocalAnswers(gallery)
