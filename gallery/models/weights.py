"""Convert dlib's model files once and cache the result as verified safetensors.

Parsing dlib's format in Python takes seconds (the landmark model stores each float
as a mantissa/exponent pair), so each model is converted on first use and cached in
the user's cache directory. Every load checks the cached file against a SHA-256
recorded in the code; a missing or corrupt cache is rebuilt from the ``.dat`` file.
Nothing is ever loaded with pickle.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import platformdirs
from safetensors.numpy import load_file, save

from gallery.atomicfile import write_atomically
from gallery.errors import WeightsMismatch

CACHE_ENV = "GALLERY_CACHE_DIR"


def cache_dir() -> Path:
    """Where converted weights live: ``$GALLERY_CACHE_DIR`` or the platform's user cache."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("gallery")) / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_converted(name: str, sha256: str, convert: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays of model ``name``, from the verified cache or freshly converted by ``convert``.

    Raises:
        WeightsMismatch: a fresh conversion does not reproduce ``sha256`` (the model file
            differs from the one this code was written for, or the converter changed).
    """
    path = cache_dir() / f"{name}.safetensors"
    if path.is_file() and _sha256(path) == sha256:
        return load_file(path)
    arrays = convert()
    data = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise WeightsMismatch(f"converted {name} has SHA-256 {found}, expected {sha256}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Concurrent first runs may convert at once: each writes a complete file, and none deletes
    # another's temporary file (no lock is held here).
    write_atomically(path, [data], remove_leftovers=False)
    return arrays
