"""PostgreSQL recorders, with psycopg 3 and its connection pool.

Never skip: every insert into an application's events table first takes the
table's write lock, a transaction-level advisory lock keyed by the table's oid
(``pg_advisory_xact_lock('<events>'::regclass::oid::bigint)``), held until
commit. So writers to one events table run one at a time: a writer draws its ids
from the sequence only after the previous writer has committed (and become
visible), and ids become visible in increasing order. A reader that has seen id N
therefore never later finds a newly committed id below N. Readers take no lock
and are never blocked. (An insert also holds the table's ROW EXCLUSIVE lock from
its start, so writers that take ``LOCK TABLE ... IN EXCLUSIVE MODE`` instead, as
earlier versions of this library did, still run one at a time with these.)

A write is one statement, prepared once per connection: the lock, the insert
and ``NOTIFY`` as parts (CTEs) of it, which the server runs as one transaction
and commits before it answers (one round trip; the parts that draw ids or lock
rows join the lock, so it is taken first). A plain save inserts directly; a
conflict (the unique key on originator id and version) aborts it, recording
nothing, though the ids it drew are not reused: ids may have gaps, and readers do
not mind. A follower's write moves its tracking position in the same statement
as the insert, which records nothing, and draws no ids, if an event exists or the
position cannot move. (The statement sees the table as it was when it began: an
event that another writer committed while this one waited for the lock is found
by the unique key instead, and the write fails as a plain save's does; a moved
position is found by the update itself, which rereads a row changed meanwhile.)
A tracking table of a row per processed position takes a transaction of a few
statements instead (see ``PostgresProcessRecorder``).

Every identifier (schema, table) is quoted with ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from eventsourcing.persistence import (
    ORIGINATOR_ID_TYPE,
    ORIGINATOR_ID_TYPES,
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
    first_definer,
    inserting,
    new_notification,
    new_stored_event,
    tracking_conflict,
    wrong_id_type,
)
from eventsourcing.utils import Environment

__all__ = [
    "Factory",
    "PostgresAggregateRecorder",
    "PostgresApplicationRecorder",
    "PostgresCursor",
    "PostgresDatastore",
    "PostgresFactory",
    "PostgresProcessRecorder",
    "PostgresRecorder",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class PooledConnection(psycopg.Connection[Any]):
    """A pooled connection whose ``execute`` reuses one cursor.

    psycopg's ``execute`` makes a cursor per statement: one made once per
    connection spared a tenth of the client's instructions per save (callgrind).
    A pooled connection serves one thread at a time, and every statement of ours
    fetches its rows before the next one runs, so one cursor serves them all.
    """

    _statement_cursor: psycopg.Cursor[Any] | None = None

    def execute(  # (the same parameters as psycopg's, without its templates)
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool = False,
    ) -> psycopg.Cursor[Any]:
        cursor = self._statement_cursor
        if cursor is None or cursor.closed:
            cursor = self._statement_cursor = self.cursor(row_factory=tuple_row)
        cursor.format = psycopg.pq.Format.BINARY if binary else psycopg.pq.Format.TEXT
        return cursor.execute(query, params, prepare=prepare)


Connection = PooledConnection


class PostgresCursor(psycopg.Cursor[DictRow]):
    """The cursor of ``PostgresDatastore.transaction()``: rows are dicts keyed by
    column name. A recorder's ``_insert_events`` leaves the notification ids of
    the events it inserted in ``notification_ids``."""

    notification_ids: list[int] | None = None

    def __init__(self, connection: psycopg.Connection[Any]):
        super().__init__(connection, row_factory=dict_row)


MAX_IDENTIFIER_BYTES = 63  # PostgreSQL silently truncates longer names
CREATE_TABLE_LOCK_KEY = 0x65_76_65_6E_74_73  # advisory lock serialising our DDL


def _check_identifier(name: str) -> None:
    if not name or len(name.encode()) > MAX_IDENTIFIER_BYTES or "\x00" in name:
        raise ProgrammingError(
            f"Invalid PostgreSQL table name {name!r} ({len(name.encode())} bytes): it must "
            f"be 1 to {MAX_IDENTIFIER_BYTES} bytes, as PostgreSQL truncates longer names "
            "(use a shorter application name)"
        )


def one_line(error: BaseException) -> str:
    """An error's message on one line (libpq messages span several)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _is_retryable(error: psycopg.OperationalError) -> bool:
    """Lost connections, server restarts, deadlocks and serialisation failures."""
    state = error.sqlstate
    return (
        state is None
        or state.startswith("08")  # connection exception
        or state in ("57P01", "57P02", "57P03", "40001", "40P01")
    )


# The server's settings of synchronous_commit. "on" (the default) answers a commit once
# it is flushed to disk; "off" answers at once, so a crash of the server (not of the
# client) may lose the last commits, though the database stays consistent.
SYNCHRONOUS_COMMIT_MODES = ("on", "off", "local", "remote_write", "remote_apply")


