"""The audit log's writer: events go to the database on a background thread, batched.

What each event holds is decided by its callers (``gallery.gallery``, ``gallery.bulk``);
``gallery.store.audit_log`` says how they are filtered when read back (``Store.audit_log``).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from gallery.store import Store

log = logging.getLogger(__name__)


class AuditWriter:
    """Writes audit events on a background thread, so a door's answer never waits for the log.

    Identify calls would otherwise each take the database's write lock and wait behind an
    enrolment in another process. Events are written in order, those queued meanwhile in one
    transaction; ``close`` drains the queue.
    """

    _STOP = object()
    _MAX_BATCH = 500  # events per transaction when a burst has queued up

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="gallery-audit", daemon=True)
        self._thread.start()

    def put(self, action: str, **fields: Any) -> None:
        self._queue.put((action, fields))

    def close(self) -> None:
        self._queue.put(self._STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self._MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())  # the only consumer: empty() cannot lie here
            stopping = batch[-1] is self._STOP
            events = [item for item in batch if item is not self._STOP]
            if not events:
                continue
            try:
                self._store.audit_many(events)
            except Exception:  # the log must never take the door down; say so loudly instead
                log.exception("could not write %d audit event(s)", len(events))
