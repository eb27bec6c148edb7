"""SQLite recorders.

Files are opened in WAL mode with ``synchronous=FULL``: a committed write survives
a power cut, and readers never block the writer. ``SQLITE_SYNCHRONOUS=NORMAL`` is
a faster, less durable option: commits are not flushed to disk one by one, so a
power cut (not a crash of the process) may lose the last of them; the database
stays consistent. With several database files (one per application), a lost tail
in one file and not in another can leave a follower ahead of its leader.

Threads: a file database gets one connection per thread. An in-memory database
(``:memory:`` or a ``file:...?mode=memory`` URI) gets ONE connection per datastore,
shared by every thread under a lock, so all threads see the same data.

Never skip: every write runs inside ``BEGIN IMMEDIATE``, which takes the database's
single write lock before anything is read or written, or is one statement (a save
of one event: one INSERT) run outside a transaction, which is then a transaction of
its own and takes the write lock as it starts, before it reads anything, and commits
(as durably) as it ends. Writers are therefore serialised, each transaction's
notification ids are all above every id already committed, and a reader (whose
statement sees one committed snapshot) only ever sees a gap-free prefix of the ids:
an id it has not seen yet can only be higher than every id it has seen.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID, SafeUUID

from eventsourcing._deadletters import SQLiteDeadLetters
from eventsourcing._retry import Outage, Retry
from eventsourcing._sqlite_group import GroupCommit
from eventsourcing.persistence import (
    DEFAULT_RETRY_TIMEOUT,
    AggregateRecorder,
    ApplicationRecorder,
    Beacon,
    BeaconWaker,
    DatabaseError,
    DatabaseFactory,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    ListenNotifySubscription,
    Notification,
    NotSupportedError,
    OperationalError,
    OriginatorIDTypeError,
    PersistenceError,
    ProcessRecorder,
    ProgrammingError,
    RecordConflictError,
    StoredEvent,
    Tracking,
    TrackingConflictError,
    TrackingRecorder,
    Waker,
    What,
    checked_mode,
    describe,
    inserting,
    new_notification,
    new_stored_event,
    selected_id,
    tracking_conflict,
    wrong_id_type,
)
from eventsourcing.utils import Environment

if TYPE_CHECKING:
    from eventsourcing.dcb.sqlite import SQLiteDCBRecorder

__all__ = [
    "Factory",
    "SQLiteAggregateRecorder",
    "SQLiteApplicationRecorder",
    "SQLiteCursor",
    "SQLiteDatastore",
    "SQLiteFactory",
    "SQLiteProcessRecorder",
]

DEFAULT_LOCK_TIMEOUT = 5.0  # seconds a writer waits for the write lock
# FULL, not NORMAL, by default: under WAL, NORMAL may lose the last commits on power loss.
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
# How originator ids are kept: UUIDs (the default) or strings.
ORIGINATOR_ID_TYPES = ("uuid", "text")

T = TypeVar("T")

logger = logging.getLogger(__name__)


CLOSE_WAIT = 10.0  # seconds close() waits for other threads' operations to end


def is_memory_db_name(db_name: str) -> bool:
    return db_name == ":memory:" or (db_name.startswith("file:") and "mode=memory" in db_name)


def _is_locked(error: sqlite3.Error) -> bool:
    """Whether ``error`` says another connection holds a lock (SQLITE_BUSY or LOCKED):
    worth retrying, as the holder will finish."""
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


class SQLiteDatastore:
    """Connections to one SQLite database, safe to use from many threads.

    A writer waits up to ``lock_timeout`` seconds for the write lock; an operation
    that still finds the database locked is retried with backoff for up to
    ``retry_timeout`` seconds in all, then fails with ``OperationalError``. One
    WARNING is logged (logger ``eventsourcing.sqlite``) when the database is first
    found locked so, and one INFO when writing works again.
    """

    def __init__(
        self,
        db_name: str,
        lock_timeout: float | None = None,
        synchronous: str = "FULL",
        originator_id_type: str = "uuid",
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        *,
        # Taken as the 9.x SQLiteDatastore takes them, and not used: connections
        # here are one per thread (no pool to size, time out, age or ping), and
        # tracking tables have one row per upstream application already.
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 5.0,
        max_age: float | None = None,
        pre_ping: bool = False,
        single_row_tracking: bool = True,
    ):
        if not db_name:
            raise ValueError("SQLiteDatastore needs a db_name (a path, ':memory:' or a URI)")
        self.synchronous = checked_mode(synchronous, SYNCHRONOUS_MODES, "synchronous")
        self.originator_id_type = checked_mode(
            originator_id_type, ORIGINATOR_ID_TYPES, "originator_id_type"
        )
        self.db_name = db_name
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT if lock_timeout is None else float(lock_timeout)
        self.is_memory = is_memory_db_name(db_name)
        self._is_uri = db_name.startswith("file:")
        self._local = threading.local()
        # (thread, connection) pairs, so close() can close every thread's connection
        # and connections of finished threads are closed rather than leaked.
        self._opened: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._opened_lock = threading.Lock()
        self._memory_lock = threading.RLock()
        self._memory_conn: sqlite3.Connection | None = None
        self._closed = False
        # Operations in flight on file connections: close() waits for them, since closing
        # a connection while another thread runs a statement on it can crash sqlite3.
        self._in_flight = 0
        # The count is kept under the plain lock (cheaper than the condition's methods);
        # close() waits on the condition, notified only once closing (see _leave()).
        self._in_flight_lock = threading.Lock()
        self._idle = threading.Condition(self._in_flight_lock)
        # Writes of many threads to a file share transactions (eventsourcing._sqlite_group).
        self._group = None if self.is_memory else GroupCommit(self._thread_connection)
        self.retry_timeout = float(retry_timeout)
        self.outage = Outage(
            logger,
            f"SQLite database {db_name!r}",
            lost="{where} stays locked",
            back="{where} is no longer locked",
        )

    # -- connections ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise InterfaceError(f"SQLite datastore {self.db_name!r} is closed")
        try:
            conn = sqlite3.connect(
                self.db_name,
                uri=self._is_uri,
                timeout=self.lock_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # close() may run in another thread
            )
            if not self.is_memory:
                self._use_wal(conn)
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.Error as error:
            raise OperationalError(
                f"Cannot open SQLite database {self.db_name!r}: {error}"
            ) from error
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Put the database in WAL mode, once: the mode is kept in the file. Setting it
        needs the database to itself and fails at once, without the busy wait, with
        "database is locked" while another process opens it: so try again a while."""
        deadline = time.monotonic() + max(self.lock_timeout, 1.0)
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if not _is_locked(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for the calling thread (held exclusively while in use)."""
        if self._closed:
            raise InterfaceError(f"SQLite datastore {self.db_name!r} is closed")
        if self.is_memory:
            with self._memory_lock:
                if self._memory_conn is None:
                    self._memory_conn = self._connect()
                yield self._memory_conn
        else:
            with self._in_use():
                yield self._thread_connection()

    @contextmanager
    def _in_use(self) -> Iterator[None]:
        """Count an operation on this thread's file connection (see close())."""
        self._enter()
        try:
            yield
        finally:
            self._leave()

    def _enter(self) -> None:
        """An operation on this thread's file connection begins (see close())."""
        with self._in_flight_lock:
            if self._closed:
                raise InterfaceError(f"SQLite datastore {self.db_name!r} is closed")
            self._in_flight += 1
        local = self._local
        local.depth = getattr(local, "depth", 0) + 1

    def _leave(self) -> None:
        """The operation begun by _enter() has ended."""
        self._local.depth -= 1
        with self._in_flight_lock:
            self._in_flight -= 1
            if self._closed:  # close() may be waiting (it set _closed under this lock)
                self._idle.notify_all()

    def _thread_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._opened_lock:
                self._close_connections_of_finished_threads()
                self._opened.append((weakref.ref(threading.current_thread()), conn))
        return conn

    def _close_connections_of_finished_threads(self) -> None:
        alive = []
        for thread_ref, conn in self._opened:
            thread = thread_ref()
            if thread is None or not thread.is_alive():
                conn.close()
            else:
                alive.append((thread_ref, conn))
        self._opened = alive

    def run(
        self,
        func: Callable[[sqlite3.Connection], T],
        *,
        write: bool,
        what: What,
        single: bool = False,
    ) -> T:
        """Run ``func`` in a transaction (or, to read, as it is), translating sqlite3 errors.

        ``single``: ``func`` writes in one statement (reads after it are allowed), which
        is then, unless grouped with other writes, a transaction by itself: it takes
        the write lock before reading anything, as ``BEGIN IMMEDIATE`` does, and
        commits as durably when it ends, two statements less.

        In a shared-cache memory database, another datastore's transaction makes
        statements fail at once with "locked" (the busy timeout does not apply),
        so those are retried here until ``lock_timeout`` has passed. A database still
        locked then is retried with backoff until ``retry_timeout`` has passed.
        """
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.001
        retry: Retry | None = None
        while True:
            try:
                if self.is_memory:
                    with self.connection() as conn:
                        result = self._run_on(conn, func, write, single)
                else:
                    self._enter()
                    try:
                        if write and self._group is not None:
                            # (its own transaction, or shared)
                            result = self._group.run(func, single)
                        else:
                            result = self._run_on(self._thread_connection(), func, write, single)
                    finally:
                        self._leave()
            except sqlite3.Error as error:
                if not _is_locked(error):
                    raise translate_error(error, describe(what)) from error
                if self.is_memory and time.monotonic() < deadline:
                    time.sleep(delay)  # (as the busy timeout would)
                    delay = min(delay * 2, 0.05)
                    continue
                if retry is None:
                    retry = Retry(self.outage, what, self.retry_timeout)
                retry.failed(str(error))
                continue
            if retry is not None or self.outage.ongoing:
                self.outage.end()
            return result

    @staticmethod
    def _run_on(
        conn: sqlite3.Connection,
        func: Callable[[sqlite3.Connection], T],
        write: bool,
        single: bool = False,
    ) -> T:
        if not write or (single and not conn.in_transaction):
            # Reads are single statements: each is its own consistent snapshot. So is
            # a write of one statement (it takes the write lock first: see run()),
            # unless the thread has begun a transaction (then BEGIN refuses it).
            return func(conn)
        # IMMEDIATE: take the write lock now, so writers (and their ids) are
        # serialised and readers see ids committed in order (module docstring).
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = func(conn)
            conn.execute("COMMIT")
            return result
        except BaseException:
            # Never leave the connection inside a transaction (a failed COMMIT too).
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        """A transaction, for recorders' subclasses to read and write their own tables.

        ``commit=True`` takes the write lock at once (as every write here does) and
        commits at the end; ``commit=False`` reads, and is rolled back at the end.
        An exception rolls back either way.
        """
        with self.connection() as conn:
            try:
                self._begin(conn, "BEGIN IMMEDIATE" if commit else "BEGIN")
                with SQLiteCursor(conn) as cursor:
                    yield cursor
                conn.execute("COMMIT" if commit else "ROLLBACK")
            except BaseException as error:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(error, sqlite3.Error):
                    raise translate_error(error, "A transaction") from error
                raise

    def _begin(self, conn: sqlite3.Connection, statement: str) -> None:
        """Begin a transaction, retrying while the database stays locked."""
        retry: Retry | None = None
        while True:
            try:
                conn.execute(statement)
            except sqlite3.Error as error:
                if not _is_locked(error):
                    raise
                if retry is None:
                    retry = Retry(self.outage, "Beginning a transaction", self.retry_timeout)
                retry.failed(str(error))
                continue
            if retry is not None or self.outage.ongoing:
                self.outage.end()
            return

    def close(self) -> None:
        with self._idle:
            self._closed = True  # (no operation starts after this)
            own = getattr(self._local, "depth", 0)  # (close() called inside an operation)
            settled = self._idle.wait_for(lambda: self._in_flight <= own, CLOSE_WAIT)
        current = threading.current_thread()
        with self._opened_lock:
            for thread_ref, conn in self._opened:
                thread = thread_ref()
                # A connection still in use by a live thread (an operation that outlived
                # CLOSE_WAIT) is left to be closed when that thread lets go of it.
                if settled or thread is None or thread is current or not thread.is_alive():
                    conn.close()
            self._opened = []
        with self._memory_lock:
            if self._memory_conn is not None:
                self._memory_conn.close()
                self._memory_conn = None


class SQLiteCursor:
    """A cursor in one of a datastore's transactions (``SQLiteDatastore.transaction``).

    Rows are ``sqlite3.Row``: read by column name (``row["topic"]``) or position.
    """

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection
        self._cursor = connection.cursor()
        self._cursor.row_factory = sqlite3.Row

    def __enter__(self) -> SQLiteCursor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def execute(self, statement: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> None:
        self._cursor.execute(statement, params)

    def executemany(
        self, statement: str, seq_of_params: Iterable[Sequence[Any] | Mapping[str, Any]]
    ) -> None:
        self._cursor.executemany(statement, seq_of_params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def close(self) -> None:
        self._cursor.close()


def translate_error(error: sqlite3.Error, what: str) -> PersistenceError:
    """Our DB-API-shaped error for a sqlite3 error, with a message naming what failed."""
    message = f"{what} failed: {error}"
    if isinstance(error, sqlite3.OperationalError):
        if "no such table" in str(error):
            return ProgrammingError(f"{message} (create the table: CREATE_TABLE=true)")
        return OperationalError(message)
    pairs: list[tuple[type[sqlite3.Error], type[PersistenceError]]] = [
        (sqlite3.IntegrityError, IntegrityError),
        (sqlite3.DataError, DataError),
        (sqlite3.NotSupportedError, NotSupportedError),
        (sqlite3.InternalError, InternalError),
        (sqlite3.ProgrammingError, ProgrammingError),
        (sqlite3.InterfaceError, InterfaceError),
    ]
    for sqlite_cls, our_cls in pairs:
        if isinstance(error, sqlite_cls):
            return our_cls(message)
    return DatabaseError(message)


def quote_identifier(name: str) -> str:
    """Quote a table or index name so no name can change the statement."""
    if not name or "\x00" in name:
        raise ProgrammingError(f"Invalid SQLite table name {name!r}")
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------
# Originator ids, and the two table layouts.
#
# Our tables keep a UUID as its 16 bytes and number notifications in an
# AUTOINCREMENT column. Tables written by the documented 9.x API keep ids as text
# (a UUID as its 32 hex digits) and number notifications by the rowid; such a
# database is read and extended in its own layout, so that it stays readable by
# what wrote it. With ORIGINATOR_ID_TYPE=text, ids are strings in either layout.

TEXT_LAYOUT_EVENTS_TABLE = "stored_events"  # a database in the text layout has this table
# The text layout's mark that its tracking table holds one row per application.
SINGLE_ROW_TRACKING_MARK = "__migration__"

_new_uuid = UUID.__new__
_set_slot = object.__setattr__


def _uuid(value: bytes | str) -> UUID:
    """The UUID stored as ``value``: equal to ``UUID(bytes=value)``, made without
    UUID.__init__'s argument checks, which cost more than the rest of reading a
    notification (0.8 against 0.3 us). Text (the text layout's hex) is parsed."""
    if not isinstance(value, bytes):
        try:
            return UUID(value)
        except (TypeError, ValueError):
            raise DataError(f"its originator id {value!r} is not a UUID") from None
    if len(value) != 16:
        raise DataError(f"its originator id is {len(value)} bytes, not 16")
    uuid = _new_uuid(UUID)
    _set_slot(uuid, "int", int.from_bytes(value, "big"))
    _set_slot(uuid, "is_safe", SafeUUID.unknown)
    return uuid


def _text(value: Any) -> str:
    """A string id as it was stored."""
    if not isinstance(value, str):
        raise DataError(f"its originator id {value!r} is not text")
    return value


Columns = dict[str, tuple[str, int]]


def table_columns(conn: sqlite3.Connection, table: str) -> Columns:
    """Each column's declared type and primary-key position (0: none); empty: no table."""
    rows = conn.execute(f"PRAGMA table_info({quote_identifier(table)})").fetchall()
    return {str(row[1]): (str(row[2]).upper(), int(row[5])) for row in rows}


def keeps_ids_as_text(columns: Columns) -> bool:
    return columns.get("originator_id", ("", 0))[0] == "TEXT"


class SQLiteAggregateRecorder(AggregateRecorder):
    """Stored events keyed by (originator_id, originator_version).

    A new table keeps ``originator_id`` as its 16 bytes (or, with
    ORIGINATOR_ID_TYPE=text, as text), unless the database is in the text layout
    (see above). An existing table is used in the layout it has.

    A subclass may override ``_insert_events(cursor, stored_events, **kwargs)`` to
    write rows of its own in the same transaction (``super()._insert_events`` first;
    the keyword arguments of ``Application.save`` arrive in ``kwargs``), and
    ``construct_create_table_statements`` to create its tables.
    """

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        self.datastore = datastore
        self.events_table_name = events_table_name
        self._events = quote_identifier(events_table_name)
        # Statements made once, not per save or read.
        self._insert_statement = (
            f"INSERT INTO {self._events} "
            "(originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)"
        )
        self._select_statements: dict[tuple[bool, bool, bool, bool], str] = {}
        self.originator_id_type = datastore.originator_id_type
        columns, self.text_layout = self._detect_layout(events_table_name)
        self._id_type: type = str if self.originator_id_type == "text" else UUID
        # Our UUID ids are written as .bytes inline (the usual path); others through this.
        self._id_param: Callable[[Any], Any] | None = None
        if self.originator_id_type == "text":
            self._id_param = self._text_id
        elif self.text_layout:
            self._id_param = self._uuid_as_hex
        self._read_id: Callable[[Any], Any] = _text if self.originator_id_type == "text" else _uuid
        in_rowid = self.text_layout and "notification_id" not in columns
        self._position = "rowid" if in_rowid else "notification_id"
        # A subclass's _insert_events is called in every insert; ours are skipped
        # (the statements they would run are made directly, a call less per save).
        self._routes_inserts = type(self)._insert_events not in _OUR_INSERT_EVENTS
        self.create_table_statements = self.construct_create_table_statements()

    def _detect_layout(self, table: str) -> tuple[Columns, bool]:
        """The columns of ``table``, and whether it is (or, new, will be) in the text layout."""

        def detect(conn: sqlite3.Connection) -> tuple[Columns, bool]:
            columns = table_columns(conn, table)
            if columns:
                return columns, keeps_ids_as_text(columns)
            # A new table of a database in the text layout takes that layout too.
            return columns, keeps_ids_as_text(table_columns(conn, TEXT_LAYOUT_EVENTS_TABLE))

        return self.datastore.run(detect, write=False, what=f"Reading the layout of {table!r}")

    def construct_create_table_statements(self) -> list[str]:
        if self.text_layout:
            return [
                f"CREATE TABLE IF NOT EXISTS {self._events} ("
                "originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
                "PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID"
            ]
        return [
            f"CREATE TABLE IF NOT EXISTS {self._events} ("
            "originator_id BLOB NOT NULL, "
            "originator_version INTEGER NOT NULL, "
            "topic TEXT NOT NULL, "
            "state BLOB NOT NULL, "
            "PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID"
        ]

    def create_table(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            for statement in self.create_table_statements:
                conn.execute(statement)

        self.datastore.run(create, write=True, what=f"Creating table {self.events_table_name!r}")

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if self._routes_inserts:
            return self._insert_through_subclass(stored_events, kwargs)
        if not stored_events:
            return None
        self.datastore.run(
            lambda conn: self._insert_rows(conn, stored_events),
            write=True,
            what=inserting(self.events_table_name, stored_events),
            single=len(stored_events) == 1,  # (one INSERT: see _insert_rows)
        )
        return None

    def _insert_through_subclass(
        self, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]
    ) -> Sequence[int] | None:
        def insert(conn: sqlite3.Connection) -> Sequence[int] | None:
            with SQLiteCursor(conn) as cursor:
                return self._insert_events(cursor, stored_events, **kwargs)

        return self.datastore.run(
            insert,
            write=True,
            what=inserting(self.events_table_name, stored_events, kwargs.get("tracking")),
        )

    def _insert_events(
        self, cursor: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the events in the cursor's transaction (the hook for subclasses)."""
        if stored_events:
            self._insert_rows(cursor.connection, stored_events)
        return None

    def _wrong_id(self, originator_id: object) -> OriginatorIDTypeError:
        return wrong_id_type(originator_id, self._id_type, f"table {self.events_table_name!r}")

    def _selected_id(self, originator_id: Any) -> Any:
        return selected_id(originator_id, self._id_type, f"table {self.events_table_name!r}")

    def _text_id(self, originator_id: Any) -> str:
        if isinstance(originator_id, str):
            return originator_id
        raise self._wrong_id(originator_id)

    def _uuid_as_hex(self, originator_id: Any) -> str:
        if isinstance(originator_id, UUID):
            return originator_id.hex
        raise self._wrong_id(originator_id)

    def _rows_with_id_param(self, stored_events: Sequence[StoredEvent]) -> list[Any]:
        id_param: Callable[[Any], Any] = self._id_param  # type: ignore[assignment]
        return [
            (id_param(s.originator_id), s.originator_version, s.topic, s.state)
            for s in stored_events
        ]

    def _id_value(self, originator_id: Any) -> Any:
        """``originator_id`` as this table keeps it."""
        if self._id_param is not None:
            return self._id_param(originator_id)
        if not isinstance(originator_id, UUID):
            raise self._wrong_id(originator_id)
        return originator_id.bytes

    def _insert_rows(self, conn: sqlite3.Connection, stored_events: Sequence[StoredEvent]) -> int:
        """Insert the events; return the rowid of the last one."""
        statement = self._insert_statement
        if self._id_param is None:  # UUIDs as bytes: the usual case, without a call
            try:
                rows = [
                    (s.originator_id.bytes, s.originator_version, s.topic, s.state)
                    for s in stored_events
                ]
            except AttributeError:
                bad = next(s for s in stored_events if not isinstance(s.originator_id, UUID))
                raise self._wrong_id(bad.originator_id) from None
        else:
            rows = self._rows_with_id_param(stored_events)
        if len(rows) == 1:  # the usual save: a failed insert leaves nothing to undo
            # (One statement: recorders run it with single=True, see SQLiteDatastore.run.)
            try:
                rowid = conn.execute(statement, rows[0]).lastrowid
            except sqlite3.IntegrityError as error:
                raise self._conflict_error(conn, stored_events, error) from error
            return int(rowid or 0)
        # A savepoint, so that after a conflict the rows before it can be undone
        # and the conflicting event looked for in what was recorded before.
        conn.execute("SAVEPOINT insert_events")
        try:
            conn.executemany(statement, rows)
        except sqlite3.IntegrityError as error:
            conn.execute("ROLLBACK TO insert_events")
            raise self._conflict_error(conn, stored_events, error) from error
        conn.execute("RELEASE insert_events")
        (last,) = conn.execute("SELECT last_insert_rowid()").fetchone()
        return int(last)

    def _conflict_error(
        self, conn: sqlite3.Connection, stored_events: Sequence[StoredEvent], error: Exception
    ) -> RecordConflictError:
        """Name the first event of the batch that is a duplicate or already recorded."""
        seen: set[tuple[Any, int]] = set()
        for s in stored_events:
            key = (s.originator_id, s.originator_version)
            exists = conn.execute(
                f"SELECT 1 FROM {self._events} WHERE originator_id = ? AND originator_version = ?",
                (self._id_value(s.originator_id), s.originator_version),
            ).fetchone()
            if key in seen or exists:
                return RecordConflictError(
                    f"Event of originator {s.originator_id} at version "
                    f"{s.originator_version} is already recorded in "
                    f"{self.events_table_name!r}; nothing was recorded"
                )
            seen.add(key)
        return RecordConflictError(
            f"Inserting into {self.events_table_name!r} conflicted: {error}; nothing was recorded"
        )

    def _select_rows(self, statement: str, params: Sequence[Any], *, what: What) -> list[Any]:
        return self.datastore.run(
            lambda conn: conn.execute(statement, params).fetchall(), write=False, what=what
        )

    def select_events(
        self,
        originator_id: UUID | str,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        if type(originator_id) is not self._id_type:
            # (A UUID's string form selects its events, as in the 9.x stores.)
            originator_id = self._selected_id(originator_id)
        if self._id_param is None:
            params: list[Any] = [originator_id.bytes]  # type: ignore[union-attr]  # (a UUID here)
        else:
            params = [self._id_param(originator_id)]
        if gt is not None:
            params.append(gt)
        if lte is not None:
            params.append(lte)
        if limit is not None:
            params.append(max(limit, 0))
        shape = (gt is not None, lte is not None, bool(desc), limit is not None)
        statement = self._select_statements.get(shape)
        if statement is None:
            statement = self._select_statements[shape] = self._select_statement(*shape)
        rows = self._select_rows(
            statement,
            params,
            what=lambda: f"Selecting events of {originator_id} from {self.events_table_name!r}",
        )
        return [
            new_stored_event(originator_id, version, topic, bytes(state))
            for version, topic, state in rows
        ]

    def _select_statement(self, gt: bool, lte: bool, desc: bool, limit: bool) -> str:
        """The statement of select_events with these of its arguments given."""
        statement = (
            f"SELECT originator_version, topic, state FROM {self._events} WHERE originator_id = ?"
        )
        if gt:
            statement += " AND originator_version > ?"
        if lte:
            statement += " AND originator_version <= ?"
        statement += " ORDER BY originator_version" + (" DESC" if desc else "")
        if limit:
            statement += " LIMIT ?"
        return statement


class SQLiteApplicationRecorder(SQLiteAggregateRecorder, ApplicationRecorder):
    """Stored events numbered 1, 2, 3, ... in order of recording."""

    def construct_create_table_statements(self) -> list[str]:
        if self.text_layout:  # numbered by the rowid
            return [
                f"CREATE TABLE IF NOT EXISTS {self._events} ("
                "originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
                "PRIMARY KEY (originator_id, originator_version))"
            ]
        # AUTOINCREMENT: ids of deleted rows are never handed out again.
        return [
            f"CREATE TABLE IF NOT EXISTS {self._events} ("
            "notification_id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "originator_id BLOB NOT NULL, "
            "originator_version INTEGER NOT NULL, "
            "topic TEXT NOT NULL, "
            "state BLOB NOT NULL, "
            "UNIQUE (originator_id, originator_version))"
        ]

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if self._routes_inserts:
            return self._insert_through_subclass(stored_events, kwargs)
        if not stored_events:
            return []
        return self.datastore.run(
            lambda conn: self._insert_events_returning_ids(conn, stored_events),
            write=True,
            what=inserting(self.events_table_name, stored_events),
            single=len(stored_events) == 1,  # (one INSERT: see _insert_rows)
        )

    def _insert_events(
        self, cursor: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the events in the cursor's transaction; return their notification ids."""
        if not stored_events:
            return []
        return self._insert_events_returning_ids(cursor.connection, stored_events)

    def _insert_events_returning_ids(
        self, conn: sqlite3.Connection, stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        last = self._insert_rows(conn, stored_events)
        # We hold the write lock, so the batch took consecutive ids ending at the last one.
        return list(range(last - len(stored_events) + 1, last + 1))

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        position = self._position
        statement = (
            f"SELECT {position}, originator_id, originator_version, topic, state "
            f"FROM {self._events} WHERE 1 = 1"
        )
        params: list[Any] = []
        if start is not None:
            statement += f" AND {position} {'>=' if inclusive_of_start else '>'} ?"
            params.append(start)
        if stop is not None:
            statement += f" AND {position} <= ?"
            params.append(stop)
        if topics:
            statement += f" AND topic IN ({', '.join('?' for _ in topics)})"
            params.extend(topics)
        statement += f" ORDER BY {position} LIMIT ?"
        params.append(max(limit, 0))
        rows = self._select_rows(
            statement, params, what=f"Selecting notifications from {self.events_table_name!r}"
        )
        read_id = self._read_id
        try:
            return [
                new_notification(read_id(originator_id), version, topic, bytes(state), nid)
                for nid, originator_id, version, topic, state in rows
            ]
        except DataError as error:
            raise DataError(
                f"Notification {self._bad_row(rows)} in {self.events_table_name!r}: {error}"
            ) from None

    def _bad_row(self, rows: list[Any]) -> int:
        """The notification id of the first row whose originator id cannot be read."""
        for row in rows:
            try:
                self._read_id(row[1])
            except DataError:
                return int(row[0])
        raise AssertionError("no unreadable originator id")  # pragma: no cover

    def max_notification_id(self) -> int | None:
        def select(conn: sqlite3.Connection) -> int | None:
            statement = f"SELECT MAX({self._position}) FROM {self._events}"
            (value,) = conn.execute(statement).fetchone()
            return value

        return self.datastore.run(
            select,
            write=False,
            what=f"Selecting max notification id of {self.events_table_name!r}",
        )


class SQLiteProcessRecorder(SQLiteDeadLetters, SQLiteApplicationRecorder, ProcessRecorder):
    """Also records, per upstream application, the position processed in its log.

    In the text layout a tracking table may hold a row per processed position
    (then one is added per advance) or a row per application (then it is updated).
    """

    def __init__(
        self,
        datastore: SQLiteDatastore,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ):
        self.tracking_table_name = tracking_table_name
        self._tracking = quote_identifier(tracking_table_name)
        columns = datastore.run(
            lambda conn: table_columns(conn, tracking_table_name),
            write=False,
            what=f"Reading the layout of {tracking_table_name!r}",
        )
        self._tracking_is_new = not columns
        # A row per processed position: the position in its key (as 9.3 made them).
        self._row_per_position = columns.get("notification_id", ("", 0))[1] > 0
        super().__init__(datastore, events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        if not self.text_layout:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self._tracking} ("
                "application_name TEXT PRIMARY KEY, "
                "notification_id INTEGER NOT NULL)"
            )
            return statements
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self._tracking} ("
            "application_name TEXT, notification_id INTEGER, "
            "PRIMARY KEY (application_name)) WITHOUT ROWID"
        )
        if self._tracking_is_new:  # marked as a row per application, as it is
            statements.append(
                f"INSERT OR IGNORE INTO {self._tracking} (application_name, notification_id) "
                f"VALUES ('{SINGLE_ROW_TRACKING_MARK}', 1)"
            )
        return statements

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        tracking: Tracking | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        if self._routes_inserts:
            return self._insert_through_subclass(stored_events, dict(kwargs, tracking=tracking))
        if tracking is None:
            return super().insert_events(stored_events, **kwargs)

        def insert(conn: sqlite3.Connection) -> list[int]:
            # Events first, as the in-memory store: a conflicting event is reported
            # as such even when the position is stale too.
            ids = self._insert_events_returning_ids(conn, stored_events) if stored_events else []
            self._advance_tracking(conn, tracking)
            return ids

        return self.datastore.run(
            insert,
            write=True,
            what=inserting(self.events_table_name, stored_events, tracking),
        )

    def _insert_events(
        self, cursor: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the events, and the ``tracking`` keyword argument if given."""
        ids = super()._insert_events(cursor, stored_events, **kwargs)
        tracking: Tracking | None = kwargs.get("tracking")
        if tracking is not None:
            self._advance_tracking(cursor.connection, tracking)
        return ids

    def _advance_tracking(self, conn: sqlite3.Connection, tracking: Tracking) -> None:
        # Safe to read then write: BEGIN IMMEDIATE holds the write lock.
        previous = tracking.previous_notification_id
        if previous and tracking.notification_id > previous and not self._row_per_position:
            # The usual case, in one statement: move on from where the batch began.
            moved = conn.execute(
                f"UPDATE {self._tracking} SET notification_id = ? "
                "WHERE application_name = ? AND notification_id = ?",
                (tracking.notification_id, tracking.application_name, previous),
            ).rowcount
            if moved:
                return
        conflict = tracking_conflict(
            tracking, self._select_position(conn, tracking.application_name)
        )
        if conflict is not None:
            raise TrackingConflictError(conflict)
        if self._row_per_position:
            statement = (
                f"INSERT INTO {self._tracking} (application_name, notification_id) VALUES (?, ?)"
            )
        else:
            statement = (
                f"INSERT INTO {self._tracking} (application_name, notification_id) VALUES (?, ?) "
                "ON CONFLICT (application_name) "
                "DO UPDATE SET notification_id = excluded.notification_id"
            )
        conn.execute(statement, (tracking.application_name, tracking.notification_id))

    def _select_position(self, conn: sqlite3.Connection, application_name: str) -> int | None:
        # MAX: a text-layout table may hold a row per processed position.
        row = conn.execute(
            f"SELECT MAX(notification_id) FROM {self._tracking} WHERE application_name = ?",
            (application_name,),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.datastore.run(
            lambda conn: self._select_position(conn, application_name),
            write=False,
            what=f"Selecting tracking position of {application_name!r} "
            f"from {self.tracking_table_name!r}",
        )

    def tracking_positions(self) -> dict[str, int]:
        def select(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                f"SELECT application_name, MAX(notification_id) FROM {self._tracking} "
                "GROUP BY application_name"
            )
            positions = {str(name): int(position) for name, position in rows}
            if self.text_layout:
                positions.pop(SINGLE_ROW_TRACKING_MARK, None)
            return positions

        return self.datastore.run(
            select, write=False, what=f"Selecting positions from {self.tracking_table_name!r}"
        )


# Our own inserts, which insert_events makes without calling them (see __init__).
_OUR_INSERT_EVENTS = {
    SQLiteAggregateRecorder._insert_events,
    SQLiteApplicationRecorder._insert_events,
    SQLiteProcessRecorder._insert_events,
}


# ---------------------------------------------------------------------------
# The factory.

SQLITE_DBNAME = "SQLITE_DBNAME"
SQLITE_LOCK_TIMEOUT = "SQLITE_LOCK_TIMEOUT"
SQLITE_SYNCHRONOUS = "SQLITE_SYNCHRONOUS"
SQLITE_RETRY_TIMEOUT = "SQLITE_RETRY_TIMEOUT"
ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"

# The tables of an application whose database is in the text layout.
TEXT_LAYOUT_TABLE_NAMES = {
    "events": TEXT_LAYOUT_EVENTS_TABLE,
    "snapshots": "stored_snapshots",
    "tracking": "tracking",
}


class SQLiteFactory(DatabaseFactory):
    """Builds SQLite recorders from ``SQLITE_DBNAME``, ``SQLITE_LOCK_TIMEOUT``,
    ``SQLITE_SYNCHRONOUS`` (``FULL``, the default, or ``NORMAL``: see the module
    docstring), ``ORIGINATOR_ID_TYPE`` (``uuid``, the default, or ``text``) and
    ``SQLITE_RETRY_TIMEOUT`` (else ``RETRY_TIMEOUT``, else 30: seconds an operation
    retries a database that stays locked past the lock timeout).

    Tables are ``<name>_events``, ``<name>_snapshots`` and ``<name>_tracking``
    (lower-cased application name), or ``stored_events``, ``snapshots`` and
    ``notification_tracking`` when the environment has no application name. In a
    database in the text layout (see above) that has no such events table, they
    are that layout's ``stored_events``, ``stored_snapshots`` and ``tracking``.
    """

    aggregate_recorder_class = SQLiteAggregateRecorder
    application_recorder_class = SQLiteApplicationRecorder
    process_recorder_class = SQLiteProcessRecorder

    # The names of the settings read here (the documented 9.x class attributes).
    SQLITE_DBNAME = SQLITE_DBNAME
    SQLITE_LOCK_TIMEOUT = SQLITE_LOCK_TIMEOUT
    SQLITE_SYNCHRONOUS = SQLITE_SYNCHRONOUS
    SQLITE_RETRY_TIMEOUT = SQLITE_RETRY_TIMEOUT
    ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"

    def __init__(self, env: Environment | None = None):
        super().__init__(env)
        db_name = self.env.get(SQLITE_DBNAME)
        if not db_name:
            raise OSError(
                f"{self.setting_name(SQLITE_DBNAME)} is not set: set it to a file path, "
                "':memory:' or a "
                "'file:NAME?mode=memory&cache=shared' URI"
            )
        timeout = self.setting_float(SQLITE_LOCK_TIMEOUT, None)
        synchronous = self.setting_choice(SQLITE_SYNCHRONOUS, SYNCHRONOUS_MODES)
        id_type = self.setting_choice(ORIGINATOR_ID_TYPE, ORIGINATOR_ID_TYPES)
        self.datastore = SQLiteDatastore(
            db_name,
            lock_timeout=timeout,
            synchronous=synchronous,
            originator_id_type=id_type,
            retry_timeout=self.setting_retry_timeout(SQLITE_RETRY_TIMEOUT),
        )
        self._table_names_checked = False

    def _check_table_names(self) -> None:
        """Take the text layout's table names if the database has those and not ours."""
        if self._table_names_checked:
            return
        ours = self.table_names["events"]

        def in_text_layout(conn: sqlite3.Connection) -> bool:
            columns = table_columns(conn, ours)
            if columns and ours != TEXT_LAYOUT_EVENTS_TABLE:
                return False
            return keeps_ids_as_text(table_columns(conn, TEXT_LAYOUT_EVENTS_TABLE))

        if self.datastore.run(in_text_layout, write=False, what="Reading the table layout"):
            self.table_names = dict(TEXT_LAYOUT_TABLE_NAMES)
        self._table_names_checked = True

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        self._check_table_names()
        return super().aggregate_recorder(purpose)

    def application_recorder(self) -> ApplicationRecorder:
        self._check_table_names()
        return super().application_recorder()

    def process_recorder(self) -> ProcessRecorder:
        self._check_table_names()
        return super().process_recorder()

    def dcb_recorder(self) -> SQLiteDCBRecorder:
        from eventsourcing.dcb._common import dcb_table_name  # (these import this module)
        from eventsourcing.dcb.sqlite import SQLiteDCBRecorder

        name = dcb_table_name(self.env.name)
        recorder = SQLiteDCBRecorder(self.datastore, events_table_name=name)
        return cast(SQLiteDCBRecorder, self._created(recorder))


Factory = SQLiteFactory


# ---------------------------------------------------------------------------
# Subscriptions and tracking recorders (materialised views).
#
# Writers in this process wake readers at once (through a beacon per database
# and table); writes of other processes are seen by polling PRAGMA data_version,
# which changes when another connection commits, every few ms.


class _CommitWatch:
    """Whether another connection committed to the database since the last look."""

    def __init__(self, datastore: SQLiteDatastore):
        self._conn: sqlite3.Connection | None = None
        if not datastore.is_memory:  # (in memory, every writer is in this process)
            self._conn = sqlite3.connect(
                datastore.db_name, uri=datastore._is_uri, check_same_thread=False
            )
        self._lock = threading.Lock()
        self._version = self._data_version()

    def _data_version(self) -> int | None:
        """The database's data version (None once closed, or in memory)."""
        with self._lock:
            if self._conn is None:
                return None
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        return int(version)

    def changed(self) -> bool:
        """Whether another connection committed since the last call (True if it cannot tell:
        in memory, where a look at the table itself is cheap, or once closed)."""
        version = self._data_version()
        if version is None:
            return True
        if version == self._version:
            return False
        self._version = version
        return True

    def close(self) -> None:
        # (Maybe from another thread, while the reader looks: under the lock.)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_beacons: dict[tuple[str, str], Beacon] = {}
_beacons_lock = threading.Lock()


def _beacon(datastore: SQLiteDatastore, table_name: str) -> Beacon:
    """The beacon of ``table_name`` in this database, shared by its recorders here."""
    key = (datastore.db_name if datastore.is_memory else os.path.abspath(datastore.db_name),)
    with _beacons_lock:
        return _beacons.setdefault((key[0], table_name), Beacon())


class SQLiteSubscription(ListenNotifySubscription):
    """Woken at once by inserts through the recorder; other processes' (and other
    recorder objects') commits are seen within ``poll_interval``."""

    poll_interval = 0.002

    def _make_waker(self) -> Waker:
        recorder = self._recorder
        assert isinstance(recorder, SQLiteApplicationRecorder)
        watch = _CommitWatch(recorder.datastore)
        interval = 0.005 if recorder.datastore.is_memory else self.poll_interval
        return BeaconWaker(self._beacon, interval, changed=watch.changed, on_close=watch.close)


SQLiteApplicationRecorder.subscription_class = SQLiteSubscription


class SQLiteTrackingRecorder(TrackingRecorder):
    """Tracking positions in a table of their own: the base of a SQLite view.

    A view adds its tables to ``construct_create_table_statements()`` and writes
    its rows and the position in one transaction::

        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute("UPDATE ...", (...))
            self._insert_tracking(cursor, tracking)
    """

    def __init__(
        self,
        datastore: SQLiteDatastore,
        *,
        tracking_table_name: str = "notification_tracking",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.datastore = datastore
        self.tracking_table_name = tracking_table_name
        self._tracking = quote_identifier(tracking_table_name)
        self._tracked = _beacon(datastore, tracking_table_name)
        self.create_table_statements = self.construct_create_table_statements()

    def construct_create_table_statements(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self._tracking} ("
            "application_name TEXT PRIMARY KEY, notification_id INTEGER NOT NULL) WITHOUT ROWID"
        ]

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            for statement in self.create_table_statements:
                cursor.execute(statement)

    def insert_tracking(self, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            self._insert_tracking(cursor, tracking)
        self._tracked.signal()  # (committed: a waiter woken now sees it)

    def _insert_tracking(self, cursor: SQLiteCursor, tracking: Tracking) -> None:
        """Move the position in ``cursor``'s transaction, or raise ``TrackingConflictError``
        (an ``IntegrityError``): a position only moves forwards."""
        if tracking.previous_notification_id is not None:
            self._check_tracking(cursor, tracking)
        cursor.execute(
            f"INSERT INTO {self._tracking} (application_name, notification_id) VALUES (?, ?) "
            "ON CONFLICT (application_name) DO UPDATE "
            "SET notification_id = excluded.notification_id "
            "WHERE notification_id < excluded.notification_id",
            (tracking.application_name, tracking.notification_id),
        )
        if cursor.rowcount != 1:
            self._check_tracking(cursor, tracking)
        # Before the commit: a waiter woken now may look too early, and then sees the
        # commit itself (data_version) a moment later.
        self._tracked.signal()

    def _check_tracking(self, cursor: SQLiteCursor, tracking: Tracking) -> None:
        cursor.execute(
            f"SELECT notification_id FROM {self._tracking} WHERE application_name = ?",
            (tracking.application_name,),
        )
        row = cursor.fetchone()
        conflict = tracking_conflict(tracking, None if row is None else int(row[0]))
        if conflict is not None:
            raise TrackingConflictError(conflict)

    def max_tracking_id(self, application_name: str) -> int | None:
        def select(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                f"SELECT notification_id FROM {self._tracking} WHERE application_name = ?",
                (application_name,),
            ).fetchone()
            return None if row is None else int(row[0])

        return self.datastore.run(
            select,
            write=False,
            what=f"Selecting the position of {application_name!r} in "
            f"{self.tracking_table_name!r}",
        )

    def tracking_positions(self) -> dict[str, int]:
        def select(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(f"SELECT application_name, notification_id FROM {self._tracking}")
            return {str(name): int(position) for name, position in rows}

        return self.datastore.run(
            select, write=False, what=f"Selecting positions from {self.tracking_table_name!r}"
        )

    def _tracking_waker(self) -> Waker:
        watch = _CommitWatch(self.datastore)
        interval = 0.002 if self.datastore.is_memory else 0.001
        return BeaconWaker(self._tracked, interval, changed=watch.changed, on_close=watch.close)


SQLiteFactory.tracking_recorder_class = SQLiteTrackingRecorder
__all__ += ["SQLiteSubscription", "SQLiteTrackingRecorder"]