class PostgresDatastore:
    """A pool of connections to one PostgreSQL database.

    Timeouts are in seconds; ``lock_timeout`` and
    ``idle_in_transaction_session_timeout`` of 0 mean no timeout, and
    ``conn_max_age`` of None means connections are never recycled for age.
    """

    max_retries = 3  # attempts after the first, on a lost connection
    retry_delay = 0.1  # doubled after each attempt

    def __init__(
        self,
        dbname: str,
        host: str,
        port: int | str,
        user: str,
        password: str,
        *,
        connect_timeout: int = 5,
        idle_in_transaction_session_timeout: int = 0,
        pool_size: int = 5,
        max_overflow: int = 10,
        max_waiting: int = 0,
        conn_max_age: float | None = None,
        pre_ping: bool = False,
        lock_timeout: int = 0,
        schema: str = "",
        pool_timeout: float = 30.0,
        synchronous_commit: str = "on",
        originator_id_type: str = "uuid",
    ):
        self.synchronous_commit = checked_mode(
            synchronous_commit, SYNCHRONOUS_COMMIT_MODES, "synchronous_commit"
        )
        # The column type of originator ids ("uuid" or "text") in the tables made here.
        self.originator_id_type = checked_mode(
            originator_id_type, list(ORIGINATOR_ID_TYPES), "originator_id_type"
        )
        self.dbname = dbname
        self.host = host
        self.port = int(port)
        self.user = user
        self.password = password
        self.connect_timeout = connect_timeout
        self.idle_in_transaction_session_timeout = idle_in_transaction_session_timeout
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        self.max_waiting = max_waiting
        self.conn_max_age = conn_max_age
        self.pre_ping = pre_ping
        self.lock_timeout = lock_timeout
        # The schema of the tables: "public" (the default) unless one is given.
        self.schema = schema.strip() or "public"
        self.schema_given = bool(schema.strip())
        self.pool_timeout = pool_timeout
        self._pool: ConnectionPool[PooledConnection] | None = None
        self._pool_lock = threading.Lock()
        self._closed = False

    # -- connections ---------------------------------------------------------

    def connect_kwargs(self) -> dict[str, Any]:
        options = []
        if self.synchronous_commit != "on":
            options.append(f"-c synchronous_commit={self.synchronous_commit}")
        if self.lock_timeout:
            options.append(f"-c lock_timeout={int(self.lock_timeout * 1000)}")
        if self.idle_in_transaction_session_timeout:
            ms = int(self.idle_in_transaction_session_timeout * 1000)
            options.append(f"-c idle_in_transaction_session_timeout={ms}")
        kwargs: dict[str, Any] = {
            "dbname": self.dbname,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "connect_timeout": self.connect_timeout,
            "autocommit": True,  # transactions are explicit: conn.transaction()
        }
        if options:
            kwargs["options"] = " ".join(options)
        return kwargs

    def describe(self) -> str:
        return (
            f"PostgreSQL at {self.host}:{self.port} (database {self.dbname!r}, user {self.user!r})"
        )

    def connection_error(self, error: BaseException, what: str = "") -> OperationalError:
        doing = f"{what}: " if what else ""
        return OperationalError(f"{doing}cannot use {self.describe()}: {one_line(error)}")

    def probe(self) -> None:
        """Connect once, directly, so a bad setting fails at once with its real cause."""
        try:
            psycopg.connect(**self.connect_kwargs()).close()
        except psycopg.Error as error:
            raise self.connection_error(error, "Connecting") from None

    def pool(self) -> ConnectionPool[PooledConnection]:
        with self._pool_lock:
            if self._closed:
                raise InterfaceError(f"Datastore for {self.describe()} is closed")
            if self._pool is None:
                self.probe()
                pool = ConnectionPool(
                    connection_class=PooledConnection,
                    kwargs=self.connect_kwargs(),
                    min_size=self.pool_size,
                    max_size=self.pool_size + self.max_overflow,
                    max_waiting=self.max_waiting,
                    # "None" means no age limit; the pool needs a number.
                    max_lifetime=float(self.conn_max_age or 10 * 365 * 24 * 3600),
                    check=ConnectionPool.check_connection if self.pre_ping else None,
                    timeout=self.pool_timeout,
                    name=f"eventsourcing-{self.dbname}",
                    open=False,
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def run(
        self,
        func: Callable[[Connection], T],
        *,
        what: What,
        transaction: bool = True,
    ) -> T:
        """Run ``func`` with a pooled connection (in a transaction), retrying lost connections.

        Caution: if a connection is lost while COMMIT is in flight, the retried
        insert may find its own events recorded and raise ``RecordConflictError``.
        """
        delay = self.retry_delay
        for attempt in range(self.max_retries + 1):
            try:
                return self._run_pooled(func, transaction)
            except PoolTimeout as error:
                self.probe()  # raises with the real cause if the server is unreachable
                raise OperationalError(
                    f"{describe(what)}: no connection to {self.describe()} free within "
                    f"{self.pool_timeout}s (pool of {self.pool_size}+{self.max_overflow})"
                ) from error
            except psycopg.OperationalError as error:
                if attempt == self.max_retries or not _is_retryable(error):
                    raise self.translate(error, describe(what)) from error
                logger.warning("%s: retrying after error: %s", describe(what), one_line(error))
                time.sleep(delay)
                delay *= 2
                self.probe()
                self._discard_broken_connections()
            except psycopg.Error as error:
                raise self.translate(error, describe(what)) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_pooled(self, func: Callable[[Connection], T], transaction: bool) -> T:
        # getconn/putconn rather than pool.connection(): that context manager also
        # commits on the way out (nothing to commit in autocommit mode): ~8% of the
        # client's instructions per save (callgrind).
        # putconn rolls back a connection left in a transaction, and drops a broken one.
        pool = self.pool()
        conn = pool.getconn()
        try:
            if not transaction:
                return func(conn)
            with conn.transaction():
                return func(conn)
        finally:
            pool.putconn(conn)

    @contextmanager
    def get_connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        """A pooled connection whose cursors give rows as dicts, for an extension's
        queries, in a transaction committed at the end of the block (rolled back if
        it raises)."""
        with self.transaction(commit=True) as cursor:
            conn = cursor.connection
            conn.row_factory = dict_row
            try:
                yield conn
            finally:
                conn.row_factory = tuple_row

    @contextmanager
    def transaction(self, commit: bool = False) -> Iterator[PostgresCursor]:
        """A cursor in a transaction of its own: committed at the end if ``commit``,
        else rolled back; rolled back if the block raises. Errors of the database
        are raised as ours (``IntegrityError``, ``ProgrammingError``...)."""
        what = "Running a transaction"
        try:
            pool = self.pool()
            conn = pool.getconn()
        except PoolTimeout as error:
            raise OperationalError(
                f"{what}: no connection to {self.describe()} free within {self.pool_timeout}s"
            ) from error
        try:
            with conn.transaction(force_rollback=not commit), PostgresCursor(conn) as cursor:
                yield cursor
        except psycopg.Error as error:
            raise self.translate(error, what) from error
        finally:
            pool.putconn(conn)

    def _discard_broken_connections(self) -> None:
        if self._pool is not None:
            try:
                self._pool.check()
            except psycopg.Error:  # pragma: no cover (best effort)
                pass

    def translate(self, error: psycopg.Error, what: str) -> PersistenceError:
        """Our DB-API-shaped error, one line, naming what failed."""
        message = f"{what} failed: {one_line(error)}"
        if isinstance(error, psycopg.errors.UndefinedTable):
            return ProgrammingError(f"{message} (create the table: CREATE_TABLE=true)")
        if isinstance(error, psycopg.OperationalError):
            if _is_retryable(error):
                return self.connection_error(error, what)
            return OperationalError(message)
        pairs: list[tuple[type[psycopg.Error], type[PersistenceError]]] = [
            (psycopg.IntegrityError, IntegrityError),
            (psycopg.DataError, DataError),
            (psycopg.NotSupportedError, NotSupportedError),
            (psycopg.InternalError, InternalError),
            (psycopg.ProgrammingError, ProgrammingError),
            (psycopg.InterfaceError, InterfaceError),
        ]
        for psycopg_cls, our_cls in pairs:
            if isinstance(error, psycopg_cls):
                return our_cls(message)
        return DatabaseError(message)

    def table(self, name: str) -> sql.Identifier:
        """The quoted, schema-qualified name of a table (ProgrammingError if too long)."""
        _check_identifier(name)
        return sql.Identifier(self.schema, name) if self.schema_given else sql.Identifier(name)

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            if self._pool is not None:
                self._pool.close(timeout=5)
                self._pool = None


# ---------------------------------------------------------------------------
# Recorders.


class PostgresRecorder:
    """Base of the PostgreSQL recorders, and of extensions that keep tables of their own.

    ``sql_create_statements`` are run, in order and in one transaction, by
    ``create_table()``: an extension appends its own after ``__init__``, or
    overrides ``construct_create_table_statements()``.
    """

    MAX_IDENTIFIER_LEN = MAX_IDENTIFIER_BYTES

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(**kwargs)
        self.datastore = datastore
        self.sql_create_statements: list[sql.Composable] = []

    @staticmethod
    def check_identifier_length(table_name: str) -> None:
        """ProgrammingError if PostgreSQL would truncate ``table_name`` (past 63 bytes)."""
        _check_identifier(table_name)

    def create_table(self) -> None:
        def create(conn: Connection) -> None:
            # Concurrent CREATE ... IF NOT EXISTS can still collide: serialise our DDL.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_TABLE_LOCK_KEY,))
            if self.datastore.schema_given:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(self.datastore.schema)
                    )
                )
            for statement in self.sql_create_statements:
                conn.execute(statement)

        self.datastore.run(create, what=f"Creating tables of {type(self).__name__}")


