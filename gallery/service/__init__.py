"""The gallery as an HTTP service: a thin FastAPI shell over one ``Gallery``.

``create_app`` builds the app (``app`` the state and health, ``routes`` the ``/v1`` API,
``auth`` the keys, ``admission`` the limits, ``errors`` the statuses, ``metrics`` Prometheus);
``server.service_app`` builds ``gallery serve``'s over a pipeline whose embedder batches the
faces of concurrent requests (``batching``), and ``server.serve`` runs it on uvicorn.
Imported only by ``gallery serve``: ``import gallery`` never loads FastAPI.
"""

from gallery.service.app import create_app
from gallery.service.metrics import ServiceMetrics
from gallery.service.settings import ServiceSettings

__all__ = ["ServiceMetrics", "ServiceSettings", "create_app"]
