"""The HTTP service's API keys, in the gallery's database: every host behind one database shares them.

A key is 32 random bytes (``secrets``), shown once when it is made; the database keeps only its
SHA-256. A slow password hash (bcrypt, scrypt, argon2) exists to make guessing a *low-entropy*
secret from a stolen hash expensive; guessing 256 random bits is out of reach at any hash speed,
so a fast hash loses nothing, and it lets a key be looked up by its hash (a unique index) in
one query instead of trying a salted hash against every row. A revoked key keeps its row (and
its name), so the audit log's key names keep meaning something.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gallery.errors import InvalidArgument, KeyNameTaken, KeyNotFound
from gallery.store.backend import Backend
from gallery.store.schema import ApiKeyRow, utcnow
from gallery.store.validation import clean_name, new_name

SCOPES: tuple[str, ...] = ("identify", "enrol", "admin")
"""``identify``: identify and verify; ``enrol``: enrol, remove and read people; ``admin``: everything."""

# Keys start with this, so a leaked one is recognisable (secret scanners, logs) as a gallery key.
KEY_PREFIX = "gk_"
_KEY_BYTES = 32


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: never the key itself.

    Attributes:
        scopes: what it may do (``SCOPES``); ``admin`` includes the others.
        revoked_at: when it was revoked, or None while it is valid.
        last_used_at: about when a service last accepted it (updated at most once a minute per host),
            or None if never.
    """

    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Whether this key (if not revoked) may use a route that needs ``scope``."""
        return self.active and (scope in self.scopes or "admin" in self.scopes)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


def key_digest(key: str) -> str:
    """The SHA-256 (hex) under which a key is stored and looked up."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def checked_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """``scopes`` without repeats, in ``SCOPES`` order.

    Raises:
        InvalidArgument: none given, or one that is not a scope.
    """
    given = set(scopes)
    unknown = sorted(given - set(SCOPES))
    if unknown:
        raise InvalidArgument(f"unknown scope(s) {', '.join(map(repr, unknown))}: the scopes are {', '.join(SCOPES)}")
    if not given:
        raise InvalidArgument(f"a key needs at least one scope ({', '.join(SCOPES)})")
    return tuple(scope for scope in SCOPES if scope in given)


class ApiKeys:
    """The ``api_keys`` table of one gallery database (``Store.keys``)."""

    def __init__(self, backend: Backend, check_open: Callable[[], None]) -> None:
        self._backend = backend
        self._check_open = check_open

    def create(self, name: str, scopes: Sequence[str]) -> tuple[ApiKey, str]:
        """Make a key named ``name`` with ``scopes``.

        Returns:
            The key as stored, and the key itself (``gk_...``): the only time it is available.

        Raises:
            InvalidName: ``name`` cannot be a key's name. InvalidArgument: bad scopes.
            KeyNameTaken: a key (valid or revoked) already has this name.
        """
        name = new_name(name, "key name")
        scopes = checked_scopes(scopes)
        key = KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)
        self._check_open()
        try:
            with self._backend.write() as session:
                row = ApiKeyRow(name=name, key_sha256=key_digest(key), scopes=list(scopes), created_at=utcnow())
                session.add(row)
                session.flush()
                stored = _record(row)
        except IntegrityError as error:
            if self._backend.unique_violation(error) == "api_keys.name":
                raise KeyNameTaken(f"a key named {name!r} exists already (revoked keys keep their names)") from error
            raise
        return stored, key

    def all(self) -> list[ApiKey]:
        """Every key, valid and revoked, by name."""
        self._check_open()
        with self._backend.read() as session:
            return [_record(row) for row in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.name))]

    def revoke(self, name: str) -> ApiKey:
        """Revoke the key ``name`` (a key revoked already stays as it was).

        Raises:
            KeyNotFound: no key has this name.
        """
        name = clean_name(name, "key name")
        self._check_open()
        with self._backend.write() as session:
            row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.name == name)).first()
            if row is None:
                raise KeyNotFound(f"no API key is named {name!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            session.flush()
            return _record(row)

    def find(self, key: str) -> ApiKey | None:
        """The stored key whose SHA-256 is ``key``'s (revoked ones too: see ``ApiKey.active``), or None."""
        self._check_open()
        with self._backend.read() as session:
            row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.key_sha256 == key_digest(key))).first()
            return None if row is None else _record(row)

    def mark_used(self, names: Iterable[str], at: datetime) -> None:
        """Record that the keys ``names`` were accepted at about ``at``."""
        names = sorted(set(names))
        if not names:
            return
        self._check_open()
        with self._backend.write() as session:
            session.execute(update(ApiKeyRow).where(ApiKeyRow.name.in_(names)).values(last_used_at=at))


def _record(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.name, tuple(row.scopes), row.created_at, row.revoked_at, row.last_used_at)
