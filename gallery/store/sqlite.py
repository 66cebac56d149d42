"""The SQLite backend: everything the store does that only SQLite does, behind ``Backend``.

Connection pragmas, transactions, automatic migration, the cross-process file lock, the
driver's raw cursor for hot and bulk reads, SQLite's upsert and JSON functions, WAL
checkpoints (erasure) and integrity checks. ``Store`` reaches SQLite only through
``SqliteBackend`` (``gallery.store.backend.Backend``).

Every connection runs in WAL mode (readers never wait for the writer) with foreign keys
enforced, a 30 s busy timeout, ``secure_delete`` (deleted rows are overwritten with zeros,
so a removed person's embedding and chip do not linger in free pages) and
``synchronous=FULL``. With WAL, ``NORMAL`` is already safe against corruption, but a
transaction committed just before a power cut may be rolled back; ``FULL`` syncs the WAL
at every commit, so an enrolment or a removal that was reported done stays done (a
removal that silently comes back would resurrect an erased person). It costs one fsync
per write transaction, which enrolments and removals can afford.

pysqlite's implicit transactions are switched off and ``BEGIN`` is issued explicitly, so
reads see one consistent snapshot and writes start with ``BEGIN IMMEDIATE``: taking the
write lock up front means a writer waits for another (busy timeout) instead of failing
with SQLITE_BUSY when it upgrades a read to a write.

Opening migrates the database to the newest schema under the gallery's file lock, so
several processes opening one gallery at once migrate it exactly once.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import filelock
import numpy as np
from sqlalchemy import URL, ColumnElement, Connection, Engine, Select, create_engine, event, exists, func, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from gallery.errors import NotAGallery, StorageFailure, StoreBusy, StoreError
from gallery.store.schema import HEAD_REVISION, AuditEntry, Setting

BUSY_TIMEOUT_MS = 30_000
CONNECTION_PRAGMAS = (
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",  # first, so switching to WAL below waits too
    "PRAGMA foreign_keys=ON",
    "PRAGMA secure_delete=ON",
    "PRAGMA synchronous=FULL",
)
_BEGIN_OPTION = "gallery_sqlite_begin"
_GENERATION_SQL = "SELECT faces_generation FROM store_state WHERE id = 1"
PRIVATE_FILE_MODE = 0o600  # every file the gallery creates: biometric data is nobody else's to read
_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit


def _configure_connection(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    """Set every pragma on a new connection and hand transaction control to SQLAlchemy's events."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(CONNECTION_PRAGMAS[0])
        (mode,) = cursor.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StoreError(f"SQLite refused WAL mode (got {mode!r}); is the gallery on a network file system?")
        for pragma in CONNECTION_PRAGMAS[1:]:
            cursor.execute(pragma)
    finally:
        cursor.close()


