"""The service's limits and defaults, in one place (``gallery serve``'s options set them)."""

from __future__ import annotations

from dataclasses import dataclass

from gallery.errors import InvalidArgument
from gallery.service.batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_S


@dataclass(frozen=True)
class ServiceSettings:
    """How much the service accepts, how long it waits, and how fast a key may ask.

    Attributes:
        max_body_bytes: a request body larger than this is refused (413) before it is read in
            full. 16 MiB holds any phone photo (the library itself refuses files over 256 MB and
            photos over 64 megapixels).
        workers: threads running gallery calls at once. They share one set of models; more than
            the cores helps only by letting the embedder batch concurrent faces.
        queue: requests that may wait for a worker; beyond ``workers + queue`` in flight a
            request is refused at once (503 ``ServiceOverloaded``) instead of piling up.
        request_timeout_s: how long identify, verify and the reads may take, waiting included
            (504 ``RequestTimedOut``; a request still queued then is dropped). Enrol and remove
            are not cut short: a write that started is always reported as it ended.
        rate_limit: identify and verify requests each key may make, as ``limits``' notation
            (``"60/minute"``, ``"5/second"``), over a moving window (429 ``RateLimited``).
        rate_limit_storage: where the counts live (``limits``' storage URI): ``memory://`` counts
            per process, so N hosts allow N times the rate; ``redis://host`` shares the counts.
        key_cache_s: how long an API key's lookup is reused before the database is asked again:
            the bound on how long a revoked key keeps working on a host.
        key_use_flush_s: how often the keys' ``last_used_at`` are written (one write per period).
        embed_batch: most face chips per embedding pass; concurrent requests' chips share one
            (``BatchingEmbedder``).
        embed_wait_s: how long a request's chips wait for other requests' before their pass runs:
            the most batching adds to a lone request's latency.
    """

    max_body_bytes: int = 16 * 1024 * 1024
    workers: int = 4
    queue: int = 32
    request_timeout_s: float = 30.0
    rate_limit: str = "60/minute"
    rate_limit_storage: str = "memory://"
    key_cache_s: float = 5.0
    key_use_flush_s: float = 60.0
    embed_batch: int = DEFAULT_MAX_BATCH
    embed_wait_s: float = DEFAULT_MAX_WAIT_S

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "workers", "embed_batch"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.queue < 0:
            raise InvalidArgument(f"queue must be at least 0, got {self.queue}")
        for name in ("request_timeout_s", "key_cache_s", "key_use_flush_s"):
            if not getattr(self, name) > 0:
                raise InvalidArgument(f"{name} must be more than 0, got {getattr(self, name)}")
        if not 0 <= self.embed_wait_s <= 1:
            raise InvalidArgument(f"embed_wait_s must be between 0 and 1 second, got {self.embed_wait_s}")
