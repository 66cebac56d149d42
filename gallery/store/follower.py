"""The follower: a thread that keeps a host's replica current with a database server.

It listens for the writers' wake-ups (``Backend.listen``: LISTEN/NOTIFY on PostgreSQL) and, on
each one and at least every ``check_interval_s`` whatever happens, asks the database for its
generation and catches the replica up (``IndexReplica.check``). The periodic check is what
covers a lost notification or a listener connection that died silently (a known failure of
products that sync this way: a second node went stale without a word). Searches never ask the
database; they read the replica's snapshot and its age.

When the database is unreachable the follower logs one line, retries every
``check_interval_s`` and logs one line when it is back; meanwhile the replica ages, and identify
refuses once it is older than the maximum staleness (``IndexReplica.fresh``). Each catch-up is
recorded in ``replica_hosts`` (the generation this host applied), so a removal can tell which
hosts still hold the person; ``stop`` takes the host off it (``left``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from gallery.errors import StoreError
from gallery.store.replica import IndexReplica

logger = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL_S = 2.0
STOP_POLL_S = 0.1  # how soon the thread notices ``stop`` while it waits for a wake-up
HEARTBEAT_S = 30.0  # how often a host says it is alive in ``replica_hosts`` when nothing changes


class Follower:
    """Runs the follower thread of one replica until ``stop``."""

    def __init__(
        self,
        listen: Callable[[], AbstractContextManager[Callable[[float], bool]]],
        replica: IndexReplica,
        *,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        applied: Callable[[int], None] | None = None,
        left: Callable[[], None] | None = None,
    ) -> None:
        self._listen = listen
        self._replica = replica
        self._interval = check_interval_s
        self._applied = applied or (lambda generation: None)
        self._left = left or (lambda: None)
        self._stopping = threading.Event()
        self._failing = False
        self._recorded_at = -HEARTBEAT_S
        self._thread = threading.Thread(target=self._run, name="gallery-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; returns within ``STOP_POLL_S``, or as soon as a check under way ends."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 10)
        try:
            self._left()  # this host no longer follows: no removal should wait for it
        except StoreError as error:  # the database is down: it stops counting the host after a while
            logger.warning("could not record that the gallery's replica stopped following: %s", error)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._listen() as wait:
                    self._check()
                    while not self._stopping.is_set():
                        self._wake_up_or_interval(wait)
                        self._check()
            except StoreError as error:
                if not self._failing:
                    logger.warning("the gallery's replica cannot follow the database (retrying): %s", error)
                    self._failing = True
                self._stopping.wait(self._interval)
            except Exception:  # a bug must not silently stop the follower: the replica would age
                logger.exception("the gallery's replica follower failed (retrying)")
                self._stopping.wait(self._interval)

    def _wake_up_or_interval(self, wait: Callable[[float], bool]) -> None:
        """Wait for a wake-up, at most one check interval, in slices short enough to notice ``stop``.

        The listener cannot be interrupted from another thread: one long wait would hold a
        closing store (a door shutting down) for the whole interval.
        """
        deadline = time.monotonic() + self._interval
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or wait(min(left, STOP_POLL_S)):
                return

    def _check(self) -> None:
        before = self._replica.snapshot.generation
        snapshot = self._replica.check()
        if snapshot.generation != before:
            # The file on this host's disk too: a removed person's embedding must not stay in it.
            self._replica.sync_and_save()
        if self._failing:
            logger.warning("the gallery's replica follows the database again (generation %d)", snapshot.generation)
            self._failing = False
        if snapshot.generation != before or time.monotonic() - self._recorded_at > HEARTBEAT_S:
            self._applied(snapshot.generation)
            self._recorded_at = time.monotonic()