def prepare_files(path: Path) -> None:
    """Create the database file private (0600, whatever the umask) and refuse special files.

    SQLite creates a database 0644 and gives its WAL and shared-memory files the database's
    mode, so a database created here 0600 keeps all three private. A FIFO, device or folder
    where one of them should be would make SQLite block or fail obscurely: it is refused, and
    checked without blocking (O_NONBLOCK). An existing file's mode is left as its owner set it.

    Raises:
        NotAGallery: one of the database's files is not a regular file.
        StorageFailure: the database file cannot be created or opened.
    """
    flags = os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags | os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        created = True
    except OSError as error:
        if not os.path.lexists(path):
            raise StorageFailure(f"cannot create the gallery database {path}: {error.strerror}") from None
        created = False
        try:  # read-only: a gallery on a read-only medium is still searchable
            descriptor = os.open(path, flags | os.O_RDONLY)
        except OSError as error:
            raise StorageFailure(f"cannot open the gallery database {path}: {error.strerror}") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if created:
            os.fchmod(descriptor, PRIVATE_FILE_MODE)
    finally:
        os.close(descriptor)
    _refuse_special(path, mode)
    for companion in (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", ".lock")):
        with suppress(FileNotFoundError):
            _refuse_special(companion, os.lstat(companion).st_mode)


def _refuse_special(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise NotAGallery(f"{path} is not a regular file (mode {stat.filemode(mode)}): move it away")


def _begin(connection: Connection) -> None:
    """Start each transaction explicitly: DEFERRED for reads, IMMEDIATE for writes."""
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(path: Path) -> Engine:
    """A pooled SQLAlchemy engine on ``path`` with the gallery's pragmas and transaction handling."""
    engine = create_engine(
        URL.create("sqlite", database=str(path)),
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        pool_size=8,
        max_overflow=32,
    )
    event.listen(engine, "connect", _configure_connection)
    event.listen(engine, "begin", _begin)
    event.listen(engine, "handle_error", _drop_read_only_connections)
    return engine


def _drop_read_only_connections(context: ExceptionContext) -> None:
    """Treat "attempt to write a readonly database" like a lost connection: the pool drops them all.

    SQLite opens a file it may not write (a read-only mount, ``chattr +i``) read-only instead of
    failing, and such a connection stays read-only after the file is writable again: left in the
    pool, it would fail the writes it is handed, at random, long after the outage. A lost
    connection is discarded, and every connection the pool made before it is replaced.
    """
    original = context.original_exception
    if isinstance(original, sqlite3.OperationalError) and "readonly" in str(original):
        context.is_disconnect = True


def _is_damaged_file(error: DBAPIError) -> bool:
    """Whether SQLite rejected the file itself (not a lock or I/O hiccup)."""
    original = error.orig
    return isinstance(original, sqlite3.DatabaseError) and not isinstance(original, sqlite3.OperationalError)


class SqliteBackend:
    """One gallery database file: engine, exclusive write lock, transactions and SQLite's own reads."""

    server = False  # one machine: replicas read the generation before each search

    def __init__(self, path: Path, engine: Engine, lock_timeout: float) -> None:
        self.path = path
        self.description = str(path)
        self.lock_path = path.with_name(path.name + ".lock")
        self._engine = engine
        self._write_engine = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        self._lock_timeout = lock_timeout
        self._file_lock = filelock.FileLock(self.lock_path, timeout=lock_timeout, mode=PRIVATE_FILE_MODE)
        self._thread_lock = threading.RLock()

    @classmethod
    def open(cls, path: Path, *, lock_timeout: float = 60.0) -> SqliteBackend:
        """Open (creating if needed) and migrate the gallery database at ``path``.

        Args:
            path: the SQLite file; its folder must exist.
            lock_timeout: seconds to wait for another process's write lock.

        Raises:
            SchemaTooNew: the file was written by a newer gallery.
            NotAGallery: the file is not a (readable) gallery database.
            StoreBusy: another process held the lock for longer than ``lock_timeout``.
        """
        prepare_files(path)
        database = cls(path, make_engine(path), lock_timeout)
        try:
            database._migrate()
        except BaseException:
            database.close()
            raise
        return database

    def _migrate(self) -> None:
        """Bring the schema to the newest revision, checking first without the lock."""
        if self._recorded_revision() == HEAD_REVISION:
            return  # the common case, answered without importing Alembic (a third of a cold start)
        from gallery.store import migrate

        head = migrate.head_revision()
        try:
            with self._engine.connect() as connection:
                if migrate.current_revision(connection) == head:
                    return
            with self.exclusive(), self._write_engine.connect() as connection:
                # Another process may have migrated while this one waited for the lock.
                current = migrate.current_revision(connection)
                connection.rollback()
                if current != head:
                    upgrade(connection, "head")
        except DBAPIError as error:
            if _is_damaged_file(error):
                raise NotAGallery(f"{self.path} is not a readable gallery database: {error.orig}") from error
            raise StorageFailure(f"cannot open the gallery database {self.path}: {error.orig}") from error

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the gallery's write lock: one thread of this process, one process on the machine.

        Reentrant in the holding thread.

        Raises:
            StoreBusy: the lock was not obtained within the lock timeout.
        """
        if not self._thread_lock.acquire(timeout=self._lock_timeout):
            raise StoreBusy(f"another thread held the gallery's write lock for over {self._lock_timeout:g} s")
        try:
            try:
                self._file_lock.acquire()
            except filelock.Timeout as error:
                raise StoreBusy(f"another process held {self.lock_path} for over {self._lock_timeout:g} s") from error
            except OSError as error:
                raise StorageFailure(f"cannot take the gallery's lock {self.lock_path}: {error}") from error
            try:
                yield
            finally:
                self._file_lock.release()
        finally:
            self._thread_lock.release()

    @contextmanager
    def failures_translated(self) -> Iterator[None]:
        """Turn SQLite's failures (other than constraint violations) into ``StorageFailure``."""
        try:
            yield
        except IntegrityError:
            raise
        except DBAPIError as error:
            raise StorageFailure(f"the gallery database {self.path} failed: {error.orig}") from error

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session in one read transaction: every query sees the same snapshot."""
        with self.failures_translated(), Session(self._engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction (BEGIN IMMEDIATE), committed on success."""
        with (
            self.failures_translated(),
            Session(self._write_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def listen(self) -> Iterator[Callable[[float], bool]]:
        """SQLite announces nothing (replicas read the generation before each search): a wait that only waits."""
        never = threading.Event()
        yield never.wait

    def faces_generation(self) -> int:
        return int(self._read_scalar(_GENERATION_SQL))

    def _read_scalar(self, sql: str) -> Any:
        """The first value of one read-only statement, run outside any explicit transaction.

        The cheapest read there is (no BEGIN/ROLLBACK round trip): for hot-path checks.
        """
        with self.failures_translated(), self._engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            try:
                row = raw.execute(sql).fetchone()
            except sqlite3.Error as error:
                raise StorageFailure(f"the gallery database {self.path} failed: {error}") from error
        return None if row is None else row[0]

    def schema_revision(self) -> str | None:
        """The database's Alembic revision."""
        recorded = self._recorded_revision()
        if recorded == HEAD_REVISION:
            return recorded
        from gallery.store import migrate

        with self._engine.connect() as connection:
            return migrate.current_revision(connection)

    def _recorded_revision(self) -> str | None:
        """The revision in ``alembic_version`` read directly, or None if that cannot be done simply."""
        try:
            with self._engine.connect() as connection:
                raw = connection.connection.driver_connection
                assert raw is not None
                rows = raw.execute("SELECT version_num FROM alembic_version").fetchall()
        except (sqlite3.Error, DBAPIError):
            return None  # no table yet, or a damaged file: the full check says which
        return rows[0][0] if len(rows) == 1 else None

    def erase_deleted_copies(self, *, wait_s: float | None = None) -> bool:
        """Copy the WAL into the database and empty it; False if readers kept it from finishing.

        With ``secure_delete`` the deleted rows' pages are zeroed in the database file, but
        their old images stay in the WAL until it is checkpointed: after a removal this is what
        erases them from it.

        Args:
            wait_s: how long to wait for other connections' transactions to end (the busy
                timeout, 30 s, when None).
        """
        wait_ms = BUSY_TIMEOUT_MS if wait_s is None else int(wait_s * 1000)
        with self.failures_translated(), self._engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            raw.execute(f"PRAGMA busy_timeout={wait_ms}")
            try:
                busy, _log_frames, _checkpointed = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError:  # locked past the wait: a later checkpoint finishes
                return False
            finally:
                raw.execute(CONNECTION_PRAGMAS[0])
        return busy == 0

    # ---- reads through the driver's cursor, inside a session's transaction ------------

    def face_ids(self, session: Session, model: str, *, above: int = -1) -> np.ndarray:
        cursor = _cursor(session).execute("SELECT id FROM faces WHERE model = ? AND id > ? ORDER BY id", (model, above))
        return np.fromiter((row[0] for row in cursor), dtype=np.int64)

    def face_count(self, session: Session, model: str) -> int:
        return int(_cursor(session).execute("SELECT count(*) FROM faces WHERE model = ?", (model,)).fetchone()[0])

    def people_count(self, session: Session) -> int:
        return int(_cursor(session).execute("SELECT count(*) FROM people").fetchone()[0])

    def face_owners(self, session: Session, model: str) -> tuple[np.ndarray, np.ndarray]:
        cursor = _cursor(session).execute("SELECT id, person_id FROM faces WHERE model = ? ORDER BY id", (model,))
        pairs = np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, 2)
        return pairs[:, 0].copy(), pairs[:, 1].copy()

    def people_names(self, session: Session, person_ids: Sequence[int]) -> dict[int, str]:
        cursor = _cursor(session)
        wanted = [int(i) for i in person_ids]
        names: dict[int, str] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            names.update(cursor.execute(f"SELECT id, name FROM people WHERE id IN ({marks})", chunk).fetchall())
        return names

    def face_rows(
        self, session: Session, model: str, ids: np.ndarray | None
    ) -> tuple[int, Iterable[tuple[int, int, bytes]]]:
        cursor = _cursor(session)
        if ids is None:
            count = self.face_count(session, model)
            sql = "SELECT id, person_id, embedding FROM faces WHERE model = ? ORDER BY id"
            return count, cursor.execute(sql, (model,))

        def rows() -> Iterator[tuple[int, int, bytes]]:
            for start in range(0, len(ids), _CHUNK):  # one query at a time: a cursor holds one result
                chunk = [int(i) for i in ids[start : start + _CHUNK]]
                marks = ",".join("?" * len(chunk))
                yield from cursor.execute(
                    f"SELECT id, person_id, embedding FROM faces WHERE model = ? AND id IN ({marks}) ORDER BY id",
                    [model, *chunk],
                )

        return len(ids), rows()

    # ---- SQLite's dialect -------------------------------------------------------------

    def put_settings(self, session: Session, values: Mapping[str, Any], now: datetime) -> None:
        for key, value in values.items():
            statement = sqlite_insert(Setting).values(key=key, value=value, updated_at=now)
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=[Setting.key], set_={"value": statement.excluded.value, "updated_at": now}
                )
            )

    def unique_violation(self, error: IntegrityError) -> str | None:
        message = str(error.orig)  # "UNIQUE constraint failed: people.name"
        prefix = "UNIQUE constraint failed: "
        return message[len(prefix) :].split(",")[0].strip() if message.startswith(prefix) else None

    def any_face_matched(self, person_ids: Select[Any]) -> ColumnElement[bool]:
        faces = func.json_each(AuditEntry.detail, "$.faces").table_valued("value")
        matched = func.json_extract(faces.c.value, "$.person_id")
        return exists(select(1).select_from(faces).where(matched.in_(person_ids)))

    def integrity_problems(self) -> list[str]:
        """What ``PRAGMA integrity_check`` and ``foreign_key_check`` report; empty when sound."""
        with self._engine.connect() as connection:
            integrity = [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check").fetchall()]
            foreign = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        problems = [] if integrity == ["ok"] else integrity
        problems += [f"foreign key violation: {tuple(row)}" for row in foreign]
        return problems

    def _pragma(self, name: str) -> Any:
        """The value of ``PRAGMA name`` on a pooled connection (for diagnostics and tests)."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            return raw.execute(f"PRAGMA {name}").fetchone()[0]

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()


def _cursor(session: Session) -> sqlite3.Cursor:
    """A cursor of the session's own connection, inside its transaction (10x faster than ORM rows)."""
    connection = session.connection().connection.driver_connection
    assert connection is not None
    return connection.cursor()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` in one transaction."""
    _run_migration(connection, "upgrade", revision)


def downgrade(connection: Connection, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"`` empties it) in one transaction."""
    _run_migration(connection, "downgrade", revision)


def _run_migration(connection: Connection, action: str, revision: str) -> None:
    """Run a migration in one transaction with foreign keys off, then check them before it commits.

    Batch migrations rebuild tables on SQLite; with foreign keys on, dropping ``people``
    during a rebuild would cascade-delete every face. SQLite ignores the pragma inside a
    transaction, so it is switched on the raw connection before the transaction begins.

    Raises:
        StoreError: the migration left foreign key violations (it is rolled back).
    """
    from gallery.store import migrate

    raw = connection.connection.driver_connection
    assert raw is not None
    if connection.in_transaction():
        raise StoreError("migrations must start outside a transaction")
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        with connection.begin():
            migrate.run(connection, action, revision)
            violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if violations:
                raise StoreError(f"migration to {revision!r} left foreign key violations: {violations[:5]}")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")
