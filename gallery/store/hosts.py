"""The hosts following one database: each records the generation its replica applied.

A host is a home folder (``host-id`` in it holds a random id made once), so two galleries on
one machine are two hosts. Rows hold the machine's name and a generation, nothing else: a
removal compares its own generation with theirs to say which hosts may still hold the person
in their index files (``behind``), whether they are running or not — a host shut down keeps
its ``faces.faiss`` until it opens again and catches up. A removal waits a moment only for the
connected ones (running, reported within ``CONNECTED_S``; a host that closed says so). A host
taken out of service for good is forgotten with ``forget`` (``gallery hosts forget``) once its
folder is wiped.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from gallery.errors import HostNotFound, StorageFailure
from gallery.store.backend import Backend
from gallery.store.follower import Follower
from gallery.store.replica import IndexReplica
from gallery.store.schema import ReplicaHost, utcnow

HOST_ID_FILE = "host-id"
CONNECTED_S = 120.0  # a host that reported within this is connected (it reports at least every 30 s)
HOSTS_WAIT_S = 3.0  # how long a removal waits for the connected hosts to apply it before it returns


@dataclass(frozen=True)
class HostState:
    """One host's last report."""

    host_id: str
    host: str
    generation: int
    seen_at: datetime
    left_at: datetime | None = None

    @property
    def connected(self) -> bool:
        """Running and following: not closed, and reported within ``CONNECTED_S`` (it reports every 30 s)."""
        return self.left_at is None and utcnow() - self.seen_at <= timedelta(seconds=CONNECTED_S)


def host_id(home: Path) -> str:
    """This home folder's host id, made (random, 0600) by the first process to open it."""
    path = home / HOST_ID_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):  # another process created it a moment ago and is writing it
            if made := path.read_text().strip():
                return made
            time.sleep(0.01)
        raise StorageFailure(f"{path} is empty: delete it and the host gets a new id") from None
    made = secrets.token_hex(16)
    with os.fdopen(descriptor, "w") as file:
        file.write(made)
    return made


def record_applied(backend: Backend, host: str, generation: int) -> None:
    """Say that host ``host`` has applied ``generation`` (and is alive)."""
    now = utcnow()
    with backend.write() as session:
        values = {"generation": generation, "seen_at": now, "left_at": None, "host": socket.gethostname()[:200]}
        if session.get(ReplicaHost, host) is None:
            session.add(ReplicaHost(host_id=host, **values))
        else:
            session.execute(update(ReplicaHost).where(ReplicaHost.host_id == host).values(**values))


def record_left(backend: Backend, host: str) -> None:
    """Say that host ``host`` closed cleanly: no removal waits for it until it opens again (and catches up)."""
    with backend.write() as session:
        session.execute(update(ReplicaHost).where(ReplicaHost.host_id == host).values(left_at=utcnow()))


def known(backend: Backend) -> list[HostState]:
    """Every host that has followed this database and not been forgotten, by name."""
    with backend.read() as session:
        rows = session.scalars(select(ReplicaHost).order_by(ReplicaHost.host, ReplicaHost.host_id))
        return [HostState(r.host_id, r.host, r.generation, r.seen_at, r.left_at) for r in rows]


def forget(backend: Backend, host: str) -> HostState:
    """Drop host ``host`` (its id, or the id's first 8 characters or more) from the list.

    Raises:
        HostNotFound: no host, or several, have such an id.
    """
    with backend.write() as session:
        rows = session.scalars(select(ReplicaHost).where(ReplicaHost.host_id.startswith(host, autoescape=True))).all()
        if len(rows) != 1 or len(host) < 8:
            raise HostNotFound(f"no single host has an id starting {host!r} (give at least 8 characters)")
        row = rows[0]
        session.delete(row)
        return HostState(row.host_id, row.host, row.generation, row.seen_at, row.left_at)


def behind(backend: Backend, generation: int, *, besides: str, wait_s: float = 0.0) -> list[HostState]:
    """The hosts other than ``besides`` whose replica has not applied ``generation``, after waiting up
    to ``wait_s`` for the connected ones to."""
    deadline = time.monotonic() + wait_s
    while True:
        lagging = [h for h in known(backend) if h.generation < generation and h.host_id != besides]
        if not any(h.connected for h in lagging) or time.monotonic() >= deadline:
            return lagging
        time.sleep(0.05)


class Site:
    """This host among those following one database: its follower thread, its reports, and the others' state.

    On SQLite (one machine) there is nothing to follow and no other host: ``follow`` is not
    called and ``not_yet_applied`` is empty.
    """

    def __init__(self, backend: Backend, home: Path, replica: IndexReplica) -> None:
        self._backend = backend
        self._replica = replica
        self.host_id = host_id(home)
        self._follower: Follower | None = None

    def follow(self, check_interval_s: float) -> None:
        """Report this host (before its first answer) and start the thread that keeps its replica current."""
        self._applied(self._replica.snapshot.generation)
        self._follower = Follower(
            self._backend.listen,
            self._replica,
            check_interval_s=check_interval_s,
            applied=self._applied,
            left=lambda: record_left(self._backend, self.host_id),
        )
        self._follower.start()

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()

    def _applied(self, generation: int) -> None:
        record_applied(self._backend, self.host_id, generation)

    def not_yet_applied(self, generation: int) -> tuple[str, ...]:
        """The other hosts that hold data older than ``generation`` (a removal's), after waiting up to
        ``HOSTS_WAIT_S`` for the connected ones: ``"host NAME (ID)"``, ``", offline"`` for the others."""
        if not self._backend.server:
            return ()
        lagging = behind(self._backend, generation, besides=self.host_id, wait_s=HOSTS_WAIT_S)
        return tuple(f"host {h.host} ({h.host_id[:8]}{'' if h.connected else ', offline'})" for h in lagging)

    def hosts(self) -> list[HostState]:
        """Every host following the database, and the generation each has applied (none on SQLite)."""
        return known(self._backend)

    def forget(self, host: str) -> HostState:
        """Forget a host taken out of service (its folder wiped), so removals stop naming it (``forget``)."""
        return forget(self._backend, host)
