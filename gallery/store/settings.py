"""The gallery's settings: named JSON values (the decision rules in force and their provenance).

Writes go to the database and bump the generation, so every replica (``gallery.store.replica``)
re-reads them; reads of the rules in force come from the replica's snapshot (``decoded``), so a
door needs no database round trip to know its rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from gallery.store import queries
from gallery.store.backend import Backend
from gallery.store.schema import RAW_SETTING, Setting, utcnow


class Settings:
    """The ``settings`` table of one gallery database."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def get(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key`` now, read from the database, or ``default`` when there is no such row.

        Raises:
            ValueError: the row holds no JSON value (``decoded``).
        """
        with self._backend.read() as session:
            row = session.execute(select(RAW_SETTING).where(Setting.key == key)).first()
        return default if row is None else decoded(key, row[0])

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
            queries.bump_generation(session)


def decoded(key: str, raw: bytes | str | None) -> Any:
    """A stored setting's JSON value.

    Raises:
        ValueError: the row holds no JSON value (SQL NULL, undecodable bytes, text that is not
            JSON): a damaged setting is reported, never taken for an absent one.
    """
    if raw is None:
        raise ValueError(f"setting {key!r}: the stored value is SQL NULL, not JSON")
    try:
        return json.loads(raw if isinstance(raw, str) else raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"setting {key!r}: the stored value is not JSON ({error})") from None
