"""The service's app: ``create_app`` builds a FastAPI app over one ``Gallery``.

The gallery is opened, and the face models loaded, on a thread after the server starts, so
``/health/live`` answers at once and ``/health/ready`` (and every ``/v1`` route, with 503
``ServiceNotReady``) says not yet until both are done. At shutdown (uvicorn finishes the
requests in progress first) the workers finish what they accepted, the keys' last use is
written and the gallery closed (its pending audit events written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from importlib.metadata import version

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gallery.errors import GalleryError, ServiceNotReady
from gallery.gallery import Gallery
from gallery.service.admission import BodyLimit, KeyRateLimit, Workers
from gallery.service.auth import KeyCache
from gallery.service.errors import error_response, install_error_handlers
from gallery.service.metrics import RequestMetrics, ServiceMetrics
from gallery.service.routes import router
from gallery.service.settings import ServiceSettings

log = logging.getLogger(__name__)

GallerySource = Gallery | Callable[[], Gallery]
"""An open ``Gallery`` (the caller keeps and closes it), or a function opening one (the service closes it)."""


class ServiceState:
    """What the routes share: the gallery (once open), the workers, the key cache, the rate limit, the metrics."""

    def __init__(
        self,
        source: GallerySource,
        settings: ServiceSettings,
        metrics: ServiceMetrics,
        warm_up: Callable[[], None] | None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.workers = Workers(settings.workers, settings.queue, settings.request_timeout_s)
        self.keys = KeyCache(settings.key_cache_s)
        self.rate_limit = KeyRateLimit(settings.rate_limit, settings.rate_limit_storage)
        self._source = source
        self._warm_up = warm_up
        self._on_close = on_close
        self._gallery: Gallery | None = None
        self._starting: str | None = "loading the face models" if warm_up else "opening the gallery"

    def start(self) -> None:
        """Load the models and open the gallery on a thread (readiness says when it is done, or why it failed)."""
        threading.Thread(target=self._open, name="gallery-service-start", daemon=True).start()

    def _open(self) -> None:
        try:
            if self._warm_up is not None:
                self._warm_up()
            self._starting = "opening the gallery"
            self._gallery = self._source if isinstance(self._source, Gallery) else self._source()
            self._starting = None
            log.info("gallery service ready: %s", self._gallery.home)
        except Exception as error:
            self._starting = f"could not start: {type(error).__name__}: {error}"
            log.error("the gallery service cannot start: %s: %s", type(error).__name__, error)

    def gallery(self) -> Gallery:
        """The gallery, once open.

        Raises:
            ServiceNotReady: the models are loading or the gallery is being opened (or failed to).
        """
        if self._gallery is None:
            raise ServiceNotReady(f"the service is not ready: {self._starting}")
        return self._gallery

    @property
    def opened(self) -> Gallery | None:
        """The gallery if it is open yet, else None."""
        return self._gallery

    def unready_reason(self) -> str | None:
        """Why the service cannot answer now, or None (reads the database: call off the event loop)."""
        if self._gallery is None:
            return self._starting
        return self._gallery.hosting.unready_reason()

    def flush_key_use(self) -> None:
        """Write when the keys accepted since the last flush were used (best effort: a failure is logged)."""
        used = self.keys.take_used()
        if used and self._gallery is not None:
            try:
                self._gallery.hosting.mark_keys_used(used)
            except GalleryError as error:
                log.warning("could not record the API keys' last use: %s", error)

    def close(self) -> None:
        self.workers.shutdown()
        self.flush_key_use()
        if self._gallery is not None and not isinstance(self._source, Gallery):
            self._gallery.close()
        if self._on_close is not None:
            self._on_close()


def create_app(
    gallery: GallerySource,
    settings: ServiceSettings | None = None,
    *,
    warm_up: Callable[[], None] | None = None,
    metrics: ServiceMetrics | None = None,
    on_close: Callable[[], None] | None = None,
) -> FastAPI:
    """The HTTP service over one gallery.

    Args:
        gallery: an open ``Gallery`` (closing it stays the caller's), or a function that opens
            one: it is called on a thread once the server starts, and the gallery is closed at shutdown.
        settings: limits and defaults (``ServiceSettings``).
        warm_up: loads the face models before the service says it is ready (e.g. one small photo
            through the pipeline), so the first door's request does not pay for it.
        metrics: the metrics to report (pass one to feed ``batch_sizes`` from a batching embedder).
        on_close: called at shutdown once the workers have finished (e.g. to stop a batching embedder).
    """
    state = ServiceState(gallery, settings or ServiceSettings(), metrics or ServiceMetrics(), warm_up, on_close)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start()
        flusher = asyncio.create_task(_flush_key_use_every(state))
        try:
            yield
        finally:
            flusher.cancel()
            await anyio.to_thread.run_sync(state.close)

    app = FastAPI(
        title="gallery",
        version=version("gallery"),
        summary="One-shot face identification over HTTP: enrol a person from one photo, identify them in others.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = state
    install_error_handlers(app)
    app.include_router(router)

    @app.get("/health/live", tags=["health"], summary="The process is up (no key needed)")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get(
        "/health/ready",
        tags=["health"],
        summary="The service can answer: models loaded, gallery open, database readable (no key needed)",
        responses={503: {"description": "Not ready: ServiceNotReady, with why"}},
    )
    async def ready() -> JSONResponse:
        reason = await anyio.to_thread.run_sync(state.unready_reason)
        state.metrics.ready.set(reason is None)
        if reason is not None:
            return error_response(503, "ServiceNotReady", f"the service is not ready: {reason}", retry_after="1")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (no key needed)")
    def metrics_route(request: Request) -> Response:
        state.metrics.in_flight.set(state.workers.in_flight)
        state.metrics.queue_depth.set(state.workers.waiting)
        gallery = state.opened
        state.metrics.ready.set(gallery is not None)
        if gallery is not None:
            try:
                data = gallery.hosting.data_version()
                state.metrics.saw_version(data.version, data.age_s)
                state.metrics.saw_domain(gallery.domain_status())
            except GalleryError as error:
                log.warning("metrics: cannot read the data version or the domain check: %s", error)
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # Outermost last: metrics see every answer, the body limit's 413 included.
    app.add_middleware(BodyLimit, max_bytes=state.settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    return app


async def _flush_key_use_every(state: ServiceState) -> None:
    while True:
        await asyncio.sleep(state.settings.key_use_flush_s)
        await anyio.to_thread.run_sync(state.flush_key_use)
