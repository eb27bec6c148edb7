"""The PostgreSQL datastore: connections from a pool, transactions, and the retries that
ride out outages (a refused or dropped connection, a restarting server). The recorders
of ``eventsourcing.postgres`` run every statement through it; this private module keeps
that module to the recorders."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast
from uuid import UUID

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.generators import execute as _answers_to_sent
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg.types.composite import CompositeInfo, register_composite
from psycopg_pool import ConnectionPool, PoolTimeout

from eventsourcing._postgres_connections import (
    CONTENTION_STATES,
    is_transient,
    one_line,
)
from eventsourcing._retry import Outage, Retry
from eventsourcing.persistence import (
    DEFAULT_RETRY_TIMEOUT,
    ORIGINATOR_ID_TYPES,
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    RecordConflictError,
    TrackingConflictError,
    What,
    checked_mode,
    describe,
)

logger = logging.getLogger("eventsourcing.postgres")  # (the name operators know)

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

    # The statements prepared for ``fetch_all``, by statement and parameter types: a
    # name (None: not one for the quick way).
    _quick: dict[tuple[bytes, tuple[int, ...]], bytes | None] | None = None

    def fetch_all(
        self, query: bytes, params: Sequence[Any], *, prepare: bool | None = None
    ) -> list[tuple[Any, ...]]:
        """The rows of ``query`` (``%s`` placeholders) run with ``params``, outside a
        transaction block: as ``execute(...).fetchall()`` does.

        Parameters of the usual types (UUID, int, str, bytes, None) go straight to
        libpq: a statement prepared once per connection, sent by one call, its answer
        waited for as psycopg waits and its rows loaded by psycopg's loaders (psycopg's
        execute took five times the client CPU, measured in the seed system: ~100 us
        of its main thread per statement). Anything else goes through ``execute``."""
        pgconn = self.pgconn
        dumped = _dump_params(params) if pgconn.transaction_status == _IDLE else None
        if dumped is None:
            return self.execute(query, params, prepare=prepare).fetchall()
        types, values, formats = dumped
        quick = self._quick
        if quick is None:
            quick = self._quick = {}
        key = (query, types)
        prepared = quick.get(key, _UNPREPARED)
        if prepared is _UNPREPARED:
            prepared = quick[key] = self._prepare_quick(query, types, len(quick))
        if prepared is None:
            return self.execute(query, params, prepare=prepare).fetchall()
        pgconn.send_query_prepared(prepared, cast(Any, values), formats, _BINARY)
        result = self._answer()
        status = result.status
        if status != _TUPLES_OK and status != _COMMAND_OK:
            if result.error_field(_SQLSTATE) == b"26000":  # (deallocated: DISCARD ALL)
                self._quick = None
                return self.execute(query, params, prepare=prepare).fetchall()
            raise _result_error(pgconn, result)
        # (psycopg's loaders, in C: 1.6 us for a row of four columns where a Python
        # loop took 2.5 us, 12 us for 100 rows against 180 us.)
        return _loaded_by_psycopg(self, result)

    def _prepare_quick(self, query: bytes, types: tuple[int, ...], number: int) -> bytes | None:
        """Prepare ``query`` for ``fetch_all``: None if its placeholders are not the
        quick way's."""
        pgconn = self.pgconn
        numbered = _numbered_placeholders(query)
        if numbered is None or pgconn.parameter_status(b"client_encoding") != b"UTF8":
            return None
        name = b"_es_quick_%d" % number
        pgconn.send_prepare(name, numbered, types)
        result = self._answer()
        if result.status != _COMMAND_OK:
            raise _result_error(pgconn, result)
        return name

    def _answer(self) -> psycopg.pq.abc.PGresult:
        """The answer to the statement just sent, waited for as psycopg waits: the
        GIL released, and Ctrl-C cancelling the statement in the server before
        KeyboardInterrupt is raised (a blocking libpq call, as PQexecPrepared, could
        not be interrupted before the server answered: a statement waiting on a lock
        held a script's Ctrl-C until the lock was released)."""
        return self.wait(_answers_to_sent(self.pgconn))[-1]


Connection = PooledConnection


def fetch_all(
    conn: psycopg.Connection[Any],
    query: bytes,
    params: Sequence[Any],
    *,
    prepare: bool | None = None,
) -> list[Any]:
    """The rows of ``query`` with ``params``: the quick way on a pooled connection (see
    ``PooledConnection.fetch_all``)."""
    if isinstance(conn, PooledConnection):
        return conn.fetch_all(query, params, prepare=prepare)
    return conn.execute(query, params, prepare=prepare).fetchall()


