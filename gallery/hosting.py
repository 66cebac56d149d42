"""What a gallery serving other programs needs besides enrol and identify: ``Gallery.hosting``.

Its API keys (made, listed and revoked with every change audited; looked up by the HTTP
service), the version of the data its answers come from, whether it can answer at all, and a
person by id (how other programs refer to the people they were told of; the CLI names them).
The service (``gallery.service``) is a shell over this and the rest of ``Gallery``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gallery.audit import AuditWriter
from gallery.errors import GalleryError, PersonNotFound
from gallery.results import DataState, Person
from gallery.store import Store
from gallery.store.hosts import HostState
from gallery.store.keys import SCOPES, ApiKey
from gallery.store.schema import utcnow

__all__ = ["SCOPES", "ApiKey", "Hosting", "NewKey"]


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``secret`` is the key itself, shown this once and stored only as a hash."""

    key: ApiKey
    secret: str


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

    def person(self, person_id: int) -> Person:
        """The person with id ``person_id`` (one row read, not the whole list).

        Raises:
            PersonNotFound: no person has this id.
        """
        found = self._store.person(person_id)
        if found is None:
            raise PersonNotFound(f"no person has id {person_id}")
        return found

    def hosts(self) -> list[HostState]:
        """The hosts sharing this gallery's database (PostgreSQL) and the generation each has applied."""
        return self._store.site.hosts()

    def forget_host(self, host: str) -> HostState:
        """Forget a host taken out of service; audited.

        Raises:
            HostNotFound: no single host has an id starting ``host`` (at least 8 characters).
        """
        forgotten = self._store.site.forget(host)
        self._audit.put("host", outcome="forgotten", detail={"host": forgotten.host, "host_id": forgotten.host_id})
        return forgotten

    def data_version(self) -> DataState:
        """The version of the data an answer given now comes from, and its age.

        Raises:
            DataTooStale: this host's replica is older than the maximum staleness.
        """
        return DataState(*self._store.data_state())

    def unready_reason(self) -> str | None:
        """Why this gallery cannot answer now (its database cannot be read, or this host's replica is
        older than the maximum staleness), or None when it can."""
        try:
            self._store.data_state()
        except GalleryError as error:
            return f"{type(error).__name__}: {error}"
        return None
