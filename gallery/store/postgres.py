"""The PostgreSQL backend: one database shared by every host of a site, behind ``Backend``.

Each host keeps its own index replica in its home folder; the database is the one truth.

- **Driver**: psycopg 3 through SQLAlchemy's ``postgresql+psycopg`` dialect. A URL as users
  write it (``postgresql://user@host:5432/db``, or ``postgres://``) is mapped to it.
- **Transactions**: reads run at REPEATABLE READ (one snapshot for all their queries, like a
  SQLite read); writes at READ COMMITTED, each starting with a transaction-level advisory lock
  (``WRITE_LOCK``), so writers on every host queue in the database, one at a time, and each
  statement sees the writer before it. ``exclusive`` (a check and a write made atomic, the index
  saved after) holds a second, session-level advisory lock (``EXCLUSIVE_LOCK``) on a connection
  of its own, with the write lock inside it taken per transaction: two keys, so a holder never
  waits for itself.
- **Wake-ups**: a write that bumps the generation sends ``NOTIFY gallery_changes, '<generation>'``
  in its transaction (delivered on commit, never names or biometrics); ``listen`` gives the
  follower thread a connection waiting for them.
- **Migrations** run once, under a third advisory lock, while other hosts wait.
- **Failures**: an unreachable server, or a connection lost mid-call, is ``DatabaseUnavailable``;
  refused credentials or an unknown database ``DatabaseLoginRefused``. The pool tests a connection
  before handing it out, so a host reconnects by itself when the server is back.
- **Erasure**: deleted rows stay in their pages until VACUUM marks the space free and later rows
  overwrite it; the WAL, its archives, streaming replicas and backups keep older bytes. After a
  removal ``erase_deleted_copies`` vacuums the tables that held the person; the README's
  Guarantees section says what remains.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import errors as pg_errors
from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Select,
    case,
    cast,
    create_engine,
    exists,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSON as PG_JSON
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from gallery.errors import (
    DatabaseLoginRefused,
    DatabaseUnavailable,
    InvalidDatabaseUrl,
    StorageFailure,
    StoreBusy,
    StoreError,
)
from gallery.store.queries import GENERATION_BUMPED
from gallery.store.schema import HEAD_REVISION, AuditEntry, Setting

CHANNEL = "gallery_changes"
# Advisory lock keys (classid, objid): 0x67616c6c is "gall".
_CLASS = 0x67616C6C
EXCLUSIVE_LOCK, WRITE_LOCK, MIGRATION_LOCK = 1, 2, 3
CONNECT_TIMEOUT_S = 5
_CHUNK = 1000
# SQLSTATEs meaning "these credentials or this database name are wrong", not "the server is down".
_LOGIN_REFUSED = {"28P01", "28000", "3D000"}


def driver_url(database_url: str) -> URL:
    """``database_url`` as SQLAlchemy's psycopg URL.

    Raises:
        InvalidDatabaseUrl: the URL is malformed or not a PostgreSQL one.
    """
    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError) as error:  # ValueError: a port that is not a number
        raise InvalidDatabaseUrl(f"not a database URL: {_redacted(database_url)} ({error})") from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in ("postgresql", "postgres") or driver not in ("", "psycopg"):
        raise InvalidDatabaseUrl(
            f"{url.drivername!r} is not supported: use postgresql://user@host:port/database (psycopg 3) or sqlite:///path"
        )
    if not url.database:
        raise InvalidDatabaseUrl(f"the database URL {_redacted(database_url)} names no database")
    return url.set(drivername="postgresql+psycopg")


def _redacted(database_url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<malformed URL>"


def _translated(error: DBAPIError | psycopg.Error, where: str) -> StoreError:
    """The gallery's error for a driver failure."""
    original = error.orig if isinstance(error, DBAPIError) else error
    state = getattr(original, "sqlstate", None)
    message = " ".join(str(original).split())
    if state in _LOGIN_REFUSED or "password authentication failed" in message or "does not exist" in message:
        return DatabaseLoginRefused(f"{where}: the server refused the login: {message}")
    if isinstance(original, psycopg.OperationalError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        return DatabaseUnavailable(f"{where}: the database server cannot be reached: {message}")
    return StorageFailure(f"{where} failed: {message}")


class PostgresBackend:
    """One gallery database on a PostgreSQL server."""

    server = True  # shared by hosts: replicas are followed (``gallery.store.follower``)

    def __init__(self, url: URL, engine: Engine, lock_timeout: float) -> None:
        self.url = url
        self.description = url.set(drivername="postgresql").render_as_string(hide_password=True)
        self.where = f"the gallery database {self.description}"
        self._engine = engine
        self._read_engine = engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self._lock_timeout = lock_timeout
        self._thread_lock = threading.RLock()
        self._held = threading.local()  # this thread's depth in ``exclusive``

    @classmethod
    def open(cls, database_url: str, *, lock_timeout: float = 60.0) -> PostgresBackend:
        """Connect to the gallery database at ``database_url`` and migrate it (once, under a lock).

        Raises:
            InvalidDatabaseUrl, DatabaseLoginRefused, DatabaseUnavailable.
            SchemaTooNew, NotAGallery: as for SQLite.
            StoreBusy: another host held the migration lock longer than ``lock_timeout``.
        """
        url = driver_url(database_url)
        engine = create_engine(
            url,
            pool_pre_ping=True,  # a connection dropped by a restart is replaced, not handed out
            pool_size=8,
            max_overflow=32,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "gallery"},
        )
        backend = cls(url, engine, lock_timeout)
        try:
            backend._migrate()
        except BaseException:
            engine.dispose()
            raise
        return backend

    @contextmanager
    def _failures_translated(self) -> Iterator[None]:
        try:
            yield
        except IntegrityError:
            raise
        except DBAPIError as error:
            raise _translated(error, self.where) from error
        except psycopg.Error as error:
            raise _translated(error, self.where) from error

    def _migrate(self) -> None:
        """Bring the schema to the newest revision; the first host migrates, the others wait and find it done."""
        with self._failures_translated():
            if self._recorded_revision() == HEAD_REVISION:
                return
            from gallery.store import migrate

            head = migrate.head_revision()
            with self._engine.connect() as connection:
                self._advisory_lock(connection, MIGRATION_LOCK)
                connection.commit()
                try:
                    if migrate.current_revision(connection) != head:
                        connection.rollback()
                        with connection.begin():  # DDL is transactional: all of it or none
                            migrate.run(connection, "upgrade", "head")
                    connection.rollback()
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:c, :k)"), {"c": _CLASS, "k": MIGRATION_LOCK})
                    connection.commit()

    def _advisory_lock(self, connection: Connection, key: int, *, transaction: bool = False) -> None:
        """Wait for an advisory lock, at most the lock timeout.

        Raises:
            StoreBusy: another holder kept it longer.
        """
        function = "pg_advisory_xact_lock" if transaction else "pg_advisory_lock"
        timeout_ms = max(1, int(self._lock_timeout * 1000))
        connection.execute(text(f"SET {'LOCAL ' if transaction else ''}lock_timeout = {timeout_ms}"))
        try:
            connection.execute(text(f"SELECT {function}(:c, :k)"), {"c": _CLASS, "k": key})
        except DBAPIError as error:
            if isinstance(error.orig, pg_errors.LockNotAvailable):
                raise StoreBusy(
                    f"another host held the gallery's write lock for over {self._lock_timeout:g} s"
                ) from error
            raise
        finally:
            if not transaction:
                connection.execute(text("SET lock_timeout = 0"))

    def _recorded_revision(self) -> str | None:
        with self._engine.connect() as connection:
            try:
                rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
            except DBAPIError as error:
                if isinstance(error.orig, pg_errors.UndefinedTable):
                    return None
                raise
        return rows[0][0] if len(rows) == 1 else None

    def schema_revision(self) -> str | None:
        with self._failures_translated():
            recorded = self._recorded_revision()
            if recorded == HEAD_REVISION:
                return recorded
            from gallery.store import migrate

            with self._engine.connect() as connection:
                return migrate.current_revision(connection)

    # ---- transactions and the write lock ------------------------------------------------

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the gallery's write lock: one thread of one process on one host at a time, reentrant."""
        if not self._thread_lock.acquire(timeout=self._lock_timeout):
            raise StoreBusy(f"another thread held the gallery's write lock for over {self._lock_timeout:g} s")
        try:
            depth = getattr(self._held, "depth", 0)
            if depth:
                self._held.depth = depth + 1
                try:
                    yield
                finally:
                    self._held.depth = depth
                return
            with self._failures_translated(), self._engine.connect() as connection:
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                self._advisory_lock(connection, EXCLUSIVE_LOCK)
                self._held.depth = 1
                try:
                    yield
                finally:
                    self._held.depth = 0
                    try:
                        connection.execute(
                            text("SELECT pg_advisory_unlock(:c, :k)"), {"c": _CLASS, "k": EXCLUSIVE_LOCK}
                        )
                    except DBAPIError:
                        connection.invalidate()  # a lost connection has lost its lock with it
        finally:
            self._thread_lock.release()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session in one REPEATABLE READ, read-only transaction: every query sees the same snapshot."""
        with (
            self._failures_translated(),
            Session(self._read_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction, begun by taking the write lock; it announces a new generation."""
        with self._failures_translated(), Session(self._engine, expire_on_commit=False) as session, session.begin():
            self._advisory_lock(session.connection(), WRITE_LOCK, transaction=True)
            yield session
            generation = session.info.pop(GENERATION_BUMPED, None)
            if generation is not None:
                session.execute(
                    text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": str(generation)}
                )

    @contextmanager
    def listen(self) -> Iterator[Callable[[float], bool]]:
        """A connection listening for new generations: yields ``wait(timeout_s) -> whether one was announced``.

        Raises:
            DatabaseUnavailable, DatabaseLoginRefused: it cannot connect (or lost its connection while waiting).
        """
        conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with self._failures_translated():
            connection = psycopg.connect(
                conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="gallery-follower"
            )
        try:
            with self._failures_translated():
                connection.execute(f"LISTEN {CHANNEL}")

            def wait(timeout_s: float) -> bool:
                with self._failures_translated():
                    return any(True for _ in connection.notifies(timeout=timeout_s, stop_after=1))

            yield wait
        finally:
            connection.close()

    # ---- hot and bulk reads ------------------------------------------------------------

    def faces_generation(self) -> int:
        with self._failures_translated(), self._engine.connect() as connection:
            return int(connection.execute(text("SELECT faces_generation FROM store_state WHERE id = 1")).scalar_one())

    def face_ids(self, session: Session, model: str, *, above: int = -1) -> np.ndarray:
        rows = _cursor(session).execute("SELECT id FROM faces WHERE model = %s AND id > %s ORDER BY id", (model, above))
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def face_count(self, session: Session, model: str) -> int:
        row = _cursor(session).execute("SELECT count(*) FROM faces WHERE model = %s", (model,)).fetchone()
        return int(row[0]) if row else 0

    def people_count(self, session: Session) -> int:
        row = _cursor(session).execute("SELECT count(*) FROM people").fetchone()
        return int(row[0]) if row else 0

    def face_owners(self, session: Session, model: str) -> tuple[np.ndarray, np.ndarray]:
        rows = _cursor(session).execute("SELECT id, person_id FROM faces WHERE model = %s ORDER BY id", (model,))
        pairs = np.array(rows.fetchall(), dtype=np.int64).reshape(-1, 2)
        return pairs[:, 0].copy(), pairs[:, 1].copy()

    def people_names(self, session: Session, person_ids: Sequence[int]) -> dict[int, str]:
        wanted = [int(i) for i in person_ids]
        names: dict[int, str] = {}
        cursor = _cursor(session)
        if len(wanted) > _CHUNK * 10:
            # Most of the gallery (a new host, a re-open): one pass over the table. Lists of ids cost
            # 11 s at a million people, most of it psycopg writing the lists out.
            chosen = set(wanted)
            return {i: name for i, name in cursor.execute("SELECT id, name FROM people") if i in chosen}
        for start in range(0, len(wanted), _CHUNK * 10):
            chunk = wanted[start : start + _CHUNK * 10]
            names.update(cursor.execute("SELECT id, name FROM people WHERE id = ANY(%s)", (chunk,)).fetchall())
        return names

    def face_rows(
        self, session: Session, model: str, ids: np.ndarray | None
    ) -> tuple[int, Iterable[tuple[int, int, bytes]]]:
        connection = _driver_connection(session)
        if ids is None:
            count = self.face_count(session, model)

            def every() -> Iterator[tuple[int, int, bytes]]:
                # A server-side cursor streams a million rows without holding them all at once.
                with connection.cursor(name="gallery_faces") as cursor:
                    cursor.itersize = 10_000
                    cursor.execute("SELECT id, person_id, embedding FROM faces WHERE model = %s ORDER BY id", (model,))
                    for face_id, person_id, blob in cursor:
                        yield face_id, person_id, bytes(blob)

            return count, every()

        def chosen() -> Iterator[tuple[int, int, bytes]]:
            cursor = connection.cursor()
            for start in range(0, len(ids), _CHUNK):
                chunk = [int(i) for i in ids[start : start + _CHUNK]]
                for face_id, person_id, blob in cursor.execute(
                    "SELECT id, person_id, embedding FROM faces WHERE model = %s AND id = ANY(%s) ORDER BY id",
                    (model, chunk),
                ):
                    yield face_id, person_id, bytes(blob)

        return len(ids), chosen()

    # ---- PostgreSQL's dialect ----------------------------------------------------------

    def put_settings(self, session: Session, values: Mapping[str, Any], now: datetime) -> None:
        for key, value in values.items():
            statement = pg_insert(Setting).values(key=key, value=value, updated_at=now)
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=[Setting.key], set_={"value": statement.excluded.value, "updated_at": now}
                )
            )

    def unique_violation(self, error: IntegrityError) -> str | None:
        original = error.orig
        if not isinstance(original, pg_errors.UniqueViolation):
            return None
        # The schema's naming convention: a unique constraint is "uq_<table>_<column>".
        table, constraint = original.diag.table_name or "", original.diag.constraint_name or ""
        prefix = f"uq_{table}_"
        return f"{table}.{constraint.removeprefix(prefix)}" if table and constraint.startswith(prefix) else None

    def any_face_matched(self, person_ids: Select[Any]) -> ColumnElement[bool]:
        faces_json = AuditEntry.detail.op("->")("faces")
        # Only an array is expanded: other events keep a count under "faces", and PostgreSQL may
        # evaluate this before the action filter beside it.
        array = case((func.json_typeof(faces_json) == "array", faces_json), else_=cast(literal("[]"), PG_JSON))
        faces = func.json_array_elements(array).table_valued("value")
        matched = cast(faces.c.value.op("->>")("person_id"), Integer)
        return exists(select(1).select_from(faces).where(matched.in_(person_ids)))

    def erase_deleted_copies(self, *, wait_s: float | None = None) -> bool:
        """VACUUM the tables a removal deletes from, so the dead rows' space is marked free; False if it could not."""
        wait_ms = max(1, int((self._lock_timeout if wait_s is None else wait_s) * 1000))
        try:
            with self._engine.connect() as connection:
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                connection.execute(text(f"SET lock_timeout = {wait_ms}"))
                connection.execute(text("VACUUM faces, people"))
                connection.execute(text("SET lock_timeout = 0"))
        except DBAPIError:
            return False
        return True

    def integrity_problems(self) -> list[str]:
        """Rows that break the schema's promises (PostgreSQL enforces its constraints; this checks the rest)."""
        checks = {
            "faces without their person": "SELECT count(*) FROM faces f LEFT JOIN people p ON p.id = f.person_id "
            "WHERE p.id IS NULL",
            "store_state does not hold exactly one row": "SELECT abs(count(*) - 1) FROM store_state",
        }
        with self._failures_translated(), self._engine.connect() as connection:
            counts = {problem: connection.execute(text(sql)).scalar_one() for problem, sql in checks.items()}
        return [f"{problem}: {count}" for problem, count in counts.items() if count]

    def close(self) -> None:
        self._engine.dispose()


def _driver_connection(session: Session) -> psycopg.Connection[Any]:
    connection = session.connection().connection.driver_connection
    assert isinstance(connection, psycopg.Connection)
    return connection


def _cursor(session: Session) -> psycopg.Cursor[Any]:
    """A cursor of the session's own connection, inside its transaction."""
    return _driver_connection(session).cursor()
