"""Where a gallery lives by default and how many CPU threads its networks and index use."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from gallery.errors import InvalidArgument

HOME_ENV = "GALLERY_HOME"


def default_home() -> Path:
    """``$GALLERY_HOME``, else the platform's user data directory for gallery."""
    return Path(os.environ.get(HOME_ENV) or platformdirs.user_data_dir("gallery"))


def set_threads(count: int) -> None:
    """Use ``count`` CPU threads for the networks (torch) and the index's bulk work (FAISS).

    torch's setting is a budget for the whole process: a forward pass running alone uses all
    of it, passes running at once in several threads split it between them (one thread each
    on two cores), which does more work per second than each taking every core. FAISS's
    (OpenMP) holds for the calling thread, and searches of a few queries run on one thread
    regardless. Both default to one thread per core; the CLI sets them explicitly
    (``--threads`` / ``GALLERY_THREADS``).

    Args:
        count: threads, at least 1.

    Raises:
        InvalidArgument: ``count`` is below 1.
    """
    if count < 1:
        raise InvalidArgument(f"count must be at least 1, got {count}")
    from gallery.store.index import set_faiss_threads
    from gallery.vision.threads import set_torch_threads

    set_torch_threads(count)
    set_faiss_threads(count)
