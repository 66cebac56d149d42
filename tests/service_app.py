"""The service over ``FakePipeline``, for tests that run it in a real uvicorn subprocess.

``uvicorn service_app:app --factory`` (with ``tests/`` on the path) builds it from the environment:
``GALLERY_HOME``, ``GALLERY_DATABASE_URL`` (optional), ``GALLERY_SERVICE_SETTINGS`` (JSON of
``ServiceSettings`` fields) and
``GALLERY_TEST_SLOW_S`` (seconds every photo's face finding takes: makes overload reproducible).
"""

from __future__ import annotations

import json
import os
import time

from fakes import FakePipeline
from fastapi import FastAPI

from gallery.service import ServiceSettings
from gallery.service.server import service_app
from gallery.vision.image import ImageInput
from gallery.vision.pipeline import Face


class SlowFakePipeline(FakePipeline):
    """``FakePipeline`` whose face finding takes ``delay_s`` (a stand-in for the real models' cost)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def faces(self, image: ImageInput, *, upsample: int = 0) -> list[Face]:
        time.sleep(self.delay_s)
        return super().faces(image, upsample=upsample)


def app() -> FastAPI:
    settings = ServiceSettings(**json.loads(os.environ.get("GALLERY_SERVICE_SETTINGS", "{}")))
    delay = float(os.environ.get("GALLERY_TEST_SLOW_S", "0"))
    pipeline = SlowFakePipeline(delay) if delay else FakePipeline()
    database_url = os.environ.get("GALLERY_DATABASE_URL")
    return service_app(os.environ["GALLERY_HOME"], settings, pipeline=pipeline, database_url=database_url)
