"""Every error the service answers with: a documented status and ``{"error": <class>, "message": ...}``.

Library errors map by class (``STATUS``, looked up along the class's ancestry, so a new
subclass inherits its family's status). Requests the framework rejects (a malformed query,
form or JSON body) answer 400 ``InvalidArgument``; a path no route serves 404 ``NoSuchRoute``,
a method it does not accept 405 ``MethodNotAllowed``. Anything else is a bug: 500
``InternalError`` with a generic message (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gallery.errors import (
    AlreadyEnrolled,
    CalibrationError,
    DuplicateExternalId,
    ExternalIdMismatch,
    GalleryError,
    ImageError,
    InvalidArgument,
    InvalidFaceRecord,
    KeyNameTaken,
    KeyNotFound,
    LooksLikeSomeoneElse,
    ModelError,
    MultipleFaces,
    NoFaceFound,
    NotAuthenticated,
    NotLive,
    NotTheSamePerson,
    PersonNotFound,
    PhotoAlreadyEnrolled,
    PoorQuality,
    RateLimited,
    RequestTimedOut,
    RequestTooLarge,
    RuleInvalid,
    ScopeDenied,
    ServiceError,
    ServiceNotReady,
    ServiceOverloaded,
    StoreError,
)

log = logging.getLogger(__name__)

STATUS: dict[type[GalleryError], int] = {
    # The request itself is wrong.
    InvalidArgument: 400,
    CalibrationError: 400,
    NotAuthenticated: 401,
    ScopeDenied: 403,
    PersonNotFound: 404,
    KeyNotFound: 404,
    # It conflicts with what the gallery holds.
    AlreadyEnrolled: 409,
    PhotoAlreadyEnrolled: 409,
    DuplicateExternalId: 409,
    ExternalIdMismatch: 409,
    LooksLikeSomeoneElse: 409,
    NotTheSamePerson: 409,
    KeyNameTaken: 409,
    RequestTooLarge: 413,
    # The photo or its face cannot be used.
    ImageError: 422,
    NoFaceFound: 422,
    MultipleFaces: 422,
    PoorQuality: 422,
    NotLive: 422,
    InvalidFaceRecord: 422,
    RateLimited: 429,
    # The service or the gallery cannot answer now (storage, models, a rule it cannot trust).
    StoreError: 503,
    ModelError: 503,
    RuleInvalid: 503,
    ServiceOverloaded: 503,
    ServiceNotReady: 503,
    ServiceError: 503,
    RequestTimedOut: 504,
}
# Seconds a client should wait before asking again, sent as ``Retry-After``.
RETRY_AFTER = {429: "1", 503: "1"}


def status_of(error: GalleryError) -> int:
    """The HTTP status ``error`` answers with (500 only for a class no family covers: a bug)."""
    return next((STATUS[cls] for cls in type(error).__mro__ if cls in STATUS), 500)


def error_response(status: int, error: str, message: str, *, retry_after: str | None = None) -> JSONResponse:
    headers = {"Retry-After": retry_after} if retry_after else None
    return JSONResponse({"error": error, "message": " ".join(message.splitlines())}, status, headers=headers)


def gallery_error_response(error: GalleryError, *, retry_after: float | None = None) -> JSONResponse:
    status = status_of(error)
    wait = str(max(1, round(retry_after))) if retry_after else RETRY_AFTER.get(status)
    return error_response(status, type(error).__name__, str(error) or type(error).__name__, retry_after=wait)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as ``{"error", "message"}`` with its documented status."""

    async def gallery_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, GalleryError)
        return gallery_error_response(error, retry_after=error.retry_after if isinstance(error, RateLimited) else None)

    async def invalid_request(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem.get('loc', ()))}: {problem.get('msg', 'invalid')}"
            for problem in error.errors()
        )
        return error_response(400, "InvalidArgument", problems or "the request is malformed")

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        name = {404: "NoSuchRoute", 405: "MethodNotAllowed"}.get(error.status_code, "InvalidArgument")
        status = error.status_code if error.status_code in (404, 405, 413) else 400
        return error_response(status, name, str(error.detail))

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path, exc_info=error)
        return error_response(500, "InternalError", "the service failed unexpectedly (see its log)")

    app.add_exception_handler(GalleryError, gallery_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