class PostgresAggregateRecorder(PostgresRecorder, AggregateRecorder):
    """Stored events keyed by (originator_id, originator_version).

    An extension may override ``_insert_events(cursor, stored_events, **kwargs)``
    to write rows of its own in the transaction that inserts the events (calling
    ``super()._insert_events`` to insert them); the keyword arguments are those
    given to ``insert_events`` (and ``Application.save``).
    """

    def __init__(
        self,
        datastore: PostgresDatastore,
        events_table_name: str = "stored_events",
        **kwargs: Any,
    ):
        super().__init__(datastore, **kwargs)
        self.events_table_name = events_table_name
        self._events = datastore.table(events_table_name)
        self._statements: dict[Hashable, bytes] = {}
        # The SQL type of originator ids, and the Python type of the ids it takes.
        self._id_sql_type = datastore.originator_id_type
        self._id_type = ORIGINATOR_ID_TYPES[self._id_sql_type]
        self.sql_create_statements.extend(self.construct_create_table_statements())
        self.create_table_statements = self.sql_create_statements  # (an older name)
        # Whether a subclass writes more in the transaction of an insert: then every
        # insert goes through its _insert_events (else straight to the quick statements).
        self._extended = first_definer(type(self), "_insert_events") not in _OUR_RECORDERS

    def construct_create_table_statements(self) -> list[sql.Composable]:
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "originator_id {} NOT NULL, "
                "originator_version bigint NOT NULL, "
                "topic text NOT NULL, "
                "state bytea NOT NULL, "
                "PRIMARY KEY (originator_id, originator_version))"
            ).format(self._events, sql.SQL(self._id_sql_type))
        ]

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if self._extended:
            return self._insert_extended(stored_events, kwargs)
        if stored_events:
            self._check_written(stored_events)
            self.datastore.run(
                lambda conn: self._insert_rows(conn, stored_events, returning=False),
                what=inserting(self.events_table_name, stored_events),
            )
        return None

    def _insert_extended(
        self, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]
    ) -> Sequence[int] | None:
        """Insert through the subclass's ``_insert_events``, in one transaction."""

        def insert(conn: Connection) -> Sequence[int] | None:
            with PostgresCursor(conn) as cursor:
                ids = self._insert_events(cursor, stored_events, **kwargs)
                return ids if ids is not None else cursor.notification_ids

        return self.datastore.run(
            insert, what=inserting(self.events_table_name, stored_events, kwargs.get("tracking"))
        )

    def _insert_events(
        self, cursor: PostgresCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the events with ``cursor``, in its transaction (the extension point)."""
        if stored_events:
            self._check_written(stored_events)
            self._insert_rows(cursor.connection, stored_events, returning=False)
        return None

    def _check_written(self, stored_events: Sequence[StoredEvent]) -> None:
        """Refuse ids of another type than the table's, and an event twice in one write."""
        id_type = self._id_type
        if len(stored_events) == 1:  # the usual save
            originator_id = stored_events[0].originator_id
            if type(originator_id) is not id_type and not isinstance(originator_id, id_type):
                raise self._wrong_id(originator_id)
            return
        seen: set[tuple[Any, int]] = set()
        for stored in stored_events:
            originator_id = stored.originator_id
            if type(originator_id) is not id_type and not isinstance(originator_id, id_type):
                raise self._wrong_id(originator_id)
            key = (originator_id, stored.originator_version)
            if key in seen:
                raise RecordConflictError(
                    f"Event of originator {originator_id} at version "
                    f"{stored.originator_version} is twice in one write to "
                    f"{self.events_table_name!r}; nothing was recorded"
                )
            seen.add(key)

    def _wrong_id(self, originator_id: object) -> PersistenceError:
        return wrong_id_type(originator_id, self._id_type, f"table {self.events_table_name!r}")

    def _insert_rows(
        self,
        conn: psycopg.Connection[Any],
        stored_events: Sequence[StoredEvent],
        *,
        returning: bool,
    ) -> list[int]:
        statement = sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)"
        ).format(self._events)
        if returning:
            statement += sql.SQL(" RETURNING notification_id")
        rows = [(s.originator_id, s.originator_version, s.topic, s.state) for s in stored_events]
        with conn.cursor() as cursor:
            try:
                cursor.executemany(statement, rows, returning=returning)
            except psycopg.errors.UniqueViolation as error:
                detail = error.diag.message_detail or one_line(error)
                raise RecordConflictError(
                    f"Event already recorded in {self.events_table_name!r}: {detail} "
                    "(originator_id, originator_version); nothing was recorded"
                ) from error
            if not returning:
                return []
            ids = []
            while True:
                row = cursor.fetchone()
                assert row is not None
                ids.append(int(row[0]))
                if not cursor.nextset():
                    return ids

    def _select_rows(self, statement: bytes, params: Sequence[Any], *, what: What) -> list[Any]:
        return self.datastore.run(
            lambda conn: conn.execute(statement, params).fetchall(),
            what=what,
            transaction=False,
        )

    def select_events(
        self,
        originator_id: UUID | str,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        id_type = self._id_type
        if type(originator_id) is not id_type and not isinstance(originator_id, id_type):
            raise self._wrong_id(originator_id)
        params: list[Any] = [originator_id]
        params += [v for v in (gt, lte) if v is not None]
        if limit is not None:
            params.append(max(limit, 0))
        shape = ("select_events", gt is not None, lte is not None, desc, limit is not None)
        statement = self._statement(shape, lambda: self._select_events_sql(*shape[1:]))
        rows = self._select_rows(
            statement,
            params,
            what=lambda: f"Selecting events of {originator_id} from {self.events_table_name!r}",
        )
        return [
            new_stored_event(originator_id, version, topic, bytes(state))
            for version, topic, state in rows
        ]

    def _select_events_sql(
        self, has_gt: bool, has_lte: bool, desc: bool, has_limit: bool
    ) -> sql.Composable:
        parts: list[sql.Composable] = [
            sql.SQL(
                "SELECT originator_version, topic, state FROM {} WHERE originator_id = %s"
            ).format(self._events)
        ]
        if has_gt:
            parts.append(sql.SQL("AND originator_version > %s"))
        if has_lte:
            parts.append(sql.SQL("AND originator_version <= %s"))
        parts.append(
            sql.SQL("ORDER BY originator_version DESC" if desc else "ORDER BY originator_version")
        )
        if has_limit:
            parts.append(sql.SQL("LIMIT %s"))
        return sql.SQL(" ").join(parts)

    def _statement(self, shape: Hashable, build: Callable[[], sql.Composable]) -> bytes:
        """A statement rendered once per shape: composing SQL on every call is slow."""
        statement = self._statements.get(shape)
        if statement is None:
            statement = self._statements[shape] = build().as_bytes(None)
        return statement


class PostgresApplicationRecorder(PostgresAggregateRecorder, ApplicationRecorder):
    """Stored events numbered in order of recording; inserts are serialised per table.

    After each insert, ``NOTIFY`` is sent on a channel named after the events
    table, on commit, so followers in other processes can wait instead of
    polling. The payload is empty: a listener only needs waking, and finding the
    last id for it (max over the table) cost ~70 us, a sixth of a one-event write.
    """

    def construct_create_table_statements(self) -> list[sql.Composable]:
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "notification_id bigserial PRIMARY KEY, "
                "originator_id {} NOT NULL, "
                "originator_version bigint NOT NULL, "
                "topic text NOT NULL, "
                "state bytea NOT NULL, "
                "UNIQUE (originator_id, originator_version))"
            ).format(self._events, sql.SQL(self._id_sql_type))
        ]

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this events table."""
        return self.events_table_name

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if self._extended:
            return self._insert_extended(stored_events, kwargs)
        if not stored_events:
            return []
        self._check_written(stored_events)
        return self.datastore.run(
            lambda conn: self._insert_values_and_notify(conn, stored_events),
            what=inserting(self.events_table_name, stored_events),
            transaction=False,  # one statement: its own transaction
        )

    def _insert_events(
        self, cursor: PostgresCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the events with ``cursor``, in its transaction (the extension point),
        and return their notification ids (also left in ``cursor.notification_ids``)."""
        ids: list[int] = []
        if stored_events:
            self._check_written(stored_events)
            ids = self._insert_values_and_notify(cursor.connection, stored_events)
        cursor.notification_ids = ids
        return ids

    def _insert_values_and_notify(
        self, conn: psycopg.Connection[Any], stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        """Take the table's write lock, insert the events and notify listeners: one
        statement, run as one transaction, committed (durably) before the server answers.

        A plain insert, the quickest: a conflict aborts the transaction (the
        unique key), so nothing is recorded, though the ids it drew are not reused.
        """
        return self._write(conn, stored_events, ("insert",), self._insert_sql, ())

    def _write(
        self,
        conn: psycopg.Connection[Any],
        stored_events: Sequence[StoredEvent],
        kind: tuple[str, ...],
        build: Callable[[int | None], sql.Composable],
        more_params: Sequence[Any],
    ) -> list[int]:
        """Run a write statement made by ``build`` (once per ``kind`` and shape); return
        the ids of the events it inserted.

        A few events (a save, a follower that keeps up) go as rows of values, in a
        statement prepared per count; more go as four arrays. A duplicate, even one
        committed while this write waited for the lock, is a RecordConflictError.
        """
        count = len(stored_events)
        shape = count if count <= _VALUES_MAX else None
        statement = self._statement((*kind, shape), lambda: build(shape))
        params = _new_rows_params(stored_events, shape)
        params += more_params
        params.append(self.channel)
        try:
            rows = conn.execute(statement, params, prepare=shape is not None).fetchall()
        except psycopg.errors.UniqueViolation as error:
            detail = error.diag.message_detail or one_line(error)
            raise RecordConflictError(
                f"Event already recorded in {self.events_table_name!r}: {detail} "
                "(originator_id, originator_version); nothing was recorded"
            ) from error
        return sorted(int(row[0]) for row in rows)

    def _insert_sql(self, shape: int | None) -> sql.Composable:
        return self._write_sql(
            _new_rows_cte(shape, self._id_sql_type),
            "inserted AS (INSERT INTO {events} (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM new, lock "
            "ORDER BY position RETURNING notification_id)",
        )

    def _write_sql(self, *ctes: str) -> sql.Composable:
        """One statement that writes to the events table: first the table's write lock
        (see the module docstring), then ``ctes`` (which must end with ``inserted``,
        and join ``lock`` wherever they draw ids or lock rows), then NOTIFY."""
        return sql.SQL(
            "WITH lock AS (SELECT pg_advisory_xact_lock({lock_key}::regclass::oid::bigint)), "
            + ", ".join(ctes)
            + ", notified AS (SELECT pg_notify(%s, '') AS sent) "
            "SELECT notification_id FROM inserted, notified"
        ).format(**self._sql_names())

    def _sql_names(self) -> dict[str, sql.Composable]:
        """What the write statements name: the events table, and its lock's key."""
        return {"events": self._events, "lock_key": sql.Literal(self._events.as_string(None))}

    def open_listener(self) -> PostgresListener:
        """Start listening for commits to this table (call before reading the log).

        A follower reads after listening, then waits: nothing committed in
        between is missed. Close the listener when done.
        """
        return PostgresListener(self.datastore, self.channel)

    def listen(self, callback: Callable[[], None]) -> Callable[[], None] | None:
        """Call ``callback`` (in a background thread) after each commit to this table."""
        listener = self.open_listener()
        stopping = threading.Event()

        def run() -> None:
            try:
                while not stopping.is_set():
                    if listener.wait(timeout=0.5):
                        callback()
            except Exception as error:  # the caller's poll interval still covers us
                if not stopping.is_set():
                    logger.warning("Stopped listening on %r: %s", self.channel, error)
            finally:
                listener.close()

        thread = threading.Thread(target=run, name=f"listen-{self.channel}", daemon=True)
        thread.start()

        def stop() -> None:
            stopping.set()
            thread.join(timeout=2)

        return stop

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        params: list[Any] = [v for v in (start, stop) if v is not None]
        if topics:
            params.append(list(topics))
        params.append(max(limit, 0))
        shape = (
            "select_notifications",
            start is not None,
            inclusive_of_start,
            stop is not None,
            bool(topics),
        )
        statement = self._statement(shape, lambda: self._select_notifications_sql(*shape[1:]))
        rows = self._select_rows(
            statement, params, what=f"Selecting notifications from {self.events_table_name!r}"
        )
        return [
            new_notification(originator_id, version, topic, bytes(state), nid)
            for nid, originator_id, version, topic, state in rows
        ]

    def _select_notifications_sql(
        self, has_start: bool, inclusive_of_start: bool, has_stop: bool, has_topics: bool
    ) -> sql.Composable:
        parts: list[sql.Composable] = [
            sql.SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                "FROM {} WHERE TRUE"
            ).format(self._events)
        ]
        if has_start:
            parts.append(
                sql.SQL(
                    "AND notification_id >= %s"
                    if inclusive_of_start
                    else "AND notification_id > %s"
                )
            )
        if has_stop:
            parts.append(sql.SQL("AND notification_id <= %s"))
        if has_topics:
            parts.append(sql.SQL("AND topic = ANY(%s)"))
        parts.append(sql.SQL("ORDER BY notification_id LIMIT %s"))
        return sql.SQL(" ").join(parts)

    def max_notification_id(self) -> int | None:
        statement = self._statement(
            "max_notification_id",
            lambda: sql.SQL("SELECT MAX(notification_id) FROM {}").format(self._events),
        )

        def select(conn: Connection) -> int | None:
            row = conn.execute(statement).fetchone()
            return None if row is None or row[0] is None else int(row[0])

        return self.datastore.run(
            select,
            what=f"Selecting max notification id of {self.events_table_name!r}",
            transaction=False,
        )


