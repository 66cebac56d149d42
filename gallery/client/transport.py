"""One HTTP exchange with the gallery service, and its errors turned back into the library's.

Built on the standard library's ``http.client`` (~20 ms to import, against ~100 ms for httpx):
the client makes one request per command, so connection pools, HTTP/2 and async would cost
start-up time and buy nothing. ``ssl`` is imported only for an ``https://`` server.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from gallery import errors
from gallery.errors import GalleryError, InvalidArgument, ServiceResponseInvalid, ServiceUnreachable

# Statuses whose meaning the client knows even when the body is not the service's JSON (a
# proxy or load balancer in front of it answered): the library error each stands for.
_STATUS_ERRORS: Mapping[int, tuple[str, str]] = {
    401: ("NotAuthenticated", "the server refused the API key (missing, unknown or revoked)"),
    403: ("ScopeDenied", "the API key may not do this (its scope does not cover it)"),
    413: ("RequestTooLarge", "the request is larger than the server accepts"),
    429: ("RateLimited", "too many requests with this API key: try again later"),
    503: ("ServiceOverloaded", "the service is overloaded or not ready: try again later"),
}


@dataclass(frozen=True)
class Endpoint:
    """Where the service is: ``http://host:port`` or ``https://host:port``, with an optional path prefix."""

    scheme: str
    host: str
    port: int | None
    prefix: str
    url: str = field(compare=False)

    @staticmethod
    def parse(url: str) -> Endpoint:
        """The endpoint of a server URL. Raises ``InvalidArgument`` for anything but an http(s) URL with a host."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as err:
            raise InvalidArgument(f"the server URL {url!r} is not a URL: {err}") from err
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgument(f"the server URL {url!r} must be http://HOST[:PORT] or https://HOST[:PORT]")
        if parts.query or parts.fragment or parts.username or parts.password:
            # A key in a URL ends up in logs and shell history: it travels only in a header.
            raise InvalidArgument(
                f"the server URL {url!r} may hold no query, fragment or credentials (the key goes in $GALLERY_API_KEY)"
            )
        return Endpoint(parts.scheme, parts.hostname, port, parts.path.rstrip("/"), url.strip().rstrip("/"))


@dataclass(frozen=True)
class Upload:
    """A request body: JSON, raw bytes, or a multipart form of text fields and one file."""

    content_type: str
    data: bytes

    @staticmethod
    def json(value: Any) -> Upload:
        return Upload("application/json", json.dumps(value).encode())

    @staticmethod
    def form(fields: Mapping[str, str], file_field: str, filename: str, content: bytes) -> Upload:
        """``multipart/form-data`` (RFC 7578): the text fields, then the file."""
        boundary = secrets.token_hex(16)  # random: cannot occur in the photo by chance
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
            for name, value in fields.items()
        ]
        # The file name travels as UTF-8 with quotes and line breaks escaped (RFC 7578 §4.2).
        quoted = filename.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{quoted}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode(errors="surrogateescape")
            + content
            + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        return Upload(f"multipart/form-data; boundary={boundary}", b"".join(parts))


def exchange(
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    api_key: str | None,
    timeout: float,
    query: Mapping[str, str | int] | None = None,
    upload: Upload | None = None,
) -> Any:
    """Send one request and return the answer's JSON.

    Raises:
        ServiceUnreachable: no answer (refused, unknown host, TLS failure, timeout).
        ServiceResponseInvalid: an answer that is not the gallery API's.
        GalleryError: the error the service reports, as the class it names (``gallery.errors``).
    """
    target = endpoint.prefix + path + (f"?{urlencode(query)}" if query else "")
    headers = {"Accept": "application/json", "User-Agent": "gallery-cli"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if upload is not None:
        headers["Content-Type"] = upload.content_type
    connection = _connect(endpoint, timeout)
    try:
        # A server refusing a large body (413) answers and closes before reading it all: its
        # answer may be waiting to be read even though sending failed.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request(method, target, body=upload.data if upload else None, headers=headers)
        response = connection.getresponse()
        status, content_type, body = response.status, response.getheader("Content-Type", ""), response.read()
    except (OSError, http.client.HTTPException) as err:
        reason = str(err) or type(err).__name__
        raise ServiceUnreachable(f"cannot reach the gallery service at {endpoint.url}: {reason}") from err
    finally:
        connection.close()
    answer = _json(body) if content_type.split(";")[0].strip() == "application/json" else None
    if 200 <= status < 300 and answer is not None:
        return answer
    if status >= 400:
        raise _reported_error(endpoint, status, answer, had_key=bool(api_key))
    raise ServiceResponseInvalid(
        f"the server at {endpoint.url} answered HTTP {status} ({content_type or 'no content type'}), "
        "not the gallery API's JSON: is it a gallery service?"
    )


def _connect(endpoint: Endpoint, timeout: float) -> http.client.HTTPConnection:
    if endpoint.scheme == "http":
        return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    import ssl  # only for https: ~10 ms of start-up

    # The system's trusted certificates, or the bundle in $SSL_CERT_FILE (a private CA).
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or None)
    return http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout, context=context)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # UnicodeDecodeError too
        return None


def _reported_error(endpoint: Endpoint, status: int, answer: Any, *, had_key: bool) -> GalleryError:
    if isinstance(answer, dict) and isinstance(answer.get("error"), str) and isinstance(answer.get("message"), str):
        name, message = answer["error"], answer["message"]
    elif status in _STATUS_ERRORS:
        name, message = _STATUS_ERRORS[status]
    else:
        return ServiceResponseInvalid(
            f"the server at {endpoint.url} answered HTTP {status} without the gallery's error"
        )
    if status == 401 and not had_key:
        message += " (no key was sent: set $GALLERY_API_KEY)"
    return library_error(name, message, status)


def library_error(name: str, message: str, status: int) -> GalleryError:
    """The ``gallery.errors`` class ``name`` with ``message``; a ``GalleryError`` for a class this version lacks."""
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, GalleryError)):
        return GalleryError(f"{message} ({name}, HTTP {status})")
    try:
        return kind(message)
    except TypeError:
        # A class that carries more than its message (LooksLikeSomeoneElse's ``other``, ...):
        # the message says it all; the extra attributes are not sent.
        error = kind.__new__(kind)
        GalleryError.__init__(error, message)
        return error
