"""The hosts following one database: each records the generation its replica applied.

A host is a home folder (``host-id`` in it holds a random id made once), so two galleries on
one machine are two hosts. Rows hold the machine's name and a generation, nothing else: a
removal compares its own generation with theirs to say which hosts may still hold the person
(``behind``). A host that closed (``record_left``), or stopped reporting longer ago than
``CONNECTED_S``, is not counted as connected; it catches up from the change log whenever it
comes back.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select, update

from gallery.errors import StorageFailure
from gallery.store.backend import Backend
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
        values = {"generation": generation, "seen_at": now, "host": socket.gethostname()[:200]}
        if session.get(ReplicaHost, host) is None:
            session.add(ReplicaHost(host_id=host, **values))
        else:
            session.execute(update(ReplicaHost).where(ReplicaHost.host_id == host).values(**values))


def record_left(backend: Backend, host: str) -> None:
    """Say that host ``host`` stopped following (closed cleanly): it is no longer connected.

    Until it reopens, no removal waits for it; its replica catches up from the change log then.
    """
    with backend.write() as session:
        session.execute(delete(ReplicaHost).where(ReplicaHost.host_id == host))


def connected(backend: Backend) -> list[HostState]:
    """The hosts that reported within ``CONNECTED_S``, by name."""
    since = utcnow() - timedelta(seconds=CONNECTED_S)
    with backend.read() as session:
        rows = session.scalars(select(ReplicaHost).where(ReplicaHost.seen_at >= since).order_by(ReplicaHost.host))
        return [HostState(r.host_id, r.host, r.generation, r.seen_at) for r in rows]


def behind(backend: Backend, generation: int, *, besides: str, wait_s: float = 0.0) -> list[HostState]:
    """The connected hosts other than ``besides`` whose replica has not applied ``generation``, after
    waiting up to ``wait_s`` for them to."""
    deadline = time.monotonic() + wait_s
    while True:
        lagging = [h for h in connected(backend) if h.generation < generation and h.host_id != besides]
        if not lagging or time.monotonic() >= deadline:
            return lagging
        time.sleep(0.05)
