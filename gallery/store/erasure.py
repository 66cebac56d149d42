"""An erasure a removal could not finish, recorded so that any process finishes it.

A removal deletes the rows (``secure_delete`` zeroes their pages), saves the index without the
person (or deletes it: it is a cache) and empties the WAL. When the index files can be neither
rewritten nor deleted (a read-only or immutable folder), or a reader keeps the WAL busy, the
removal reports what remains and records it in the settings (``erasure_pending``); the next
open, or write of any kind, by any process, finishes it and clears the record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy import delete

from gallery.errors import StoreError
from gallery.store.backend import Backend
from gallery.store.schema import Setting, utcnow
from gallery.store.settings import Settings

# The setting that says a removal's erasure is not finished: which files may still hold old copies.
ERASURE_PENDING = "erasure_pending"
PENDING_INDEX = "index file"  # faces.faiss (or a slice file) still holds a removed face
PENDING_DATABASE = "database"  # gallery.db and its WAL still hold removed rows' old pages
# How long opening, or a write finishing another's erasure, waits for readers to empty the WAL.
BRIEF_ERASE_WAIT_S = 0.2

logger = logging.getLogger(__name__)


def outstanding(index_clean: bool, wal_cleared: bool) -> tuple[str, ...]:
    """What an erasure left: the index file (neither rewritten nor deleted), the database (WAL busy)."""
    return (() if index_clean else (PENDING_INDEX,)) + (() if wal_cleared else (PENDING_DATABASE,))


class PendingErasure:
    """Records an unfinished erasure and finishes it, under the gallery's write lock."""

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        write_lock: Callable[[], AbstractContextManager[None]],
        save_index: Callable[[], bool],
    ) -> None:
        self._db = backend
        self._settings = settings
        self._write_lock = write_lock
        self._save_index = save_index

    def pending(self) -> tuple[str, ...]:
        """What a removal (by any process) could not erase yet; empty when none."""
        marker = self._settings.get(ERASURE_PENDING)
        return tuple(marker.get("pending", ())) if isinstance(marker, dict) else ()

    def mark(self, pending: tuple[str, ...]) -> None:
        """Record an unfinished erasure, so that the next open or write of any process finishes it."""
        try:
            with self._db.write() as session:
                value = {"pending": list(pending), "since": utcnow().isoformat()}
                self._db.put_settings(session, {ERASURE_PENDING: value}, utcnow())
        except StoreError as error:  # a full disk: the next open still empties the WAL and rebuilds the index
            logger.warning("could not record the pending erasure (%s): %s", ", ".join(pending), error)

    def finish(self) -> tuple[str, ...]:
        """Finish an erasure a removal left pending (any process's); what is still pending after.

        Cheap when none is: one settings read. Otherwise takes the write lock, saves the index
        (or deletes it) and empties the WAL, waiting briefly for readers, and clears the mark
        once both are done. Failures are logged: this runs after another operation succeeded.
        """
        pending: tuple[str, ...] = ()
        try:
            pending = self.pending()
            if not pending:
                return ()
            with self._write_lock():
                if not self.pending():
                    return ()
                index_clean = self._save_index()
                left = outstanding(index_clean, self._db.erase_deleted_copies(wait_s=BRIEF_ERASE_WAIT_S))
                if not left:
                    with self._db.write() as session:
                        session.execute(delete(Setting).where(Setting.key == ERASURE_PENDING))
                    self._db.erase_deleted_copies(wait_s=BRIEF_ERASE_WAIT_S)
                    logger.info("finished the erasure left pending (%s)", ", ".join(pending))
                return left
        except StoreError as error:
            logger.warning("could not finish the pending erasure (%s): %s", ", ".join(pending), error)
            return pending
