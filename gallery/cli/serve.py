"""``gallery serve``: the gallery as an HTTP service (``gallery.service``)."""

from __future__ import annotations

from pathlib import Path

import click

from gallery.cli.app import cli
from gallery.cli.context import CliContext, available_cores, fail, pass_context
from gallery.errors import GalleryError


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--ssl-certfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate (chain): serve HTTPS (with --ssl-keyfile).",
)
@click.option(
    "--ssl-keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The certificate's private key."
)
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 64), help="Gallery calls at once.")
@click.option("--queue", default=32, show_default=True, type=click.IntRange(0, 10_000), help="Requests that may wait.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True), help="Seconds.")
@click.option(
    "--max-body-mb", default=16.0, show_default=True, type=click.FloatRange(0, min_open=True), help="Largest body."
)
@click.option(
    "--rate-limit", default="60/minute", show_default=True, help="identify+verify per key (limits' notation)."
)
@click.option(
    "--rate-limit-storage", default="memory://", show_default=True, help="Where rate counts live (redis://... shares)."
)
@click.option(
    "--key-cache",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Seconds a revoked key may keep working on this host.",
)
@click.option(
    "--embed-wait-ms",
    default=4.0,
    show_default=True,
    type=click.FloatRange(0, 1000),
    help="How long a request's faces wait to share an embedding pass with other requests'.",
)
@click.option("--graceful-timeout", default=30.0, show_default=True, type=click.FloatRange(0), help="Seconds.")
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@pass_context
def serve(
    ctx: CliContext,
    host: str,
    port: int,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
    workers: int,
    queue: int,
    timeout: float,
    max_body_mb: float,
    rate_limit: str,
    rate_limit_storage: str,
    key_cache: float,
    embed_wait_ms: float,
    graceful_timeout: float,
    log_level: str,
) -> None:
    """Serve the gallery over HTTP (API under /v1, /openapi.json, /metrics, /health/live, /health/ready).

    Every /v1 route needs an API key (`gallery keys create`). Listens on 127.0.0.1 unless told
    otherwise; with --ssl-certfile and --ssl-keyfile it serves HTTPS. SIGINT or SIGTERM stops it
    after the requests in progress (up to --graceful-timeout seconds).

    \b
    Example:
        gallery keys create --name door-1 --scope identify
        gallery serve --port 8000
        gallery serve --host 0.0.0.0 --port 8443 --ssl-certfile cert.pem --ssl-keyfile key.pem
    """
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together")
    from gallery.runtime import set_threads  # deferred: keeps `--help` instant
    from gallery.service.server import serve as run_server
    from gallery.service.server import service_app
    from gallery.service.settings import ServiceSettings

    set_threads(ctx.threads or available_cores())
    try:
        settings = ServiceSettings(
            max_body_bytes=int(max_body_mb * 1024 * 1024),
            workers=workers,
            queue=queue,
            request_timeout_s=timeout,
            rate_limit=rate_limit,
            rate_limit_storage=rate_limit_storage,
            key_cache_s=key_cache,
            embed_wait_s=embed_wait_ms / 1000,
        )
        app = service_app(ctx.home, settings, pipeline=ctx.pipeline, audit=ctx.audit, database_url=ctx.database_url)
    except GalleryError as err:
        fail(err)
    except ValueError as err:  # limits' own parse errors: a bad --rate-limit or storage URI
        raise click.BadParameter(str(err)) from None
    run_server(
        app,
        host=host,
        port=port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        graceful_shutdown_s=graceful_timeout,
        log_level=log_level,
    )