def _loaded_by_psycopg(conn: psycopg.Connection[Any], result: psycopg.pq.abc.PGresult) -> list[Any]:
    """The rows of ``result`` (binary) as psycopg loads them."""
    transformer = psycopg.adapt.Transformer(conn)
    transformer.set_pgresult(result, set_loaders=True, format=_BINARY)
    return transformer.load_rows(0, result.ntuples, tuple)


_UNPREPARED: Any = object()
_IDLE = psycopg.pq.TransactionStatus.IDLE
_TUPLES_OK = psycopg.pq.ExecStatus.TUPLES_OK
_COMMAND_OK = psycopg.pq.ExecStatus.COMMAND_OK
_BINARY = psycopg.pq.Format.BINARY
_SQLSTATE = psycopg.pq.DiagnosticField.SQLSTATE
_INT8_OID, _TEXT_OID, _UNKNOWN_OID, _BYTEA_OID, _UUID_OID, _BOOL_OID = 20, 25, 0, 17, 2950, 16


def _dump_params(
    params: Sequence[Any],
) -> tuple[tuple[int, ...], list[bytes | None], list[int]] | None:
    """The types, values and formats of ``params`` as the quick way sends them (the
    types psycopg would give them; str as unknown, for the server to infer), or None
    if one is of another type."""
    if not isinstance(params, (list, tuple)):
        return None
    types: list[int] = []
    values: list[bytes | None] = []
    formats: list[int] = []
    for param in params:
        kind = type(param)
        if kind is str:
            if "\x00" in param:  # (psycopg refuses it; libpq would cut the text there)
                return None
            types.append(_UNKNOWN_OID)
            values.append(param.encode())
            formats.append(0)
        elif kind is int:
            if not -(2**63) <= param < 2**63:
                return None
            types.append(_INT8_OID)
            values.append(b"%d" % param)
            formats.append(0)
        elif kind is UUID:
            types.append(_UUID_OID)
            values.append(param.bytes)
            formats.append(1)
        elif kind is bytes:
            types.append(_BYTEA_OID)
            values.append(param)
            formats.append(1)
        elif param is None:
            types.append(_UNKNOWN_OID)
            values.append(None)
            formats.append(0)
        else:
            return None
    return tuple(types), values, formats


def _numbered_placeholders(query: bytes) -> bytes | None:
    """``query`` with ``$1, $2...`` for its ``%s`` (and ``%`` for ``%%``), or None if it
    has placeholders of another kind (named ones)."""
    parts = _PLACEHOLDER.split(query)
    numbered = [parts[0]]
    count = 0
    for index in range(1, len(parts), 2):
        mark = parts[index]
        if mark == b"%%":
            numbered.append(b"%")
        elif mark == b"%s":
            count += 1
            numbered.append(b"$%d" % count)
        else:
            return None
        numbered.append(parts[index + 1])
    return b"".join(numbered)


_PLACEHOLDER = re.compile(rb"(%%|%s|%.?)", re.DOTALL)




def _result_error(pgconn: psycopg.pq.abc.PGconn, result: psycopg.pq.abc.PGresult) -> psycopg.Error:
    """The error psycopg would raise for a failed ``result``: of its SQLSTATE's class,
    or, with none (a lost connection), an OperationalError."""
    if result.error_field(_SQLSTATE):
        return psycopg.errors.error_from_result(result)
    message = result.error_message or pgconn.error_message
    return psycopg.OperationalError(message.decode(errors="replace").strip() or "connection lost")


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


# The server's settings of synchronous_commit. "on" (the default) answers a commit once
# it is flushed to disk; "off" answers at once, so a crash of the server (not of the
# client) may lose the last commits, though the database stays consistent.
SYNCHRONOUS_COMMIT_MODES = ("on", "off", "local", "remote_write", "remote_apply")