class PostgresProcessRecorder(PostgresApplicationRecorder, ProcessRecorder):
    """Also records, per upstream application, the position processed in its log.

    Our tracking table holds a row per upstream application, moved by each write.
    An existing table that holds a row per processed position instead (its primary
    key on the application name and the position, as 9.3 made them) is kept so,
    that what wrote it can read it on: a row is added per batch, and the position
    is the highest. Such a write takes the events table's write lock first (as
    every write to the events table does), then reads the position, checks it and
    adds the row, in one transaction: so writers to one tracking table check one
    at a time, each seeing the rows of those before it, and of two that processed
    overlapping batches, the second is refused.
    """

    def __init__(
        self,
        datastore: PostgresDatastore,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ):
        self.tracking_table_name = tracking_table_name
        self._tracking = datastore.table(tracking_table_name)
        super().__init__(datastore, events_table_name)
        self._row_per_position = "notification_id" in self._tracking_primary_key()

    def _tracking_primary_key(self) -> set[str]:
        """The columns of the tracking table's primary key (none if there is no table)."""
        statement = (
            "SELECT a.attname FROM pg_index AS i JOIN pg_attribute AS a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary"
        )
        name = self._tracking.as_string(None)
        return self.datastore.run(
            lambda conn: {str(row[0]) for row in conn.execute(statement, (name,))},
            what=f"Reading the layout of {self.tracking_table_name!r}",
            transaction=False,
        )

    def construct_create_table_statements(self) -> list[sql.Composable]:
        return [
            *super().construct_create_table_statements(),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "application_name text PRIMARY KEY, "
                "notification_id bigint NOT NULL)"
            ).format(self._tracking),
        ]

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        tracking: Tracking | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        if self._extended:
            return self._insert_extended(stored_events, dict(kwargs, tracking=tracking))
        if tracking is None:
            return super().insert_events(stored_events, **kwargs)
        self._check_written(stored_events)
        return self.datastore.run(
            lambda conn: self._insert_tracked(conn, stored_events, tracking),
            what=inserting(self.events_table_name, stored_events, tracking),
            # Each write to our table is one statement; to a row per position, several.
            transaction=self._row_per_position,
        )

    def _insert_events(
        self, cursor: PostgresCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        if tracking is None:
            return super()._insert_events(cursor, stored_events, **kwargs)
        self._check_written(stored_events)
        ids = cursor.notification_ids = self._insert_tracked(
            cursor.connection, stored_events, tracking
        )
        return ids

    def _insert_tracked(
        self,
        conn: psycopg.Connection[Any],
        stored_events: Sequence[StoredEvent],
        tracking: Tracking,
    ) -> list[int]:
        """Insert the events and move the tracking position, or raise TrackingConflictError."""
        if self._row_per_position:
            return self._insert_tracked_in_steps(conn, stored_events, tracking)
        if not stored_events:
            self._advance_tracking(conn, tracking)
            return []
        ids = self._insert_tracked_and_notify(conn, stored_events, tracking)
        if ids is None:
            raise TrackingConflictError(self._refusal(conn, tracking))
        return ids

    def _insert_tracked_and_notify(
        self,
        conn: psycopg.Connection[Any],
        stored_events: Sequence[StoredEvent],
        tracking: Tracking,
    ) -> list[int] | None:
        """Take the table's write lock, insert the events (moving the tracking position),
        and notify listeners: one statement, one transaction, one round trip.

        The insert writes nothing if any event is already recorded or the position
        cannot move, so a refused write changes nothing and uses up no notification
        ids. Then the cause is found: ``RecordConflictError`` is raised first (as
        the in-memory store does); else None is returned: the position could not move.
        """
        kind = _tracking_kind(tracking)
        ids = self._write(
            conn,
            stored_events,
            ("insert tracked", kind),
            lambda shape: self._insert_tracked_sql(kind, shape),
            _tracking_params(tracking),
        )
        if len(ids) == len(stored_events):
            return ids
        self._check_conflicts(conn, stored_events)  # raises, naming the event
        return None

    def _insert_tracked_sql(self, tracking_kind: str, shape: int | None) -> sql.Composable:
        """The tracked insert, of ``shape`` rows given as values, or (None) of four arrays."""
        return self._write_sql(
            _new_rows_cte(shape, self._id_sql_type),
            "recorded AS (SELECT 1 FROM {events} AS e JOIN new "
            "USING (originator_id, originator_version) LIMIT 1)",
            f"tracked AS ({_tracking_sql(tracking_kind, _UNLESS_RECORDED)})",
            "inserted AS (INSERT INTO {events} (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM new, lock "
            "WHERE NOT EXISTS (SELECT 1 FROM recorded) AND EXISTS (SELECT 1 FROM tracked) "
            "ORDER BY position RETURNING notification_id)",
        )

    def _sql_names(self) -> dict[str, sql.Composable]:
        return {**super()._sql_names(), "tracking": self._tracking}

    def _insert_tracked_in_steps(
        self,
        conn: psycopg.Connection[Any],
        stored_events: Sequence[StoredEvent],
        tracking: Tracking,
    ) -> list[int]:
        """Insert the events and add a tracking row, in the caller's transaction
        (for a tracking table of a row per position: see the class docstring)."""
        if stored_events:  # first, as in one statement: a recorded event is named as such
            ids = self._insert_values_and_notify(conn, stored_events)
        else:
            ids = []
            conn.execute(self._statement(("lock",), self._lock_sql))
        # A statement after the lock is held sees every earlier writer's rows.
        position = self._select_position(conn, tracking.application_name)
        conflict = tracking_conflict(tracking, position)
        if conflict is not None:
            raise TrackingConflictError(conflict)
        statement = self._statement(
            ("add tracking row",),
            lambda: sql.SQL(
                "INSERT INTO {} (application_name, notification_id) VALUES (%s, %s)"
            ).format(self._tracking),
        )
        try:
            conn.execute(statement, (tracking.application_name, tracking.notification_id))
        except psycopg.errors.UniqueViolation as error:  # by a writer that took no lock
            raise TrackingConflictError(
                f"Notification {tracking.notification_id} of {tracking.application_name!r} "
                "is already processed; nothing was recorded"
            ) from error
        return ids

    def _lock_sql(self) -> sql.Composable:
        return sql.SQL("SELECT pg_advisory_xact_lock({lock_key}::regclass::oid::bigint)").format(
            **self._sql_names()
        )

    def _check_conflicts(
        self, conn: psycopg.Connection[Any], stored_events: Sequence[StoredEvent]
    ) -> None:
        """Raise ``RecordConflictError`` naming the first duplicate or recorded event."""
        statement = sql.SQL(
            "SELECT e.originator_id, e.originator_version FROM {} AS e "
            "JOIN unnest(%s::{}[], %s::bigint[]) AS k(originator_id, originator_version) "
            "USING (originator_id, originator_version)"
        ).format(self._events, sql.SQL(self._id_sql_type))
        params = (
            [s.originator_id for s in stored_events],
            [s.originator_version for s in stored_events],
        )
        recorded = {(row[0], int(row[1])) for row in conn.execute(statement, params)}
        seen: set[tuple[Any, int]] = set()
        for stored in stored_events:
            key = (stored.originator_id, stored.originator_version)
            if key in seen or key in recorded:
                raise RecordConflictError(
                    f"Event of originator {stored.originator_id} at version "
                    f"{stored.originator_version} is already recorded in "
                    f"{self.events_table_name!r}; nothing was recorded"
                )
            seen.add(key)

    def _advance_tracking(self, conn: psycopg.Connection[Any], tracking: Tracking) -> None:
        kind = _tracking_kind(tracking)
        statement = self._statement(
            ("track", kind),
            lambda: sql.SQL(_tracking_sql(kind, "")).format(tracking=self._tracking),
        )
        if len(conn.execute(statement, _tracking_params(tracking)).fetchall()) != 1:
            raise TrackingConflictError(self._refusal(conn, tracking))

    def _refusal(self, conn: psycopg.Connection[Any], tracking: Tracking) -> str:
        # The row, if any, is locked by the statement, so this read is stable.
        position = self._select_position(conn, tracking.application_name)
        return (
            tracking_conflict(tracking, position)
            or f"Tracking of {tracking.application_name!r} was not recorded"
        )

    def _select_position(self, conn: psycopg.Connection[Any], application_name: str) -> int | None:
        # MAX: a table may hold a row per processed position (see the class docstring).
        statement = self._statement(
            ("select position",),
            lambda: sql.SQL(
                "SELECT MAX(notification_id) FROM {} WHERE application_name = %s"
            ).format(self._tracking),
        )
        row = conn.execute(statement, (application_name,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.datastore.run(
            lambda conn: self._select_position(conn, application_name),
            what=f"Selecting tracking position of {application_name!r} "
            f"from {self.tracking_table_name!r}",
            transaction=False,
        )

    def tracking_positions(self) -> dict[str, int]:
        statement = sql.SQL(
            "SELECT application_name, MAX(notification_id) FROM {} GROUP BY application_name"
        ).format(self._tracking)

        def select(conn: Connection) -> dict[str, int]:
            return {str(name): int(pos) for name, pos in conn.execute(statement).fetchall()}

        return self.datastore.run(
            select,
            what=f"Selecting positions from {self.tracking_table_name!r}",
            transaction=False,
        )


# How a tracking position moves: race-free, the WHERE refuses to go back, or to move
# from anywhere but the position the batch started from. ``{after}`` is a further
# condition (within an insert of events: "unless an event is already recorded").
_TRACKING_SQL = {
    # A row at the position the batch started from must be there: compare and set.
    "compare and set": (
        "UPDATE {{tracking}} SET notification_id = %s WHERE application_name = %s "
        "AND notification_id = %s AND notification_id < %s {after}RETURNING 1"
    ),
    # No row expected (started from 0), or any earlier position (not said).
    "upsert": (
        "INSERT INTO {{tracking}} AS t (application_name, notification_id) "
        "SELECT %s, %s {after_where}"
        "ON CONFLICT (application_name) DO UPDATE "
        "SET notification_id = EXCLUDED.notification_id "
        "WHERE t.notification_id < EXCLUDED.notification_id AND %s::bigint IS NULL "
        "RETURNING 1"
    ),
}
# (Within a write: the write lock is taken before the tracking row is, so two
# writers of one position wait for each other instead of deadlocking.)
_UNLESS_RECORDED = "AND NOT EXISTS (SELECT 1 FROM recorded) AND EXISTS (SELECT 1 FROM lock) "


def _tracking_kind(tracking: Tracking) -> str:
    return "compare and set" if tracking.previous_notification_id else "upsert"


def _tracking_params(tracking: Tracking) -> tuple[Any, ...]:
    previous = tracking.previous_notification_id
    if previous:
        return (
            tracking.notification_id,
            tracking.application_name,
            previous,
            tracking.notification_id,
        )
    return (tracking.application_name, tracking.notification_id, previous)


def _tracking_sql(kind: str, after: str) -> str:
    where = "WHERE " + after[len("AND ") :] if after else ""
    return _TRACKING_SQL[kind].format(after=after, after_where=where)


# Up to this many events, an insert passes them as rows of values (a prepared
# statement per count): for a few rows much quicker than arrays (a one-event save
# measured ~470 us against ~880 us), slower for hundreds.
_VALUES_MAX = 16


def _new_rows_cte(shape: int | None, id_type: str) -> str:
    """The events to insert, numbered by ``position``: ``shape`` rows of values, or
    (None) four arrays, one per column; originator ids of the SQL type ``id_type``."""
    columns = "originator_id, originator_version, topic, state, position"
    if shape is None:
        return (
            f"new AS (SELECT * FROM unnest(%s::{id_type}[], %s::bigint[], %s::text[], "
            f"%s::bytea[]) WITH ORDINALITY AS n({columns}))"
        )
    values = ", ".join(
        f"(%s::{id_type}, %s::bigint, %s::text, %s::bytea, {position})"
        for position in range(1, shape + 1)
    )
    return f"new ({columns}) AS (VALUES {values})"


def _new_rows_params(stored_events: Sequence[StoredEvent], shape: int | None) -> list[Any]:
    if shape is None:
        return [
            [s.originator_id for s in stored_events],
            [s.originator_version for s in stored_events],
            [s.topic for s in stored_events],
            [s.state for s in stored_events],
        ]
    return [
        value
        for s in stored_events
        for value in (s.originator_id, s.originator_version, s.topic, s.state)
    ]


# The recorders of this module: a subclass whose _insert_events is one of theirs is
# not extended, and inserts with the quick statements.
_OUR_RECORDERS: tuple[type, ...] = (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresProcessRecorder,
)


class PostgresListener:
    """A dedicated connection that LISTENs on one events table's channel."""

    def __init__(self, datastore: PostgresDatastore, channel: str):
        self.datastore = datastore
        self.channel = channel
        what = f"Listening on {channel!r}"
        try:
            self._conn = psycopg.connect(**datastore.connect_kwargs())
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as error:
            raise datastore.translate(error, what) from error

    def wait(self, timeout: float) -> bool:
        """Whether new events were committed since the last call, waiting up to ``timeout``."""
        try:
            # Return at the first notice: waiting to drain others would delay every
            # wake-up. Notices already queued make the next calls return at once.
            return any(True for _ in self._conn.notifies(timeout=timeout, stop_after=1))
        except psycopg.Error as error:
            raise self.datastore.translate(error, f"Waiting on {self.channel!r}") from error

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PostgresListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# The factory.

POSTGRES_DBNAME = "POSTGRES_DBNAME"
POSTGRES_HOST = "POSTGRES_HOST"
POSTGRES_PORT = "POSTGRES_PORT"
POSTGRES_USER = "POSTGRES_USER"
POSTGRES_PASSWORD = "POSTGRES_PASSWORD"
POSTGRES_SCHEMA = "POSTGRES_SCHEMA"
POSTGRES_CONNECT_TIMEOUT = "POSTGRES_CONNECT_TIMEOUT"
POSTGRES_POOL_SIZE = "POSTGRES_POOL_SIZE"
POSTGRES_MAX_OVERFLOW = "POSTGRES_MAX_OVERFLOW"
POSTGRES_CONN_MAX_AGE = "POSTGRES_CONN_MAX_AGE"
POSTGRES_PRE_PING = "POSTGRES_PRE_PING"
POSTGRES_LOCK_TIMEOUT = "POSTGRES_LOCK_TIMEOUT"
POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT = "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"
POSTGRES_SYNCHRONOUS_COMMIT = "POSTGRES_SYNCHRONOUS_COMMIT"


class PostgresFactory(DatabaseFactory):
    """Builds PostgreSQL recorders; all of one application's recorders share one pool.

    Required: ``POSTGRES_DBNAME``, ``POSTGRES_HOST``, ``POSTGRES_USER``.
    ``POSTGRES_PASSWORD`` may be empty (trust or .pgpass authentication).
    ``POSTGRES_SYNCHRONOUS_COMMIT=off`` is a faster, less durable option (see
    ``SYNCHRONOUS_COMMIT_MODES``); the default is the server's durable ``on``.
    """

    aggregate_recorder_class = PostgresAggregateRecorder
    application_recorder_class = PostgresApplicationRecorder
    process_recorder_class = PostgresProcessRecorder

    # The names of the settings read here (the documented 9.x class attributes).
    POSTGRES_DBNAME = POSTGRES_DBNAME
    POSTGRES_HOST = POSTGRES_HOST
    POSTGRES_PORT = POSTGRES_PORT
    POSTGRES_USER = POSTGRES_USER
    POSTGRES_PASSWORD = POSTGRES_PASSWORD
    POSTGRES_SCHEMA = POSTGRES_SCHEMA
    POSTGRES_CONNECT_TIMEOUT = POSTGRES_CONNECT_TIMEOUT
    POSTGRES_POOL_SIZE = POSTGRES_POOL_SIZE
    POSTGRES_MAX_OVERFLOW = POSTGRES_MAX_OVERFLOW
    POSTGRES_CONN_MAX_AGE = POSTGRES_CONN_MAX_AGE
    POSTGRES_PRE_PING = POSTGRES_PRE_PING
    POSTGRES_LOCK_TIMEOUT = POSTGRES_LOCK_TIMEOUT
    POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT = POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT
    POSTGRES_SYNCHRONOUS_COMMIT = POSTGRES_SYNCHRONOUS_COMMIT
    ORIGINATOR_ID_TYPE = ORIGINATOR_ID_TYPE

    def __init__(self, env: Environment | None = None):
        super().__init__(env)
        self.datastore = PostgresDatastore(
            dbname=self._required(POSTGRES_DBNAME),
            host=self._required(POSTGRES_HOST),
            port=self.setting_int(POSTGRES_PORT, 5432),
            user=self._required(POSTGRES_USER),
            password=self.env.get(POSTGRES_PASSWORD) or "",
            connect_timeout=self.setting_int(POSTGRES_CONNECT_TIMEOUT, 5),
            idle_in_transaction_session_timeout=self.setting_int(
                POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT, 0
            ),
            pool_size=self.setting_int(POSTGRES_POOL_SIZE, 5),
            max_overflow=self.setting_int(POSTGRES_MAX_OVERFLOW, 10),
            conn_max_age=self.setting_float(POSTGRES_CONN_MAX_AGE, None),
            pre_ping=self.setting_bool(POSTGRES_PRE_PING, False),
            lock_timeout=self.setting_int(POSTGRES_LOCK_TIMEOUT, 0),
            schema=self.env.get(POSTGRES_SCHEMA) or "",
            synchronous_commit=self.setting_choice(
                POSTGRES_SYNCHRONOUS_COMMIT, SYNCHRONOUS_COMMIT_MODES
            ),
            originator_id_type=self.setting_choice(ORIGINATOR_ID_TYPE, list(ORIGINATOR_ID_TYPES)),
        )

    def _required(self, key: str) -> str:
        value = self.env.get(key)
        if not value:
            raise OSError(f"{key} is not set: the PostgreSQL store needs it")
        return str(value)


Factory = PostgresFactory  # (the name PERSISTENCE_MODULE looks for first)


# ---------------------------------------------------------------------------
# Subscriptions and tracking recorders (materialised views).


class PostgresSubscription(ListenNotifySubscription):
    """Woken by NOTIFY on the events table's channel, sent by every insert on commit."""


PostgresApplicationRecorder.subscription_class = PostgresSubscription


def _listen_on(
    datastore: PostgresDatastore, channel: str, callback: Callable[[], None]
) -> Callable[..., None]:
    """Call ``callback`` (in a thread) at each NOTIFY on ``channel``; listening has begun
    when this returns. Returns a function that stops it."""
    listener = PostgresListener(datastore, channel)
    stopping = threading.Event()

    def run() -> None:
        try:
            while not stopping.is_set():
                if listener.wait(timeout=0.5):
                    callback()
        except Exception as error:  # waiters still poll, now and then
            if not stopping.is_set():
                logger.warning("Stopped listening on %r: %s", channel, error)
        finally:
            listener.close()

    thread = threading.Thread(target=run, name=f"listen-{channel}", daemon=True)
    thread.start()

    def stop(join: bool = True) -> None:
        stopping.set()
        if join and thread is not threading.current_thread():
            thread.join(timeout=2)

    return stop


class PostgresTrackingRecorder(PostgresRecorder, TrackingRecorder):
    """Tracking positions in a table of their own: the base of a PostgreSQL view.

    A view appends its CREATE TABLE statements to ``sql_create_statements`` in
    ``__init__``, and writes its rows and the position in one transaction::

        with self.datastore.transaction(commit=True) as curs:
            curs.execute(query=..., params=..., prepare=True)
            self._insert_tracking(curs, tracking)

    Each position recorded sends NOTIFY on the table's channel when it commits,
    so that ``wait()``, in any process, returns as soon as the view has it.
    """

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        tracking_table_name: str = "notification_tracking",
        **kwargs: Any,
    ):
        super().__init__(datastore, **kwargs)
        self.check_identifier_length(tracking_table_name)
        self.tracking_table_name = tracking_table_name
        self._tracking_table = datastore.table(tracking_table_name)
        self.sql_create_statements.append(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "application_name text PRIMARY KEY, notification_id bigint NOT NULL)"
            ).format(self._tracking_table)
        )
        self.create_table_statements = self.sql_create_statements  # (an older name)
        self._insert_tracking_statement = sql.SQL(
            "WITH moved AS (INSERT INTO {table} AS t (application_name, notification_id) "
            "VALUES (%(application_name)s, %(notification_id)s) "
            "ON CONFLICT (application_name) DO UPDATE "
            "SET notification_id = EXCLUDED.notification_id "
            "WHERE t.notification_id < EXCLUDED.notification_id "
            "RETURNING notification_id) "
            "SELECT notification_id, pg_notify(%(channel)s, '') FROM moved"
        ).format(table=self._tracking_table)
        self._select_position_statement = sql.SQL(
            "SELECT notification_id FROM {} WHERE application_name = %s"
        ).format(self._tracking_table)
        self._tracked = Beacon()
        self._listening_lock = threading.Lock()
        self._stop_listening: Callable[..., None] | None = None

    @property
    def tracking_channel(self) -> str:
        """The LISTEN/NOTIFY channel told of each position recorded."""
        return self.tracking_table_name

    def insert_tracking(self, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._insert_tracking(curs, tracking)

    def _insert_tracking(self, curs: psycopg.Cursor[Any], tracking: Tracking) -> None:
        """Move the position in ``curs``'s transaction, or raise ``TrackingConflictError``
        (an ``IntegrityError``): a position only moves forwards."""
        if tracking.previous_notification_id is not None:
            self._check_tracking(curs, tracking, lock=True)
        curs.execute(
            query=self._insert_tracking_statement,
            params={
                "application_name": tracking.application_name,
                "notification_id": tracking.notification_id,
                "channel": self.tracking_channel,
            },
            prepare=True,
        )
        if curs.fetchone() is None:
            self._check_tracking(curs, tracking, lock=False)

    def _check_tracking(self, curs: psycopg.Cursor[Any], tracking: Tracking, lock: bool) -> None:
        statement = self._select_position_statement
        if lock:
            statement = sql.Composed([statement, sql.SQL(" FOR UPDATE")])
        curs.execute(statement, (tracking.application_name,))
        row = curs.fetchone()
        position = None if row is None else int(_first(row))
        conflict = tracking_conflict(tracking, position)
        if conflict is not None:
            raise TrackingConflictError(conflict)

    def max_tracking_id(self, application_name: str) -> int | None:
        def select(conn: Connection) -> int | None:
            row = conn.execute(
                self._select_position_statement, (application_name,), prepare=True
            ).fetchone()
            return None if row is None else int(_first(row))

        return self.datastore.run(
            select,
            what=f"Selecting the position of {application_name!r} in "
            f"{self.tracking_table_name!r}",
            transaction=False,
        )

    def tracking_positions(self) -> dict[str, int]:
        statement = sql.SQL("SELECT application_name, notification_id FROM {}").format(
            self._tracking_table
        )
        return self.datastore.run(
            lambda conn: {str(name): int(pos) for name, pos in conn.execute(statement)},
            what=f"Selecting positions from {self.tracking_table_name!r}",
            transaction=False,
        )

    def _tracking_waker(self) -> Waker:
        self._listen_for_tracking()
        return BeaconWaker(self._tracked, interval=0.5)

    def _listen_for_tracking(self) -> None:
        """Listen (once, in a thread shared by this recorder's waits) for positions recorded."""
        with self._listening_lock:
            if self._stop_listening is None:
                self._stop_listening = _listen_on(
                    self.datastore, self.tracking_channel, self._tracked.signal
                )

    def close(self) -> None:
        """Stop listening for positions recorded (the datastore is the factory's to close)."""
        with self._listening_lock:
            stop, self._stop_listening = self._stop_listening, None
        if stop is not None:
            stop()

    def __del__(self) -> None:
        # A view dropped without close() must not keep its listening connection.
        stop = getattr(self, "_stop_listening", None)
        if stop is not None:
            stop(join=False)


def _first(row: Any) -> Any:
    """The first column of a row given as a tuple or as a dict."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


PostgresFactory.tracking_recorder_class = PostgresTrackingRecorder
__all__ += ["PostgresSubscription", "PostgresTrackingRecorder"]
