"""Checks for the arguments of the public API, so a bad one is an ``InvalidArgument`` at the edge.

``Gallery``'s methods and ``gallery.faces`` call these first, before any work: a caller gets
one ``GalleryError`` family for everything (``InvalidArgument`` is also a ``ValueError``),
never a ``TypeError`` from deep inside numpy or a silently truncated answer (``top_k=-1``
used to drop the last candidate, ``top_k=0`` to return a match with no candidates).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from gallery.errors import InvalidArgument


def whole_number(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``; ``True``/``False`` and ``"3"`` are refused, not converted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise InvalidArgument(f"{name} must be {bounds}, got {number}")
    return number


def rate(name: str, value: Any) -> float:
    """``value`` as a float strictly between 0 and 1 (a target error rate)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a number between 0 and 1, got {value!r}")
    number = float(value)
    if not 0 < number < 1:
        raise InvalidArgument(f"{name} must be between 0 and 1 (exclusive), got {number}")
    return number


def text(name: str, value: Any) -> str:
    """``value``, which must be a ``str``."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string, got {value!r} ({type(value).__name__})")
    return value
