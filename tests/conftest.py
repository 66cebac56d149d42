"""Shared fixtures: sample photos, and a gallery home per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted weights go to a per-session cache unless the developer points at one already."""
    os.environ.setdefault("GALLERY_CACHE_DIR", str(tmp_path_factory.mktemp("model-cache")))


@pytest.fixture
def photo():
    """Path of a sample photo in data/ by file name."""
    return lambda name: DATA / name
