"""The gallery's settings: named JSON values (the decision rules in force and their provenance)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import LargeBinary, cast, select

from gallery.store.backend import Backend
from gallery.store.schema import Setting, utcnow


class Settings:
    """The ``settings`` table of one gallery database."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def get(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default`` when there is no such row.

        Raises:
            ValueError: the row holds no JSON value (SQL NULL, undecodable bytes, text that is
                not JSON): a damaged setting is reported, never taken for an absent one.
        """
        with self._backend.read() as session:
            row = session.execute(select(_RAW).where(Setting.key == key)).first()
        return default if row is None else _decoded(key, row[0])

    def all(self) -> dict[str, Any]:
        """Every setting, by key (``ValueError`` as ``get``)."""
        with self._backend.read() as session:
            rows = session.execute(select(Setting.key, _RAW).order_by(Setting.key)).all()
        return {key: _decoded(key, raw) for key, raw in rows}

    def put(self, values: Mapping[str, Any]) -> None:
        """Store several settings in one transaction: all of them or, on failure, none.

        Raises:
            TypeError: a value is not JSON-serialisable (nothing was written).
        """
        for key, value in values.items():
            try:
                json.dumps(value, allow_nan=False)  # NaN and Infinity are not JSON
            except (TypeError, ValueError) as error:
                raise TypeError(f"setting {key!r} is not JSON-serialisable: {error}") from None
        now = utcnow()
        with self._backend.write() as session:
            self._backend.put_settings(session, values, now)


# The stored bytes as they are: SQLAlchemy's JSON type would raise JSONDecodeError on a damaged row.
_RAW = cast(Setting.value, LargeBinary)


def _decoded(key: str, raw: bytes | None) -> Any:
    if raw is None:
        raise ValueError(f"setting {key!r}: the stored value is SQL NULL, not JSON")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"setting {key!r}: the stored value is not JSON ({error})") from None
