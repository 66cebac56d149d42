"""Running the service: the app ``gallery serve`` builds, and uvicorn serving it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI

from gallery.audit import AuditPolicy
from gallery.gallery import Gallery
from gallery.service.app import create_app
from gallery.service.batching import BatchingEmbedder
from gallery.service.metrics import ServiceMetrics
from gallery.service.settings import ServiceSettings
from gallery.vision.pipeline import ChipEmbedder, FacePipeline, FacePipelineProtocol


def warm_up(pipeline: FacePipelineProtocol) -> None:
    """Load the models before the first request: a blank photo through the detector, a chip through the network."""
    pipeline.faces(np.zeros((64, 64, 3), np.uint8))
    pipeline.embedder.embed(np.zeros((1, 150, 150, 3), np.uint8))


def service_app(
    home: str | os.PathLike | None,
    settings: ServiceSettings,
    *,
    pipeline: FacePipelineProtocol | None = None,
    audit: AuditPolicy = "best_effort",
    database_url: str | None = None,
) -> FastAPI:
    """The app ``gallery serve`` runs: one gallery in ``home`` over one pipeline, whose models load before it is ready.

    Every request shares the pipeline. The one made here embeds through a ``BatchingEmbedder``,
    so the faces of concurrent requests share forward passes (``settings.embed_batch`` and
    ``embed_wait_s``; each pass's size goes to ``gallery_embed_batch_size``, the chips waiting
    to ``gallery_embed_queued_chips``); it is stopped at shutdown, after the last request.

    Args:
        pipeline: a face pipeline to use as it is (None: a ``FacePipeline`` with the batching embedder).
        database_url: the gallery's database (``Gallery``'s): None for ``gallery.db`` in ``home``.
    """
    metrics = ServiceMetrics()
    batchers: list[BatchingEmbedder] = []  # the one made for the pipeline below, stopped at shutdown

    def batching(network: ChipEmbedder) -> BatchingEmbedder:
        made = BatchingEmbedder(
            network,
            max_batch=settings.embed_batch,
            max_wait=settings.embed_wait_s,
            on_batch=metrics.batch_sizes.observe,
        )
        metrics.embed_queue.set_function(lambda: made.queued_chips)
        batchers.append(made)
        return made

    def stop_batching() -> None:
        for made in batchers:
            made.close()

    chosen = pipeline or FacePipeline(wrap_embedder=batching)
    return create_app(
        lambda: Gallery(home, pipeline=chosen, audit=audit, database_url=database_url),
        settings,
        warm_up=lambda: warm_up(chosen),
        metrics=metrics,
        on_close=stop_batching,
    )


def serve(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    graceful_shutdown_s: float = 30.0,
    log_level: str = "info",
) -> None:
    """Serve ``app`` with uvicorn until SIGINT or SIGTERM, then finish the requests in progress (graceful shutdown).

    Args:
        ssl_certfile, ssl_keyfile: a PEM certificate (chain) and its private key: serve HTTPS.
        graceful_shutdown_s: how long shutdown waits for requests in progress before closing them.
    """
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        timeout_graceful_shutdown=int(graceful_shutdown_s),
        log_level=log_level,
        server_header=False,
    )
