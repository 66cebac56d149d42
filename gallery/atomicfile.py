"""Replacing a file so that a crash leaves either the old or the new one, never a mix.

The one atomic writer of the package: the index files (``gallery.store``) and the converted
model weights (``gallery.models.weights``) both go through it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO


def write_atomically(
    path: Path,
    content: Sequence[bytes | memoryview] | Callable[[BinaryIO], None],
    *,
    remove_leftovers: bool = True,
) -> None:
    """Replace ``path`` with ``content`` (chunks, or a function writing to the open file).

    The content goes to a temporary file in the same folder, is flushed to disk, renamed over
    ``path`` and the rename made durable. ``remove_leftovers`` first deletes temporary files of
    earlier crashed writes of ``path``: only a writer holding the lock that serialises writers of
    ``path`` may do that (another writer's temporary file may be in progress otherwise).
    """
    if remove_leftovers:
        remove_stale_temporaries(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            if callable(content):
                content(file)
            else:
                for chunk in content:
                    file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files a crashed ``write_atomically(path, ...)`` left behind."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
