"""The service's Prometheus metrics (``GET /metrics``), in a registry of its own.

Every name starts with ``gallery_``. Latencies are in seconds. One registry per app, so two
services in one process (tests, an embedding program) never mix their counts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gallery.results import DomainStatus

# Latency buckets: a warm identify takes ~0.1-0.5 s on 2 cores; a queued one waits longer.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """What ``/metrics`` reports. ``batch_sizes`` and ``embed_queue`` are the batching embedder's (``server``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gallery_http_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "gallery_http_request_duration_seconds",
            "Time to answer, by route and status",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "gallery_decisions",
            "Decisions by action and outcome (identify: one per face: match, unknown, ambiguous, not_live; "
            "verify: verified, rejected)",
            ["action", "outcome"],
            registry=r,
        )
        self.faces_per_photo = Histogram(
            "gallery_faces_per_photo", "Faces found per identify photo", buckets=(0, 1, 2, 3, 5, 8, 13, 21), registry=r
        )
        self.photos_without_face = Counter(
            "gallery_photos_without_face", "Identify photos in which no face was found", registry=r
        )
        self.queue_depth = Gauge("gallery_queue_depth", "Requests waiting for a worker", registry=r)
        self.in_flight = Gauge("gallery_requests_in_flight", "Gallery calls accepted and not finished", registry=r)
        self.batch_sizes = Histogram(
            "gallery_embed_batch_size",
            "Faces embedded per network pass",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
            registry=r,
        )
        self.embed_queue = Gauge("gallery_embed_queued_chips", "Face chips waiting for an embedding pass", registry=r)
        self.index_version = Gauge(
            "gallery_index_version", "The gallery's data version (faces generation) the service searches", registry=r
        )
        self.data_age = Gauge(
            "gallery_data_age_seconds", "How old this host's view of the gallery's data may be", registry=r
        )
        self.version_age = Gauge(
            "gallery_index_version_age_seconds", "Seconds since this service saw the data version change", registry=r
        )
        self.ready = Gauge("gallery_ready", "1 when the service answers gallery requests, else 0", registry=r)
        self.domain_crowded = Gauge(
            "gallery_domain_crowded",
            "1 when the enrolled faces crowd closer together than the identify rule's calibration photos "
            "(its stranger rate is not expected to hold: calibrate on this site's photos), else 0",
            registry=r,
        )
        self.domain_scale = Gauge(
            "gallery_domain_scale",
            "What identify multiplies every distance by before the rule decides: above 1 in a crowded gallery",
            registry=r,
        )
        self._version: int | None = None
        self._version_since = time.monotonic()

    def saw_version(self, version: int, age_s: float) -> None:
        """Record the data version and age read now."""
        now = time.monotonic()
        if version != self._version:
            self._version, self._version_since = version, now
        self.index_version.set(version)
        self.data_age.set(age_s)
        self.version_age.set(now - self._version_since)

    def saw_domain(self, status: DomainStatus | None) -> None:
        """Record the gallery's domain check (None, nothing to check: not crowded, scale 1)."""
        self.domain_crowded.set(status is not None and status.crowded)
        self.domain_scale.set(1.0 if status is None else status.scale)

    def identified(self, outcomes: Sequence[str]) -> None:
        self.faces_per_photo.observe(len(outcomes))
        if not outcomes:
            self.photos_without_face.inc()
        for outcome in outcomes:
            self.decisions.labels("identify", outcome).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting every response and its latency by route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            labels = (route, str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
