"""What a gallery serving other programs needs besides enrol and identify: ``Gallery.hosting``.

Its API keys (made, listed and revoked with every change audited; looked up by the HTTP
service), the version of the data its answers come from, and whether it can answer at all.
The service (``gallery.service``) is a shell over this and the rest of ``Gallery``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gallery.audit import AuditWriter
from gallery.errors import GalleryError
from gallery.store import Store
from gallery.store.keys import SCOPES, ApiKey
from gallery.store.schema import utcnow

__all__ = ["SCOPES", "ApiKey", "DataVersion", "Hosting", "NewKey"]


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``secret`` is the key itself, shown this once and stored only as a hash."""

    key: ApiKey
    secret: str


@dataclass(frozen=True)
class DataVersion:
    """Which data an answer comes from.

    Attributes:
        version: the gallery's faces generation: it changes whenever any process adds or removes a face.
        age_s: how old this host's view of the data may be, in seconds: 0.0 for a gallery that checks
            its database before every search (every backend today).
    """

    version: int
    age_s: float

    def to_dict(self) -> dict[str, object]:
        return {"version": self.version, "age_s": self.age_s}


class Hosting:
    """A gallery's API keys, data version and readiness (use ``Gallery.hosting``)."""

    def __init__(self, store: Store, audit: AuditWriter) -> None:
        self._store = store
        self._audit = audit

    def create_key(self, name: str, scopes: Sequence[str]) -> NewKey:
        """Make an API key named ``name`` with ``scopes`` (``SCOPES``); audited.

        Raises:
            InvalidName, InvalidArgument (scopes), KeyNameTaken.
        """
        key, secret = self._store.keys.create(name, scopes)
        self._audit.put("key", outcome="created", detail={"key": key.name, "scopes": list(key.scopes)})
        return NewKey(key, secret)

    def keys(self) -> list[ApiKey]:
        """Every API key, valid and revoked, by name (never the keys themselves)."""
        return self._store.keys.all()

    def revoke_key(self, name: str) -> ApiKey:
        """Revoke the key ``name``: services stop accepting it within their key cache's lifetime; audited.

        Raises:
            KeyNotFound: no key has this name.
        """
        key = self._store.keys.revoke(name)
        self._audit.put("key", outcome="revoked", detail={"key": key.name})
        return key

    def key_for(self, secret: str) -> ApiKey | None:
        """The stored key ``secret`` is (revoked ones too: check ``ApiKey.active``), or None. One database read."""
        return self._store.keys.find(secret)

    def mark_keys_used(self, names: Iterable[str]) -> None:
        """Record that the keys ``names`` were accepted just now (``ApiKey.last_used_at``)."""
        self._store.keys.mark_used(names, utcnow())

    def data_version(self) -> DataVersion:
        """The version of the data an answer given now comes from."""
        return DataVersion(self._store.generation(), 0.0)

    def unready_reason(self) -> str | None:
        """Why this gallery cannot answer now (its database cannot be read), or None when it can."""
        try:
            self._store.generation()
        except GalleryError as error:
            return f"{type(error).__name__}: {error}"
        return None
