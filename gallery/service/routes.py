"""The ``/v1`` routes: each checks the caller's key, reads the request, and runs one ``Gallery`` call.

What a route answers is what the matching command prints with ``--json`` (identify adds the
data's version and age and leaves out the local photo path). Personal names travel in bodies,
never in URLs, so access logs hold none. Photos come as the multipart field ``photo`` or, for
identify, as the whole body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from gallery.errors import InvalidArgument
from gallery.gallery import MAX_TOP_K, Gallery
from gallery.reporting import MAX_AUDIT_LIMIT
from gallery.service.auth import Caller
from gallery.types import AUDITED_ACTIONS
from gallery.vision.photo_file import PhotoFile
from gallery.vision.pipeline import MAX_UPSAMPLE

router = APIRouter(prefix="/v1")
_bearer = HTTPBearer(auto_error=False, description="An API key made by `gallery keys create`")

# A multipart form's parts: one photo and a few short fields (starlette's own limits, set tight).
MAX_FORM_FIELDS = 10


class ErrorBody(BaseModel):
    """Every error's body."""

    error: str
    message: str


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    words = {
        400: "InvalidArgument: a malformed request",
        401: "NotAuthenticated: no key, or an unknown or revoked one",
        403: "ScopeDenied: the key lacks the route's scope",
        404: "PersonNotFound",
        409: "a conflict with what the gallery holds (AlreadyEnrolled, LooksLikeSomeoneElse, ...)",
        413: "RequestTooLarge",
        422: "the photo or its face cannot be used (ImageError, NoFaceFound, MultipleFaces, PoorQuality, ...)",
        429: "RateLimited (Retry-After says when to ask again)",
        503: "ServiceOverloaded, ServiceNotReady, or the gallery cannot answer (StoreError, RuleInvalid, ...)",
        504: "RequestTimedOut",
    }
    return {status: {"model": ErrorBody, "description": words[status]} for status in statuses}


COMMON = (400, 401, 403, 503)


