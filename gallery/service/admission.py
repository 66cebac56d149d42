"""What keeps the service answering under load: the body size limit, the bounded workers, the rate limit.

- ``BodyLimit``: a body over ``max_body_bytes`` is refused (413) from its ``Content-Length``
  before a byte is read, or as soon as a chunked body passes the limit.
- ``Workers``: gallery calls run on a fixed pool of threads; at most ``queue`` more wait, and a
  request beyond that is refused at once (503) rather than queued behind work it cannot outwait.
  Reads have a deadline (504), and work still queued at its deadline is dropped unrun.
- ``KeyRateLimit``: identify and verify requests per key over a moving window (``limits``), 429.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gallery.audit import acting_as
from gallery.errors import RateLimited, RequestTimedOut, RequestTooLarge, ServiceOverloaded
from gallery.service.errors import gallery_error_response

T = TypeVar("T")


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with 413 ``RequestTooLarge``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await gallery_error_response(self._too_large())(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> RequestTooLarge:
        return RequestTooLarge(f"the request body is larger than the service accepts ({self.max_bytes:,} bytes)")


class _Dropped(Exception):
    """A job whose caller stopped waiting before a worker picked it up."""


class Workers:
    """A fixed pool of threads for gallery calls, with a bounded wait and an immediate 503 beyond it."""

    def __init__(self, workers: int, queue: int, timeout_s: float) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="gallery-service")
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Jobs accepted and not finished: running, waiting, or abandoned by a timed-out caller."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Jobs waiting for a worker (about: a finished worker may not have taken the next yet)."""
        return max(0, self._in_flight - self.workers)

    async def run(self, job: Callable[[], T], *, key_name: str | None, deadline: bool = True) -> T:
        """Run ``job`` on a worker, its audit events naming ``key_name``.

        Args:
            deadline: give up after ``timeout_s`` (504; a job not started by then never runs).
                Writes pass False: once started, their outcome is always reported.

        Raises:
            ServiceOverloaded: every worker is busy and the queue is full.
            RequestTimedOut: the job did not finish within the deadline.
        """
        with self._lock:
            if self._in_flight >= self.capacity:
                raise ServiceOverloaded(
                    f"the service is busy ({self.workers} workers busy, {self.capacity - self.workers} waiting): "
                    "try again shortly"
                )
            self._in_flight += 1
        started_by = time.monotonic() + self.timeout_s if deadline else None

        def call() -> T:
            if started_by is not None and time.monotonic() > started_by:
                raise _Dropped
            with acting_as(key_name):
                return job()

        future: Future[T] = self._pool.submit(call)
        future.add_done_callback(self._finished)
        waiting = asyncio.wrap_future(future)
        if not deadline:
            return await asyncio.shield(waiting)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), self.timeout_s)
        except TimeoutError:
            waiting.add_done_callback(_ignore_outcome)
            raise RequestTimedOut(f"the gallery did not answer within {self.timeout_s:g} s") from None

    def _finished(self, future: Future[Any]) -> None:
        with self._lock:
            self._in_flight -= 1

    def shutdown(self) -> None:
        """Finish the jobs accepted, then stop the threads."""
        self._pool.shutdown(wait=True)


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log an abandoned job's error


class KeyRateLimit:
    """How many identify and verify requests each API key may make (one budget for both)."""

    def __init__(self, rate: str, storage_uri: str) -> None:
        self.rate = parse(rate)
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, key_name: str) -> None:
        """Count one request of ``key_name``.

        Raises:
            RateLimited: the key is over its rate (``retry_after`` says when a request is allowed again).
        """
        if self._limiter.hit(self.rate, "identify", key_name):
            return
        reset = self._limiter.get_window_stats(self.rate, "identify", key_name).reset_time
        raise RateLimited(
            f"API key {key_name!r} is over its rate limit of {self.rate}: slow down", max(1.0, reset - time.time())
        )
