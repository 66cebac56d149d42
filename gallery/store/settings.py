"""The gallery's settings: named JSON values (the decision rules in force and their provenance)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from gallery.store.backend import Backend
from gallery.store.schema import Setting, utcnow


class Settings:
    """The ``settings`` table of one gallery database."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def get(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        with self._backend.read() as session:
            row = session.get(Setting, key)
            return default if row is None else row.value

    def all(self) -> dict[str, Any]:
        """Every setting, by key."""
        with self._backend.read() as session:
            return {row.key: row.value for row in session.scalars(select(Setting).order_by(Setting.key))}

    def put(self, values: Mapping[str, Any]) -> None:
        """Store several settings in one transaction: all of them or, on failure, none.

        Raises:
            TypeError: a value is not JSON-serialisable (nothing was written).
        """
        for key, value in values.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError) as error:
                raise TypeError(f"setting {key!r} is not JSON-serialisable: {error}") from None
        now = utcnow()
        with self._backend.write() as session:
            self._backend.put_settings(session, values, now)