# libpq's environment variables, read when a setting is not given (for describing).
_LIBPQ_ENV = {"host": "PGHOST", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER"}


def _password_refreshing(get_password: Callable[[], str]) -> type[PooledConnection]:
    """A connection class that asks ``get_password`` for the password of each connection
    (for passwords that expire, such as cloud IAM tokens)."""

    class PasswordRefreshingConnection(PooledConnection):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            kwargs["password"] = get_password()
            return super().connect(conninfo, **kwargs)

    return PasswordRefreshingConnection


_TDatastore = TypeVar("_TDatastore", bound="PostgresDatastore")


class PostgresDatastore:
    """A pool of connections to one PostgreSQL database.

    Timeouts are in seconds; ``lock_timeout`` and
    ``idle_in_transaction_session_timeout`` of 0 mean no timeout, and
    ``conn_max_age`` of None means connections are never recycled for age.

    Empty ``dbname``, ``host``, ``port``, ``user`` and ``password`` are not passed to
    libpq, which then takes ``conninfo`` (a ``postgresql://`` URI or ``key=value``
    string), its environment (``PGHOST``, ``PGPASSWORD``, ``PGPASSFILE``...) or its
    defaults. ``get_password_func``, if given, is asked for the password of every new
    connection. Every connection sets ``application_name`` (seen in
    ``pg_stat_activity``) if one is given.

    Connections are opened when first needed, and as many as are used at once are
    kept (up to ``pool_size + max_overflow``). An operation that meets a transient
    failure (a refused or dropped connection, a server restarting, a deadlock) is
    retried with backoff for up to ``retry_timeout`` seconds, then fails with
    ``OperationalError``; one WARNING is logged (logger ``eventsourcing.postgres``)
    when an outage starts and one INFO when it is over.
    """

    def __init__(
        self,
        dbname: str,
        host: str,
        port: int | str | None,
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
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        application_name: str = "",
        conninfo: str = "",
        get_password_func: Callable[[], str] | None = None,
        # Taken as the 9.x PostgresDatastore takes them, and not used: the pool opens
        # when first used, a tracking table holds one row per upstream application,
        # and a write is one statement without database functions.
        pool_open_timeout: float | None = None,
        single_row_tracking: bool = True,
        enable_db_functions: bool = False,
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
        self.port = int(port) if port not in (None, "") else None
        self.user = user
        self.password = password
        self.conninfo = conninfo
        self.get_password_func = get_password_func
        self.application_name = application_name
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
        self.retry_timeout = float(retry_timeout)
        self.outage = Outage(logger, self.describe())
        self._connection_class = (
            PooledConnection
            if get_password_func is None
            else _password_refreshing(get_password_func)
        )
        self._pool: ConnectionPool[PooledConnection] | None = None
        self._pool_lock = threading.Lock()
        self._closed = False
        # Set as close() begins: retries stop (a notifier's too), pauses end at once.
        self._closing = threading.Event()
        self._flushes: list[Callable[[], None]] = []
        # Composite types (of this schema) whose values an extension's queries pass
        # and read as Python objects: add names to db_type_names, then call
        # register_type_adapters() (the 9.x API; our own recorders use none).
        self.db_type_names: set[str] = set()
        self.psycopg_type_adapters: dict[str, CompositeInfo] = {}
        self.psycopg_python_types: dict[str, Any] = {}

    # -- connections ---------------------------------------------------------

    def connect_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``psycopg.connect`` (besides ``conninfo``).

        Every session runs without JIT compilation: the planner's estimates for the
        statements that find the settled end of a large table (millions of rows)
        passed its threshold, and compiling took ~20 ms of a read that runs in a
        tenth of a millisecond (a session option given for ``jit`` still wins).
        Session options given otherwise (the URI's ``options``, else PGOPTIONS) are
        kept beside ours, not replaced by them (libpq reads PGOPTIONS only when no
        options are given); the settings of the datastore come last."""
        options = ["-c jit=off", self._options_given()]
        if self.synchronous_commit != "on":
            options.append(f"-c synchronous_commit={self.synchronous_commit}")
        if self.lock_timeout:
            options.append(f"-c lock_timeout={int(self.lock_timeout * 1000)}")
        if self.idle_in_transaction_session_timeout:
            ms = int(self.idle_in_transaction_session_timeout * 1000)
            options.append(f"-c idle_in_transaction_session_timeout={ms}")
        given = {
            "dbname": self.dbname,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "application_name": self.application_name,
        }
        # Unset ones are left out, so that libpq reads its environment or the URI.
        kwargs: dict[str, Any] = {key: value for key, value in given.items() if value}
        kwargs["connect_timeout"] = self.connect_timeout
        kwargs["autocommit"] = True  # transactions are explicit: conn.transaction()
        kwargs["options"] = " ".join(option for option in options if option)
        return kwargs

    def _options_given(self) -> str:
        """The session options of the URI (``conninfo``), else of PGOPTIONS."""
        if self.conninfo:
            try:
                given = psycopg.conninfo.conninfo_to_dict(self.conninfo).get("options")
            except psycopg.Error:
                given = None
            if given is not None:
                return str(given)
        return os.environ.get("PGOPTIONS", "")

    def _setting(self, key: str) -> str:
        """A connection parameter as libpq will take it: ours, the URI's, then PG*."""
        value = self.connect_kwargs().get(key)
        if not value and self.conninfo:
            try:
                value = psycopg.conninfo.conninfo_to_dict(self.conninfo).get(key)
            except psycopg.Error:
                value = None
        if not value:
            value = os.environ.get(_LIBPQ_ENV[key], "")
        return str(value or "")

    def describe(self) -> str:
        host = self._setting("host") or "localhost"
        port = self._setting("port") or "5432"
        dbname = self._setting("dbname") or "(libpq default)"
        user = self._setting("user") or "(libpq default)"
        return f"PostgreSQL at {host}:{port} (database {dbname!r}, user {user!r})"

    def connection_error(self, error: BaseException, what: str = "") -> OperationalError:
        doing = f"{what}: " if what else ""
        return OperationalError(f"{doing}cannot use {self.describe()}: {one_line(error)}")

    def connect(self) -> psycopg.Connection[Any]:
        """A new connection of our own, outside the pool (psycopg errors as they are)."""
        connection: psycopg.Connection[Any] = self._connection_class.connect(
            self.conninfo, **self.connect_kwargs()
        )
        return connection

    def probe(self) -> None:
        """Connect once, directly, so a bad setting fails at once with its real cause."""
        try:
            self.connect().close()
        except psycopg.Error as error:
            raise self.connection_error(error, "Connecting") from None

    def pool_settings(self, prefix: str) -> dict[str, Any]:
        """The settings of a pool of this datastore's connections (sync or async), named
        ``prefix`` and the database's name, not opened yet."""
        return {
            "kwargs": self.connect_kwargs(),
            # None open until needed; those used at once are kept (for max_idle).
            "min_size": 0,
            "max_size": self.pool_size + self.max_overflow,
            "max_waiting": self.max_waiting,
            # "None" means no age limit; the pool needs a number.
            "max_lifetime": float(self.conn_max_age or 10 * 365 * 24 * 3600),
            "timeout": self.pool_timeout,
            "name": f"{prefix}-{self.dbname or 'default'}",
            "open": False,
        }

    def pool(self) -> ConnectionPool[PooledConnection]:
        with self._pool_lock:
            if self._closed:
                raise InterfaceError(f"Datastore for {self.describe()} is closed")
            if self._pool is None:
                self.connect().close()  # (a psycopg error, to be retried if transient)
                pool = ConnectionPool(
                    self.conninfo,
                    connection_class=self._connection_class,
                    check=ConnectionPool.check_connection if self.pre_ping else None,
                    **self.pool_settings("eventsourcing"),
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
        recorded: Callable[[Connection], T | None] | None = None,
    ) -> T:
        """Run ``func`` with a pooled connection (in a transaction), retrying transient
        failures for up to ``retry_timeout`` seconds.

        A write retried after a lost connection may find its own rows already
        committed (the answer to the COMMIT was lost): then its conflict error is
        raised only if ``recorded`` (run after such a conflict) returns None; else
        what ``recorded`` returns is the write's result.
        """
        retry: Retry | None = None
        connection_lost = False
        while True:
            try:
                if connection_lost:
                    self._reconnect()
                result = self._run_pooled(func, transaction)
            except PoolTimeout as error:  # (a psycopg error too: caught first)
                raise self._pool_exhausted(what) from error
            except psycopg.Error as error:
                if not is_transient(error):
                    raise self.translate(error, describe(what)) from error
                if retry is None:
                    retry = Retry(self.outage, what, self.retry_timeout)
                connection_lost = error.sqlstate not in CONTENTION_STATES
                retry.failed(one_line(error), outage=connection_lost)
                continue
            except (RecordConflictError, TrackingConflictError):
                if retry is None or recorded is None:
                    raise
                result_if_ours = self.run(recorded, what=what, transaction=False)
                if result_if_ours is None:
                    raise
                result = result_if_ours
            if retry is not None or self.outage.ongoing:
                self.outage.end()
            return result

    def retrying(self, call: Callable[[], T], *, what: What) -> T:
        """``call()`` (which makes connections of its own), retrying transient failures
        as ``run`` does, until the datastore closes: once ``close()`` has begun, a
        failure is not retried, and a pause under way ends with the error."""
        retry: Retry | None = None
        while True:
            try:
                result = call()
            except psycopg.Error as error:
                if not is_transient(error) or self._closing.is_set():
                    raise self.translate(error, describe(what)) from error
                if retry is None:
                    retry = Retry(self.outage, what, self.retry_timeout)
                if self._closing.wait(retry.pause(one_line(error))):
                    raise self.translate(error, describe(what)) from error
                continue
            if retry is not None or self.outage.ongoing:
                self.outage.end()
            return result

    def _reconnect(self) -> None:
        """Before a retry: check the server answers (else raise its error, to wait
        more), then drop the pool's connections that the outage broke."""
        if self._closed:  # (closed while this waited: stop retrying)
            raise InterfaceError(f"Datastore for {self.describe()} is closed")
        self.connect().close()
        if self._pool is not None:
            # Replace the idle connections (those the outage broke), no more: a check
            # would also grow the pool by one.
            getattr(self._pool, "drain", self._pool.check)()

    def _pool_exhausted(self, what: What) -> OperationalError:
        self.probe()  # raises with the real cause if the server is unreachable
        return OperationalError(
            f"{describe(what)}: no connection to {self.describe()} free within "
            f"{self.pool_timeout}s (pool of {self.pool_size}+{self.max_overflow})"
        )

    def _run_pooled(self, func: Callable[[Connection], T], transaction: bool) -> T:
        # getconn/putconn rather than pool.connection(): that context manager also
        # commits on the way out (nothing to commit in autocommit mode): ~8% of the
        # client's instructions per save (callgrind).
        # putconn rolls back a connection left in a transaction, and drops a broken one.
        pool = self.pool()
        try:
            conn = pool.getconn()
        except PoolTimeout:
            # No connection came: if the server is unreachable, raise its error (to
            # be retried); else the pool is exhausted.
            self.connect().close()
            raise
        try:
            if not transaction:
                return func(conn)
            with conn.transaction():
                return func(conn)
        finally:
            pool.putconn(conn)

    def register_type_adapters(self) -> None:
        """Fetch the composite types named in ``db_type_names`` (those that exist, not
        fetched before): every connection then adapts their values, to and from
        ``psycopg_python_types[name]``."""
        names = [name for name in self.db_type_names if name not in self.psycopg_type_adapters]
        if not names:
            return
        with self.get_connection() as conn:
            for name in names:
                info = CompositeInfo.fetch(conn, f"{self.schema}.{name}")
                if info is None:
                    continue  # (not created yet: fetched by a later call)
                register_composite(info, conn)
                self.psycopg_type_adapters[name] = info
                self.psycopg_python_types[name] = info.python_type

    def _adapt_registered_types(self, conn: psycopg.Connection[Any]) -> None:
        for info in self.psycopg_type_adapters.values():
            if conn.adapters.types.get(info.oid) is None:
                register_composite(info, conn)

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
        are raised as ours (``IntegrityError``, ``ProgrammingError``...). (Getting the
        connection rides out an outage; the block itself is not retried.)"""
        what = "Running a transaction"
        pool = self.retrying(self.pool, what=what)
        try:
            conn = pool.getconn()
        except PoolTimeout as error:
            raise self._pool_exhausted(what) from error
        try:
            if self.psycopg_type_adapters:
                self._adapt_registered_types(conn)
            with conn.transaction(force_rollback=not commit), PostgresCursor(conn) as cursor:
                yield cursor
        except psycopg.Error as error:
            raise self.translate(error, what) from error
        finally:
            pool.putconn(conn)

    def translate(self, error: psycopg.Error, what: str) -> PersistenceError:
        """Our DB-API-shaped error, one line, naming what failed."""
        message = f"{what} failed: {one_line(error)}"
        if isinstance(error, psycopg.errors.UndefinedTable):
            return ProgrammingError(f"{message} (create the table: CREATE_TABLE=true)")
        if isinstance(error, psycopg.OperationalError):
            if is_transient(error) or error.sqlstate is None:
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

    def before_close(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` when the datastore is closed, before its pool is (a recorder's
        notices of writes not yet sent)."""
        self._flushes.append(flush)

    def __enter__(self: _TDatastore) -> _TDatastore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        flushes, self._flushes = self._flushes, []
        for flush in flushes:
            try:
                flush()
            except Exception as error:  # (recorded all the same: followers' polls find it)
                logger.warning("Closing %s: %s", self.describe(), error)
        with self._pool_lock:
            self._closed = True
            if self._pool is not None:
                self._pool.close(timeout=5)
                self._pool = None
