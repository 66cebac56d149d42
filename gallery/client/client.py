"""``GalleryClient``: the gallery's questions asked of a gallery service over HTTP (API v1)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from gallery.client.answers import (
    AuditEventAnswer,
    EnrolAnswer,
    IdentifyAnswer,
    InfoAnswer,
    PersonAnswer,
    RemovalAnswer,
    VerifyAnswer,
)
from gallery.client.transport import Endpoint, Upload, exchange
from gallery.vision.photo_file import read_photo

# Seconds to wait for a connection and for each read of the answer: an identify takes well
# under a second on a served gallery, an enrolment a little more; past this the server is stuck.
DEFAULT_TIMEOUT_S = 30.0


class GalleryClient:
    """A gallery service's answers, in the shapes ``gallery.client.answers`` describes (``GalleryAnswers``).

    Imports neither torch, FAISS, NumPy nor SQLAlchemy: a command that asks a service starts
    in tens of milliseconds. Each call is one HTTP request; every error is the ``GalleryError``
    the library would raise (the service names its class), or ``ServiceUnreachable`` /
    ``ServiceResponseInvalid``.

    Args:
        server: the service's URL, ``http(s)://host:port`` (a path prefix is kept).
        api_key: sent as ``Authorization: Bearer`` (never in the URL); None sends none.
        timeout: seconds to wait for the connection and for each read of the answer.

    Raises:
        InvalidArgument: ``server`` is not an http(s) URL.
    """

    def __init__(self, server: str, *, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.endpoint = Endpoint.parse(server)
        self._api_key = api_key
        self.timeout = timeout

    def identify(self, photo: Path, *, top_k: int = 5, upsample: int = 0) -> IdentifyAnswer:
        upload = _photo_form(photo, {})
        answer: IdentifyAnswer = self._ask("POST", "/v1/identify", {"top_k": top_k, "upsample": upsample}, upload)
        return answer

    def verify(self, name: str, photo: Path) -> VerifyAnswer:
        answer: VerifyAnswer = self._ask("POST", "/v1/verify", None, _photo_form(photo, {"name": name}))
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
        flags = {"add": add, "largest": largest, "allow_similar": allow_similar, "allow_different": allow_different}
        fields = {"name": name, **{key: "true" for key, on in flags.items() if on}}
        if external_id is not None:
            fields["external_id"] = external_id
        answer: EnrolAnswer = self._ask("POST", "/v1/enrol", None, _photo_form(photo, fields))
        return answer

    def remove(self, name: str) -> RemovalAnswer:
        answer: RemovalAnswer = self._ask("POST", "/v1/remove", None, Upload.json({"name": name}))
        return answer

    def people(self) -> list[PersonAnswer]:
        answer: list[PersonAnswer] = self._ask("GET", "/v1/people")
        return answer

    def info(self) -> InfoAnswer:
        answer: InfoAnswer = self._ask("GET", "/v1/info")
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
        # Filters travel in the body: a person's name must not appear in a URL (or an access log).
        filters: dict[str, Any] = {"limit": limit, "action": action, "person": person, "outcome": outcome}
        filters |= {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
        sent = {key: value for key, value in filters.items() if value is not None}
        answer: list[AuditEventAnswer] = self._ask("POST", "/v1/audit", None, Upload.json(sent))
        return answer

    def _ask(
        self, method: str, path: str, query: dict[str, str | int] | None = None, upload: Upload | None = None
    ) -> Any:
        return exchange(
            self.endpoint, method, path, api_key=self._api_key, timeout=self.timeout, query=query, upload=upload
        )


def _photo_form(photo: Path, fields: dict[str, str]) -> Upload:
    """The photo file as the multipart field ``photo``, named as given (the service's messages name it so)."""
    content = read_photo(photo)  # a missing or unreadable file fails here, as it does locally
    return Upload.form(fields, "photo", os.fsdecode(photo), content)