def _require(scope: str, *, rate_limited: bool = False) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """A dependency admitting callers whose key has ``scope`` (and, for identify/verify, is under its rate)."""

    async def caller(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Caller:
        state = request.app.state.service
        hosting = state.gallery().hosting
        secret = credentials.credentials if credentials else None
        if state.keys.cached(secret):
            who = state.keys.caller(hosting, secret, scope)
        else:
            who = await anyio.to_thread.run_sync(state.keys.caller, hosting, secret, scope)
        if rate_limited:
            state.rate_limit.hit(who.key_name)
        return who

    return caller


IdentifyScope = Annotated[Caller, Depends(_require("identify", rate_limited=True))]
EnrolScope = Annotated[Caller, Depends(_require("enrol"))]
AdminScope = Annotated[Caller, Depends(_require("admin"))]


async def _run(request: Request, caller: Caller, job: Callable[[Gallery], Any], *, deadline: bool = True) -> Any:
    state = request.app.state.service
    gallery = state.gallery()
    return await state.workers.run(lambda: job(gallery), key_name=caller.key_name, deadline=deadline)


def _json(value: Any) -> JSONResponse:
    return JSONResponse(jsonable_encoder(value))


# ---- reading requests --------------------------------------------------------------------


def _photo_body(fields: dict[str, Any], *, raw: bool) -> dict[str, Any]:
    """The OpenAPI request body of a route taking a photo and form ``fields``."""
    form = {
        "type": "object",
        "required": ["photo", *(name for name, spec in fields.items() if spec.pop("required", False))],
        "properties": {"photo": {"type": "string", "format": "binary"}, **fields},
    }
    content: dict[str, Any] = {"multipart/form-data": {"schema": form}}
    if raw:
        content |= {kind: {"schema": {"type": "string", "format": "binary"}} for kind in ("image/jpeg", "image/png")}
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


async def _photo_and_fields(request: Request, allowed: set[str], *, raw: bool) -> tuple[bytes, dict[str, str]]:
    """The photo's bytes and the form's other fields.

    Raises:
        InvalidArgument: not a multipart form with one file ``photo`` (or, with ``raw``, a body),
            or a field the route does not know.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        if not raw:
            raise InvalidArgument("send a multipart/form-data body with the photo in the field 'photo'")
        return await request.body(), {}
    async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS) as form:
        fields: dict[str, str] = {}
        photo: bytes | None = None
        for name, value in form.multi_items():
            if name == "photo" and isinstance(value, UploadFile) and photo is None:
                photo = _named(await value.read(), value.filename)
            elif name in allowed and isinstance(value, str) and name not in fields:
                fields[name] = value
            else:
                raise InvalidArgument(f"unexpected form field {name!r}: this route takes 'photo' and {sorted(allowed)}")
    if photo is None:
        raise InvalidArgument("the form needs the photo as a file in the field 'photo'")
    return photo, fields


def _named(data: bytes, filename: str | None) -> bytes:
    """An upload's bytes, named by the file name sent with them (the CLI client sends the path as typed),
    so that a photo that cannot be used is named as the local command names it (``'door.jpg' is not an image``)."""
    if not filename:
        return data
    photo = PhotoFile(data)
    photo.source = repr(filename)
    return photo


def _flag(fields: dict[str, str], name: str) -> bool:
    value = fields.get(name, "false").strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise InvalidArgument(f"{name} must be true or false, got {value!r}")


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        value = json.loads(body) if body.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"the body is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidArgument("the body must be a JSON object")
    return value


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string" + (" (it is required)" if required else ""))
    return value


def _moment(body: dict[str, Any], name: str) -> datetime | None:
    text = _text(body, name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"{name} is not an ISO 8601 time: {text!r}") from None
    if moment.utcoffset() is None:
        raise InvalidArgument(f"{name} needs a UTC offset (e.g. 2026-11-29T08:00+01:00 or ...Z), got {text!r}")
    return moment


# ---- routes ------------------------------------------------------------------------------


@router.post(
    "/identify",
    tags=["decide"],
    summary="Who is in the photo (scope identify; rate-limited per key)",
    description="The photo as the multipart field `photo`, or as the whole body. Answers `gallery identify "
    "--json`'s object without `photo`, plus `data`: the version of the gallery's data searched and its age.",
    openapi_extra=_photo_body({}, raw=True),
    responses=_errors(*COMMON, 413, 422, 429, 504),
)
async def identify(
    request: Request,
    caller: IdentifyScope,
    top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K, description="Candidates per face")] = 5,
    upsample: Annotated[int, Query(ge=0, le=MAX_UPSAMPLE, description="Detector upsampling steps (slower)")] = 0,
) -> JSONResponse:
    photo, _ = await _photo_and_fields(request, set(), raw=True)

    def job(gallery: Gallery) -> tuple[list[Any], Any]:
        results = gallery.identify(photo, top_k=top_k, upsample=upsample)
        # The data the faces were decided on; read apart only when there was no face to decide.
        data = results[0].data if results and results[0].data else gallery.hosting.data_version()
        return results, data

    results, data = await _run(request, caller, job)
    request.app.state.service.metrics.identified([r.outcome for r in results])
    return _json({"faces": [r.to_dict() for r in results], "data": asdict(data)})


@router.post(
    "/verify",
    tags=["decide"],
    summary="Is the largest face in the photo this person (scope identify; rate-limited per key)",
    description="Multipart: `photo` and `name`. Answers `gallery verify --json`'s object.",
    openapi_extra=_photo_body({"name": {"type": "string", "required": True}}, raw=False),
    responses=_errors(*COMMON, 404, 413, 422, 429, 504),
)
async def verify(request: Request, caller: IdentifyScope) -> JSONResponse:
    photo, fields = await _photo_and_fields(request, {"name"}, raw=False)
    name = _text(fields, "name", required=True)
    assert name is not None
    result = await _run(request, caller, lambda g: g.verify(name, photo))
    request.app.state.service.metrics.decisions.labels("verify", "verified" if result.verified else "rejected").inc()
    return _json(asdict(result))


_ENROL_FIELDS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "required": True},
    "add": {"type": "boolean", "description": "Add a photo to a person already enrolled"},
    "largest": {"type": "boolean", "description": "Take the largest face when the photo holds several"},
    "allow_similar": {"type": "boolean", "description": "Enrol even if identify would answer someone else"},
    "allow_different": {"type": "boolean", "description": "With add: even if the face is not theirs (audited)"},
    "external_id": {"type": "string", "description": "The host system's id for the person"},
}


@router.post(
    "/enrol",
    tags=["people"],
    summary="Enrol a person from one photo, or add a photo to them (scope enrol)",
    description="Multipart: `photo`, `name` and the options. Answers `gallery enroll --json`'s object. Audited "
    "with the key's name. Not cut short by the request timeout: a write that started is reported as it ended.",
    openapi_extra=_photo_body({name: dict(spec) for name, spec in _ENROL_FIELDS.items()}, raw=False),
    responses=_errors(*COMMON, 404, 409, 413, 422),
)
async def enrol(request: Request, caller: EnrolScope) -> JSONResponse:
    photo, fields = await _photo_and_fields(request, set(_ENROL_FIELDS), raw=False)
    name = _text(fields, "name", required=True)
    assert name is not None
    options = {flag: _flag(fields, flag) for flag in ("add", "largest", "allow_similar", "allow_different")}
    external_id = fields.get("external_id")
    result = await _run(
        request, caller, lambda g: g.enroll(name, photo, external_id=external_id, **options), deadline=False
    )
    return _json(asdict(result))


@router.post(
    "/remove",
    tags=["people"],
    summary="Erase a person (scope enrol): the erasure receipt",
    description='JSON `{"name": ...}`. Answers `gallery remove --json`\'s receipt: what was deleted, '
    "`erasure_complete`, and `pending` (the files still holding copies, finished by the next write). Audited.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
                }
            },
        }
    },
    responses=_errors(*COMMON, 404, 413),
)
async def remove(request: Request, caller: EnrolScope) -> JSONResponse:
    name = _text(await _json_object(request), "name", required=True)
    assert name is not None
    result = await _run(request, caller, lambda g: g.remove(name), deadline=False)
    return _json(result.to_dict())


@router.get(
    "/people",
    tags=["people"],
    summary="Everyone enrolled, by name (scope enrol)",
    description="`gallery list --json`'s list.",
    responses=_errors(*COMMON, 504),
)
async def people(request: Request, caller: EnrolScope) -> JSONResponse:
    found = await _run(request, caller, lambda g: g.people())
    return _json([asdict(person) for person in found])


@router.get(
    "/people/{person_id}",
    tags=["people"],
    summary="One enrolled person, by id (scope enrol)",
    responses=_errors(*COMMON, 404, 504),
)
async def person(
    request: Request,
    person_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    caller: EnrolScope,
) -> JSONResponse:
    return _json(asdict(await _run(request, caller, lambda g: g.hosting.person(person_id))))


@router.get(
    "/info",
    tags=["admin"],
    summary="Where the gallery lives, what it holds, the rules in force (scope admin)",
    description="`gallery info --json`'s object.",
    responses=_errors(*COMMON, 504),
)
async def info(request: Request, caller: AdminScope) -> JSONResponse:
    return _json((await _run(request, caller, lambda g: g.info())).to_dict())


@router.post(
    "/audit",
    tags=["admin"],
    summary="The audit log, newest first, filtered (scope admin)",
    description="JSON body of filters, all optional (a person's name must not go in a URL): `limit` (default 50), "
    f"`action` ({', '.join(AUDITED_ACTIONS)}), `person`, `outcome`, `since` and `until` (ISO 8601 with a UTC "
    "offset). Answers `gallery log --json`'s list.",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "limit": {"type": "integer", "minimum": 0, "maximum": MAX_AUDIT_LIMIT},
                            "action": {"type": "string", "enum": list(AUDITED_ACTIONS)},
                            "person": {"type": "string"},
                            "outcome": {"type": "string"},
                            "since": {"type": "string", "format": "date-time"},
                            "until": {"type": "string", "format": "date-time"},
                        },
                    }
                }
            },
        }
    },
    responses=_errors(*COMMON, 413, 504),
)
async def audit(request: Request, caller: AdminScope) -> JSONResponse:
    body = await _json_object(request)
    unknown = sorted(set(body) - {"limit", "action", "person", "outcome", "since", "until"})
    if unknown:
        raise InvalidArgument(f"unknown filter(s): {', '.join(unknown)}")
    limit = body.get("limit", 50)  # checked by Gallery.audit_log, whatever its type
    action = _text(body, "action")
    if action is not None and action not in AUDITED_ACTIONS:
        raise InvalidArgument(f"action must be one of {', '.join(AUDITED_ACTIONS)}, got {action!r}")
    person, outcome = _text(body, "person"), _text(body, "outcome")
    since, until = _moment(body, "since"), _moment(body, "until")
    events = await _run(
        request,
        caller,
        lambda g: g.audit_log(limit=limit, action=action, person=person, outcome=outcome, since=since, until=until),
    )
    return _json([event.to_dict() for event in events])
