"""The audit log's writer: events go to the database on a background thread, batched.

What each event holds is decided by its callers (``gallery.gallery``, ``gallery.bulk``), with
the shared parts built here; ``gallery.store.audit_log`` says how they are filtered when read
back (``Gallery.audit_log``). No event holds a photo, a chip or an embedding. What happens
when an event cannot be written is ``AuditWriter``'s policy.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from gallery.decision import DecisionRule, rule_fingerprint
from gallery.errors import AuditNotWritten, InvalidArgument
from gallery.store import Store

if TYPE_CHECKING:
    from gallery.results import IdentifiedFace

log = logging.getLogger(__name__)


# The API key on whose behalf this thread (or task) calls the gallery: the HTTP service sets it
# around each request, and every event recorded meanwhile names it in ``detail["by_key"]``.
_acting_key: contextvars.ContextVar[str | None] = contextvars.ContextVar("gallery_acting_key", default=None)


@contextlib.contextmanager
def acting_as(key_name: str | None) -> Iterator[None]:
    """Within the block, audit events record that the API key ``key_name`` made them (None: nobody's)."""
    token = _acting_key.set(key_name)
    try:
        yield
    finally:
        _acting_key.reset(token)


AuditPolicy = Literal["best_effort", "required"]
AUDIT_POLICIES: tuple[AuditPolicy, ...] = ("best_effort", "required")


@dataclass(frozen=True)
class AuditStatus:
    """How this process's audit events fared (``Gallery.audit_status``).

    Attributes:
        policy: ``"best_effort"`` or ``"required"`` (see ``AuditWriter``).
        pending: events not written yet: queued, or held in memory after a failed write and
            retried with the next one.
        lost: events given up on: dropped from a full backlog (oldest first) or still unwritten
            when the gallery was closed. Always 0 under ``"required"``, where a call fails instead.
        last_error: why the last write failed, or None if the last write succeeded.
    """

    policy: AuditPolicy
    pending: int
    lost: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditWriter:
    """Writes audit events; what happens when they cannot be written is the gallery's ``audit`` policy.

    ``"best_effort"`` (the default): events are written on a background thread, so a door's
    answer never waits for the log (identify calls would otherwise each take the database's
    write lock and wait behind an enrolment in another process); events queued meanwhile go in
    one transaction. When a write fails (a read-only or full disk, a damaged database) the call
    still answers; the events are held in memory (at most ``MAX_BACKLOG``, the oldest dropped
    first and counted as lost) and written with the next write that succeeds, and at ``close``;
    one warning line is logged when writes start failing (no traceback: the cause is in the
    line), one when they recover, and one at ``close`` for events lost for good. ``status()``
    counts pending and lost events, so a monitor can alert on them.

    ``"required"``: an event is written before the call that made it returns, on the caller's
    thread; if it cannot be, the call raises ``AuditNotWritten`` (fail closed: identify and
    verify give no answer whose audit is missing). A change (enrol, remove, ...) is committed
    before its event is written, so there the error says the change was made but not audited.
    """

    _STOP = object()
    _MAX_BATCH = 500  # events per transaction when a burst has queued up
    MAX_BACKLOG = 10_000  # unwritten events held in memory (each a few hundred bytes)

    def __init__(self, store: Store, policy: AuditPolicy = "best_effort") -> None:
        self.policy = audit_policy(policy)
        self._store = store
        self._lock = threading.Lock()  # guards the backlog, the counts and (under "required") the writes
        self._backlog: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._lost = 0
        self._last_error: str | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="gallery-audit", daemon=True)
        self._thread.start()

    def put(self, action: str, **fields: Any) -> None:
        """Record an event (under ``"required"``, write it now or raise ``AuditNotWritten``)."""
        key_name = _acting_key.get()
        if key_name is not None:
            fields["detail"] = {**(fields.get("detail") or {}), "by_key": key_name}
        if self.policy == "required":
            with self._lock:
                try:
                    self._store.audit_many([(action, fields)])
                except Exception as error:
                    self._last_error = _one_line(error)
                    raise AuditNotWritten(
                        f"the audit event of this {action} could not be written ({self._last_error}); "
                        + ("no answer is given without it" if action in _DECISIONS else "the change itself was made")
                    ) from error
                self._last_error = None
            return
        self._queue.put((action, fields))

    def flush(self) -> None:
        """Return once every event queued before the call has been written (or failed to be)."""
        self._queue.join()

    def status(self) -> AuditStatus:
        with self._lock:
            return AuditStatus(
                self.policy, self._queue.unfinished_tasks + len(self._backlog), self._lost, self._last_error
            )

    def close(self) -> None:
        """Write what is queued and held (one last try), and stop; events still unwritten are lost."""
        self._queue.put(self._STOP)
        self._thread.join()
        with self._lock:
            if self._backlog:
                self._lost += len(self._backlog)
                log.warning(
                    "%d audit event(s) could not be written and are lost (%s)", len(self._backlog), self._last_error
                )
                self._backlog.clear()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self._MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())  # the only consumer: empty() cannot lie here
            stopping = batch[-1] is self._STOP
            try:
                self._write([item for item in batch if item is not self._STOP])
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _write(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Write the held events, then ``events``; on failure hold them all (never raise: the door must not stop)."""
        with self._lock:
            todo = [*self._backlog, *events]
            if not todo:
                return
            try:
                self._store.audit_many(todo)
            except Exception as error:  # StorageFailure, or anything else: the answer was given already
                if self._last_error is None:
                    log.warning(
                        "could not write %d audit event(s), holding them in memory to retry: %s",
                        len(todo),
                        _one_line(error),
                    )
                self._last_error = _one_line(error)
                self._backlog = collections.deque(todo)
                overflow = len(self._backlog) - self.MAX_BACKLOG
                for _ in range(max(0, overflow)):
                    self._backlog.popleft()
                self._lost += max(0, overflow)
                return
            if self._last_error is not None:
                log.warning("the audit log is writable again: %d held event(s) written", len(self._backlog))
            self._backlog.clear()
            self._last_error = None


_DECISIONS = frozenset({"identify", "verify"})


def audit_policy(value: Any) -> AuditPolicy:
    """``value`` if it is an audit policy, else ``InvalidArgument``."""
    if value not in AUDIT_POLICIES:
        raise InvalidArgument(f"audit must be one of {', '.join(map(repr, AUDIT_POLICIES))}, got {value!r}")
    return value


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).splitlines()) or type(error).__name__


def rule_reference(rule: DecisionRule) -> dict[str, str]:
    """What the audit log keeps of a rule: its kind and fingerprint (``gallery info`` shows the rule behind it)."""
    return {"kind": rule.kind, "fingerprint": rule_fingerprint(rule)}


def identify_detail(results: Sequence[IdentifiedFace], scale: float = 1.0) -> dict[str, Any]:
    """An identify event's detail: each face's outcome, matched person and nearest distance, in photo order,
    and the scale the rule read distances at when the gallery was crowded (``gallery.decision.domain``)."""
    faces = [
        {
            "outcome": r.outcome,
            "person_id": r.match.person_id if r.match else None,
            "distance": r.candidates[0].distance if r.candidates else None,
        }
        for r in results
    ]
    return {"faces": faces} | ({} if scale == 1.0 else {"scale": scale})
