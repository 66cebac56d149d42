"""API keys at the door of every ``/v1`` route: ``Authorization: Bearer <key>``, its scope, its rate.

A key is looked up in the gallery's database once per ``key_cache_s`` per host (by its SHA-256,
which is also what the cache holds), so a busy door costs no query per request and a revoked
key stops working on every host within ``key_cache_s`` (while the database is unreachable a key
keeps its last known standing: the replica's staleness bound limits how long). Unknown keys are
cached too, so a flood
of made-up keys cannot turn into a flood of queries. Keys are never logged: they travel in a
header, and only their names appear in the audit log and in errors.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from gallery.errors import DatabaseUnavailable, NotAuthenticated, ScopeDenied
from gallery.hosting import ApiKey, Hosting
from gallery.store.keys import key_digest

# Entries the key cache holds at most; past it, it starts afresh (bounds memory under a flood of made-up keys).
KEY_CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Caller:
    """Who is asking: the key's name (recorded in the audit log) and its scopes."""

    key_name: str
    scopes: tuple[str, ...]


class KeyCache:
    """Key digest -> the stored key (or None: unknown), each entry trusted for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def caller(self, hosting: Hosting, secret: str | None, scope: str) -> Caller:
        """The caller whose bearer key is ``secret``, allowed ``scope`` (may read the database: call off the loop).

        Raises:
            NotAuthenticated: no bearer key, or an unknown or revoked one.
            ScopeDenied: the key lacks ``scope``.
        """
        if not secret:
            raise NotAuthenticated("this route needs an API key: send the header 'Authorization: Bearer <key>'")
        key = self._lookup(hosting, secret)
        if key is None or not key.active:
            raise NotAuthenticated("the API key is unknown or revoked")
        if not key.allows(scope):
            raise ScopeDenied(f"API key {key.name!r} ({', '.join(key.scopes)}) lacks the {scope!r} scope")
        with self._lock:
            self._used.add(key.name)
        return Caller(key.name, key.scopes)

    def cached(self, secret: str | None) -> bool:
        """Whether the key ``secret`` can be checked without the database (no thread needed)."""
        if not secret:
            return True
        with self._lock:
            entry = self._entries.get(key_digest(secret))
        return entry is not None and time.monotonic() < entry[0]

    def take_used(self) -> set[str]:
        """The names of the keys accepted since the last call (for ``last_used_at``)."""
        with self._lock:
            used, self._used = self._used, set()
        return used

    def _lookup(self, hosting: Hosting, secret: str) -> ApiKey | None:
        digest = key_digest(secret)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(digest)
        if entry is not None and now < entry[0]:
            return entry[1]
        try:
            key = hosting.key_for(secret)
        except DatabaseUnavailable:
            if entry is None:
                raise
            # Through a database outage a key keeps the standing it last had: the door goes on
            # answering from its replica, which refuses by itself past the maximum staleness.
            return entry[1]
        with self._lock:
            if len(self._entries) >= KEY_CACHE_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (now + self.ttl_s, key)
        return key
