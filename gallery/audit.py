"""The audit log's writer: events go to the database on a background thread, batched.

What each event holds is decided by its callers (``gallery.gallery``, ``gallery.bulk``), with
the shared parts built here; ``gallery.store.audit_log`` says how they are filtered when read
back (``Gallery.audit_log``). No event holds a photo, a chip or an embedding.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gallery.decision import DecisionRule, rule_fingerprint
from gallery.store import Store

if TYPE_CHECKING:
    from gallery.results import IdentifiedFace

log = logging.getLogger(__name__)


class AuditWriter:
    """Writes audit events on a background thread, so a door's answer never waits for the log.

    Identify calls would otherwise each take the database's write lock and wait behind an
    enrolment in another process. Events are written in order, those queued meanwhile in one
    transaction; ``flush`` waits until everything queued so far is written, ``close`` drains the
    queue and stops.
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

    def flush(self) -> None:
        """Return once every event queued before the call has been written (or failed to be)."""
        self._queue.join()

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
            try:
                if events:
                    self._store.audit_many(events)
            except Exception:  # the log must never take the door down; say so loudly instead
                log.exception("could not write %d audit event(s)", len(events))
            finally:
                for _ in batch:
                    self._queue.task_done()


def rule_reference(rule: DecisionRule) -> dict[str, str]:
    """What the audit log keeps of a rule: its kind and fingerprint (``gallery info`` shows the rule behind it)."""
    return {"kind": rule.kind, "fingerprint": rule_fingerprint(rule)}


def identify_detail(results: Sequence[IdentifiedFace]) -> dict[str, Any]:
    """An identify event's detail: each face's outcome, matched person and nearest distance, in photo order."""
    return {
        "faces": [
            {
                "outcome": r.outcome,
                "person_id": r.match.person_id if r.match else None,
                "distance": r.candidates[0].distance if r.candidates else None,
            }
            for r in results
        ]
    }
