"""PostgreSQL recorders on psycopg's ``AsyncConnection`` and ``AsyncConnectionPool``.

The tables, statements and guarantees are those of ``eventsourcing.postgres``:
the statements are made by the sync recorders' own builders (a sync recorder
of each table is kept for that), and run here on async connections. Writers
commit in parallel, as there (see ``eventsourcing._postgres_commits``): each
write is one statement, run as one transaction, holding the table's lock only
while it draws its ids and stamping its rows with its transaction id; readers
never pass a gap that a writer still in progress could fill. A task cancelled
while its write is in flight leaves it recorded whole or not at all (the pool
discards the connection it was using). Listeners are notified after the
commit by the sync recorder's notifier thread (one NOTIFY for many writes).
Transient failures are retried, lost acknowledgements recognised, as by the
sync datastore, with its settings.

Under load, the operations that many tasks ask at once are made together: while a
few statements of a kind are already running (up to the pool size, at most four),
the reads of aggregates' events asked meanwhile are made by one statement, and the
writes by one transaction whose statements are sent at once (psycopg's pipeline),
each write inserting its events only if none is recorded (a conflict refuses that
write alone), holding the table's lock until the commit as every write in a
transaction of several statements does. In the event loop, psycopg's work per
statement and the pool's per operation were most of a command's CPU; made together,
they are paid once for many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

import psycopg
import psycopg.errors
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from eventsourcing._postgres_commits import CommitLayout, layout_from_row, layout_query
from eventsourcing._postgres_connections import CONTENTION_STATES, is_transient
from eventsourcing._postgres_datastore import _IDLE
from eventsourcing._postgres_sql import (
    _RECORDED_CTE,
    _new_rows_cte,
    _tracking_kind,
    _tracking_params,
    _tracking_sql,
)
from eventsourcing._retry import Outage, Retry, backoff_delays
from eventsourcing.asyncio._recorders import (
    AsyncAggregateRecorder,
    AsyncApplicationRecorder,
    AsyncProcessRecorder,
    local_news,
)
from eventsourcing.persistence import (
    ApplicationRecorder,
    InterfaceError,
    Notification,
    OperationalError,
    RecordConflictError,
    StoredEvent,
    Tracking,
    TrackingConflictError,
    What,
    describe,
    inserting,
    new_stored_event,
    selected_id,
    tracking_conflict,
)
from eventsourcing.postgres import (
    CREATE_TABLE_LOCK_KEY,
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresProcessRecorder,
    notifications_of_rows,
    notifications_query,
    one_line,
)

T = TypeVar("T")
logger = logging.getLogger("eventsourcing.postgres")
Conn = psycopg.AsyncConnection[Any]

# The application_name of a subscription's LISTEN connection (seen in pg_stat_activity).
LISTENER_APPLICATION_NAME = "eventsourcing-async-listener"


class AsyncPostgresDatastore:
    """A pool of async connections to the database that ``settings`` (a sync
    datastore) describes, with its settings: its ``conninfo`` (``POSTGRES_URL``),
    ``application_name``, ``get_password_func`` and ``retry_timeout``.

    As the sync datastore does, an operation that meets a transient failure (a
    refused or dropped connection, a server restarting, a deadlock) is retried with
    backoff for up to ``retry_timeout`` seconds (the pause awaited in the loop),
    and a write retried after a lost connection that finds its own rows recorded
    (the answer to its COMMIT was lost) returns what was recorded.
    """

    def __init__(self, settings: PostgresDatastore):
        self.settings = settings
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False
        getter = settings.get_password_func
        self._connection_class = AsyncConnection if getter is None else _refreshing(getter)

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError(f"Datastore for {self.settings.describe()} is closed")

    async def pool(self) -> AsyncConnectionPool[Conn]:
        """The pool, opened at the first use (psycopg errors as they are, to retry)."""
        self._check_open()
        if self._pool is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    await (await self._connect_raw()).close()  # fails at once if it cannot
                    settings = self.settings
                    pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
                        settings.conninfo,
                        connection_class=self._connection_class,
                        check=AsyncConnectionPool.check_connection if settings.pre_ping else None,
                        **settings.pool_settings("eventsourcing-async"),
                    )
                    await pool.open(wait=False)
                    self._pool = pool
        return self._pool

    async def _connect_raw(self, **kwargs: Any) -> Conn:
        connection: Conn = await self._connection_class.connect(
            self.settings.conninfo, **{**self.settings.connect_kwargs(), **kwargs}
        )
        return connection

    async def connect(self, **kwargs: Any) -> Conn:
        """A connection of its own (not pooled), with the datastore's settings (and
        ``kwargs`` over them)."""
        try:
            return await self._connect_raw(**kwargs)
        except psycopg.Error as error:
            raise self.settings.connection_error(error, "Connecting") from None

    async def run(
        self,
        func: Callable[[Conn], Awaitable[T]],
        *,
        what: What,
        transaction: bool = True,
        recorded: Callable[[Conn], Awaitable[T | None]] | None = None,
    ) -> T:
        """Run ``func`` with a pooled connection (in a transaction, unless not wanted),
        retrying transient failures as the sync datastore's ``run`` does (``recorded``
        as there: after a conflict met by a retry, the write's result if its first try
        was committed, else None)."""
        settings = self.settings
        retry: Retry | None = None
        connection_lost = False
        while True:
            try:
                if connection_lost:
                    await self._reconnect()
                result = await self._run_pooled(func, transaction)
            except PoolTimeout as error:  # (a psycopg error too: caught first)
                raise await self._pool_exhausted(what) from error
            except psycopg.Error as error:
                if not is_transient(error):
                    raise settings.translate(error, describe(what)) from error
                if retry is None:
                    retry = Retry(settings.outage, what, settings.retry_timeout)
                connection_lost = error.sqlstate not in CONTENTION_STATES
                await asyncio.sleep(retry.pause(one_line(error), outage=connection_lost))
                continue
            except (RecordConflictError, TrackingConflictError):
                if retry is None or recorded is None:
                    raise
                result_if_ours = await self.run(recorded, what=what, transaction=False)
                if result_if_ours is None:
                    raise
                result = result_if_ours
            if retry is not None or settings.outage.ongoing:
                settings.outage.end()
            return result

    async def _run_pooled(self, func: Callable[[Conn], Awaitable[T]], transaction: bool) -> T:
        pool = await self.pool()
        try:
            # getconn/putconn rather than pool.connection(), whose exit also commits
            # (nothing to commit in autocommit mode) at the cost of a lock and a wait.
            conn = await pool.getconn()
        except PoolTimeout:
            # No connection came: if the server is unreachable, raise its error (to
            # be retried); else the pool is exhausted.
            await (await self._connect_raw()).close()
            raise
        try:
            if not transaction:
                return await func(conn)
            async with conn.transaction():
                return await func(conn)
        finally:
            # (The pool discards a connection whose statement was cut off.)
            await pool.putconn(conn)

    async def _reconnect(self) -> None:
        """Before a retry: check the server answers (else raise its error, to wait
        more), then replace the pool's idle connections that the outage broke."""
        self._check_open()
        await (await self._connect_raw()).close()
        if self._pool is not None:
            await getattr(self._pool, "drain", self._pool.check)()

    async def _pool_exhausted(self, what: What) -> OperationalError:
        settings = self.settings
        try:  # raises with the real cause if the server is unreachable
            await (await self._connect_raw()).close()
        except psycopg.Error as error:
            return settings.connection_error(error, "Connecting")
        return OperationalError(
            f"{describe(what)}: no connection to {settings.describe()} free within "
            f"{settings.pool_timeout}s (pool of {settings.pool_size}+{settings.max_overflow})"
        )

    def stats(self) -> dict[str, int]:
        """The pool's statistics (psycopg's ``get_stats``), empty before it opens."""
        return dict(self._pool.get_stats()) if self._pool is not None else {}

    async def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close(timeout=5)


def _refreshing(get_password: Callable[[], str]) -> type[AsyncConnection[Any]]:
    """An async connection class that asks ``get_password`` for the password of each
    connection (for passwords that expire, such as cloud IAM tokens)."""

    class PasswordRefreshingConnection(AsyncConnection[Any]):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            kwargs["password"] = get_password()
            return await super().connect(conninfo, **kwargs)

    return PasswordRefreshingConnection


class _ProcessStatements(PostgresProcessRecorder):
    """The sync process recorder, as a maker of statements only: its layout is given
    (read asynchronously by the async recorder), not read at construction."""

    def __init__(self, datastore: PostgresDatastore, events: str, tracking: str) -> None:
        super().__init__(datastore, events, tracking)

    def _tracking_primary_key(self) -> set[str]:
        return set()  # (our layout until the async recorder reads the table's)


class AsyncPostgresAggregateRecorder(AsyncAggregateRecorder):
    """Stored events keyed by (originator_id, originator_version), as the sync recorder."""

    def __init__(
        self,
        datastore: AsyncPostgresDatastore,
        events_table_name: str = "stored_events",
        statements: PostgresAggregateRecorder | None = None,
    ):
        self.datastore = datastore
        self.events_table_name = events_table_name
        self.statements = statements or PostgresAggregateRecorder(
            datastore.settings, events_table_name
        )
        self.originator_id_type = self.statements._id_type
        # Whether to create the tables before the first use (the factory's recorders).
        self.tables_pending = False
        self._most_at_once = max(1, min(datastore.settings.pool_size, MOST_AT_ONCE))
        self._reads: _Together[tuple[Any, int | None], list[Any]] = _Together(
            self._select_events_of_one, self._select_events_of_many, self._most_at_once
        )

    async def open(self) -> None:
        if self.tables_pending:
            await self.create_table()

    async def _run(
        self,
        func: Callable[[Conn], Awaitable[T]],
        *,
        what: What,
        transaction: bool = True,
        recorded: Callable[[Conn], Awaitable[T | None]] | None = None,
    ) -> T:
        if self.tables_pending:
            await self.create_table()
        return await self.datastore.run(func, what=what, transaction=transaction, recorded=recorded)

    def _statement(self, shape: Hashable, build: Callable[[], sql.Composable]) -> bytes:
        return self.statements._statement(shape, build)

    async def create_table(self) -> None:
        statements = self.statements.sql_create_statements
        schema = self.datastore.settings.schema if self.datastore.settings.schema_given else ""

        async def create(conn: Conn) -> None:
            # Concurrent CREATE ... IF NOT EXISTS can still collide: serialise our DDL.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_TABLE_LOCK_KEY,))
            if schema:
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
            for statement in statements:
                await conn.execute(statement.as_bytes(None))

        await self.datastore.run(create, what=f"Creating tables of {type(self).__name__}")
        self.tables_pending = False

    async def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return None
        self.statements._check_written(stored_events)
        statement = sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)"
        ).format(self.statements._events)
        rows = [(s.originator_id, s.originator_version, s.topic, s.state) for s in stored_events]

        async def insert(conn: Conn) -> None:
            async with conn.cursor() as cursor:
                try:
                    await cursor.executemany(statement, rows)
                except psycopg.errors.UniqueViolation as error:
                    raise self.statements._conflict(error) from error

        await self._run(
            insert,
            what=inserting(self.events_table_name, stored_events),
            recorded=self._recorded_as_sent(stored_events, None),
        )
        return None

    def _recorded_as_sent(
        self, stored_events: Sequence[StoredEvent], tracking: Tracking | None
    ) -> Callable[[Conn], Awaitable[list[int] | None]]:
        """After a write retried on a lost connection met a conflict: whether exactly
        these events (and the tracking position) are recorded, so the first try was
        committed and only its answer lost (see the sync recorder's)."""
        statements = self.statements

        async def recorded(conn: Conn) -> list[int] | None:
            if tracking is not None:
                query = statements._tracked_query(tracking)
                if query is None or await (await conn.execute(*query)).fetchone() is None:
                    return None
            if not stored_events:
                return []
            cursor = await conn.execute(*statements._recorded_query(stored_events))
            return statements._as_sent(stored_events, await cursor.fetchall())

        return recorded

    async def _select_rows(self, statement: bytes, params: Sequence[Any], what: What) -> list[Any]:
        async def select(conn: Conn) -> list[Any]:
            cursor = await conn.execute(statement, params)
            return await cursor.fetchall()

        return await self._run(select, what=what, transaction=False)

    async def select_events(
        self,
        originator_id: UUID | str,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        id_type = self.statements._id_type
        if type(originator_id) is not id_type:
            # (A UUID's string form selects its events, as in the 9.x stores.)
            originator_id = selected_id(originator_id, id_type, f"table {self.events_table_name!r}")
        if lte is None and not desc and limit is None:
            # (An aggregate's events, or those after a cached version: what reading
            # an aggregate asks. Made with other tasks' reads when they read at once.)
            return [
                new_stored_event(originator_id, version, topic, bytes(state))
                for version, topic, state in await self._reads((originator_id, gt))
            ]
        params: list[Any] = [originator_id]
        params += [v for v in (gt, lte) if v is not None]
        if limit is not None:
            params.append(max(limit, 0))
        shape = ("select_events", gt is not None, lte is not None, desc, limit is not None)
        statement = self._statement(shape, lambda: self.statements._select_events_sql(*shape[1:]))
        rows = await self._select_rows(
            statement,
            params,
            lambda: f"Selecting events of {originator_id} from {self.events_table_name!r}",
        )
        return [
            new_stored_event(originator_id, version, topic, bytes(state))
            for version, topic, state in rows
        ]

    async def _select_events_of_one(self, read: tuple[Any, int | None]) -> list[Any]:
        return cast(list[Any], (await self._select_events_of_many([read]))[0])

    async def _select_events_of_many(
        self, reads: list[tuple[Any, int | None]]
    ) -> list[list[Any] | Exception]:
        """The events of several originators (each after its version, if given), in one
        statement: for each read, rows of (version, topic, state) in order."""
        statements = self.statements
        statement = self._statement(
            ("select events of many",),
            lambda: sql.SQL(
                "SELECT q.n, e.originator_version, e.topic, e.state "
                "FROM unnest(%s::{}[], %s::bigint[]) WITH ORDINALITY AS q(id, gt, n) "
                "CROSS JOIN LATERAL (SELECT originator_version, topic, state FROM {} "
                "WHERE originator_id = q.id AND originator_version > q.gt) AS e "
                "ORDER BY q.n, e.originator_version"
            ).format(sql.SQL(statements._id_sql_type), statements._events),
        )
        params = (
            [originator_id for originator_id, _ in reads],
            [_BEFORE_ALL if gt is None else gt for _, gt in reads],
        )
        rows = await self._select_rows(
            statement,
            params,
            lambda: f"Selecting events of {len(reads)} originators from {self.events_table_name!r}",
        )
        answers: list[list[Any]] = [[] for _ in reads]
        for number, *row in rows:
            answers[number - 1].append(row)
        return list(answers)


# The most statements of one kind (reads of aggregates' events; writes of events)
# that a recorder runs at once: more asked meanwhile wait, and are made together
# when one ends (reads by one statement, writes in one transaction).
MOST_AT_ONCE = 4
# The most reads or writes made together.
MOST_TOGETHER = 100
# Below any version: the bound of a read of all an aggregate's events (bigint's least).
_BEFORE_ALL = -(2**63)

A = TypeVar("A")
R = TypeVar("R")


class _Together(Generic[A, R]):
    """Operations made one at a time (``one``) while few are in progress, and together
    (``many``: an answer, or an exception, for each) when more are asked than
    ``most_at_once``: those that tasks ask while others run are made together when
    one ends, rather than one each. An operation is made after it is asked.

    Operations made together run in a task of their own, so that cancelling one of
    the tasks that asked cancels its wait only, never the others' operations; one
    cancelled before they start is left out."""

    def __init__(
        self,
        one: Callable[[A], Awaitable[R]],
        many: Callable[[list[A]], Awaitable[list[R | Exception]]],
        most_at_once: int,
    ):
        self._one = one
        self._many = many
        self._most_at_once = most_at_once
        self._running = 0
        self._asked: list[tuple[A, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, operation: A) -> R:
        if self._running < self._most_at_once and not self._asked:
            self._running += 1
            try:
                return await self._one(operation)
            finally:
                self._running -= 1
                self._start_if_asked()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._asked.append((operation, future))
        self._start_if_asked()
        return await future

    def _start_if_asked(self) -> None:
        if self._asked and self._running < self._most_at_once:
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._make_asked())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _make_asked(self) -> None:
        try:
            while self._asked:
                batch = [asked for asked in self._asked[:MOST_TOGETHER] if not asked[1].done()]
                del self._asked[:MOST_TOGETHER]
                if batch:
                    await self._make_together(batch)
        finally:
            self._running -= 1
            self._start_if_asked()

    async def _make_together(self, batch: list[tuple[A, asyncio.Future[R]]]) -> None:
        try:
            answers = await self._many([operation for operation, _ in batch])
        except BaseException as error:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(error, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), answer in zip(batch, answers):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)


class AsyncPostgresApplicationRecorder(AsyncPostgresAggregateRecorder, AsyncApplicationRecorder):
    """Stored events numbered in order of recording; writes serialised per table,
    each announced by NOTIFY on the table's channel (as the sync recorder)."""

    statements: PostgresApplicationRecorder

    def __init__(
        self,
        datastore: AsyncPostgresDatastore,
        events_table_name: str = "stored_events",
        statements: PostgresApplicationRecorder | None = None,
    ):
        super().__init__(
            datastore,
            events_table_name,
            statements or PostgresApplicationRecorder(datastore.settings, events_table_name),
        )
        settings = datastore.settings
        self.news_key = ("postgres", settings.host, str(settings.port), settings.dbname,
                         self.statements._events.as_string(None))  # fmt: skip
        # Writes of events: one statement each (committing in parallel) while few are
        # in progress, else those asked meanwhile in one transaction (_insert_many).
        self._writes: _Together[Sequence[StoredEvent], list[int]] = _Together(
            self._insert_one, self._insert_many, self._most_at_once
        )

    # The table's layout, read at its first use (see eventsourcing._postgres_commits).
    _layout: CommitLayout | None = None

    @property
    def channel(self) -> str:
        return self.statements.channel

    async def create_table(self) -> None:
        await super().create_table()
        self._layout = None  # (the table may have gained the stamp column)

    async def _commit_layout(self, conn: Conn) -> CommitLayout:
        layout = self._layout
        if layout is None:
            table = self.statements._events.as_string(None)
            cursor = await conn.execute(*layout_query(table))
            layout = layout_from_row(await cursor.fetchone())
            if layout.exists:
                self._layout = layout
        return layout

    async def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        self.statements._check_written(stored_events)
        ids = await self._writes(stored_events)
        local_news(self.news_key).announce()
        return ids

    async def _insert_many(
        self, writes: list[Sequence[StoredEvent]]
    ) -> list[list[int] | Exception]:
        """Several writes in one transaction, their statements sent at once (psycopg's
        pipeline): one round trip and one commit for all. Each statement holds the
        table's lock until the commit (as every write in a transaction of several
        statements does: see eventsourcing._postgres_commits) and inserts its events
        only if none is recorded already, so a conflict refuses that write alone,
        which is then made by itself, to raise as it would. If the transaction fails,
        each write is made by itself (or found recorded, if only the answer to the
        commit was lost)."""
        if self.tables_pending:
            await self.create_table()
        statements = self.statements
        queries = [
            statements._write_query(events, ("insert together",), self._insert_unless_sql, (), None)
            for events in writes
        ]

        async def insert_all(conn: Conn) -> list[list[int]]:
            async with conn.pipeline():
                cursors = [
                    await conn.execute(statement, params, prepare=prepare)
                    for statement, params, prepare in queries
                ]
            return [sorted(int(row[0]) for row in await cursor.fetchall()) for cursor in cursors]

        try:
            inserted = await self.datastore._run_pooled(insert_all, transaction=True)
        except Exception:
            return [await self._answer(self._insert_again(events)) for events in writes]
        return [
            ids if len(ids) == len(events) else await self._answer(self._insert_one(events))
            for events, ids in zip(writes, inserted)
        ]

    @staticmethod
    async def _answer(write: Awaitable[list[int]]) -> list[int] | Exception:
        try:
            return await write
        except Exception as error:
            return error

    def _insert_unless_sql(self, shape: int | None, _: str | None) -> sql.Composable:
        """The insert of a write in a transaction of several (the lock held until commit),
        of its events only if none is recorded (then none is inserted)."""
        return self.statements._write_sql(
            _new_rows_cte(shape, self.statements._id_sql_type),
            [_RECORDED_CTE],
            "NOT EXISTS (SELECT 1 FROM recorded)",
            None,
        )

    async def _insert_again(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        """After a transaction of several writes failed: the events' ids if that
        transaction recorded them after all (its commit's answer lost), else write them."""
        ids = await self._run(
            self._recorded_as_sent(stored_events, None),
            what=f"Reading events of a write to {self.events_table_name!r}",
            transaction=False,
        )
        if ids:
            return ids
        return await self._insert_one(stored_events)

    async def _insert_one(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        async def insert(conn: Conn) -> list[int]:
            ids = await self._write(conn, stored_events, ("insert",), self.statements._insert_sql)
            if len(ids) != len(stored_events):  # refused: an event is recorded already
                await self._check_conflicts(conn, stored_events)  # raises, naming the event
                raise RecordConflictError(
                    f"An event is already recorded in {self.events_table_name!r}; "
                    "nothing was recorded"
                )
            return ids

        return await self._run(
            insert,
            what=inserting(self.events_table_name, stored_events),
            transaction=False,  # one statement: its own transaction
            recorded=self._recorded_as_sent(stored_events, None),
        )

    async def _write(
        self,
        conn: Conn,
        stored_events: Sequence[StoredEvent],
        kind: tuple[str, ...],
        build: Callable[[int | None, str | None], sql.Composable],
        more_params: Sequence[Any] = (),
    ) -> list[int]:
        """Run the write statement of ``kind``, made by the sync recorder's builders:
        committing in parallel with other writers (the lock held only while ids are
        drawn, rows stamped, listeners notified after the commit), or, in a transaction
        of several statements or on a table not yet migrated, holding the lock until
        commit (see the sync recorder's ``_write``)."""
        layout = await self._commit_layout(conn)
        parallel = layout.parallel and conn.info.transaction_status == _IDLE
        statement, params, prepare = self.statements._write_query(
            stored_events, kind, build, more_params, layout.sequence if parallel else None
        )
        try:
            try:
                cursor = await conn.execute(statement, params, prepare=prepare)
                rows = await cursor.fetchall()
            except BaseException:
                if parallel:
                    await _release_after_error(conn)
                raise
        except psycopg.errors.UniqueViolation as error:
            raise self.statements._conflict(error) from error
        if parallel and rows:
            # NOTIFY after the commit, sent by the sync recorder's notifier thread
            # (one NOTIFY for many writes: see eventsourcing._postgres_commits.Notifier).
            self.statements._notify_after_commit(None)
        return sorted(int(row[0]) for row in rows)

    async def _check_conflicts(self, conn: Conn, stored_events: Sequence[StoredEvent]) -> None:
        """Raise ``RecordConflictError`` naming the first duplicate or recorded event."""
        cursor = await conn.execute(*self.statements._recorded_query(stored_events))
        self.statements._raise_first_conflict(stored_events, await cursor.fetchall())

    async def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        params, shape = notifications_query(start, limit, stop, topics, inclusive_of_start)

        async def select(conn: Conn) -> list[Any]:
            if (await self._commit_layout(conn)).stamped:
                # Rows no writer still in progress could precede (never skipping).
                query = self.statements._settled_query(
                    start, limit, stop, topics, inclusive_of_start
                )
            else:
                statement = self._statement(
                    shape, lambda: self.statements._select_notifications_sql(*shape[1:])
                )
                query = (statement, params)
            cursor = await conn.execute(*query)
            return await cursor.fetchall()

        rows = await self._run(
            select,
            what=f"Selecting notifications from {self.events_table_name!r}",
            transaction=False,
        )
        return notifications_of_rows(rows)

    async def max_notification_id(self) -> int | None:
        statement = self._statement(
            "max_notification_id",
            lambda: sql.SQL("SELECT MAX(notification_id) FROM {}").format(self.statements._events),
        )
        rows = await self._select_rows(
            statement, (), f"Selecting max notification id of {self.events_table_name!r}"
        )
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    async def open_waiter(self) -> AsyncPostgresListener:
        listener = AsyncPostgresListener(self.datastore, self.channel)
        await listener.open()
        return listener

    def sync_recorder(self) -> ApplicationRecorder:
        return PostgresApplicationRecorder(self.datastore.settings, self.events_table_name)


class AsyncPostgresProcessRecorder(AsyncPostgresApplicationRecorder, AsyncProcessRecorder):
    """Also records tracking positions, atomically with the events (as the sync
    recorder, in either layout of the tracking table)."""

    statements: PostgresProcessRecorder

    def __init__(
        self,
        datastore: AsyncPostgresDatastore,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ):
        statements = _ProcessStatements(datastore.settings, events_table_name, tracking_table_name)
        super().__init__(datastore, events_table_name, statements)
        self.tracking_table_name = tracking_table_name
        self._layout_read = False

    async def _read_layout(self) -> None:
        """Whether the tracking table holds a row per position (read once)."""
        if self._layout_read:
            return
        statement = (
            "SELECT a.attname FROM pg_index AS i JOIN pg_attribute AS a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary"
        )
        name = self.statements._tracking.as_string(None)
        rows = await self._select_rows(
            statement.encode(), (name,), f"Reading the layout of {self.tracking_table_name!r}"
        )
        self.statements._row_per_position = "notification_id" in {str(r[0]) for r in rows}
        self._layout_read = True

    async def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        tracking: Tracking | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        if tracking is None:
            return await super().insert_events(stored_events, **kwargs)
        self.statements._check_written(stored_events)
        await self._read_layout()

        async def insert(conn: Conn) -> list[int]:
            return await self._insert_tracked(conn, stored_events, tracking)

        ids = await self._run(
            insert,
            what=inserting(self.events_table_name, stored_events, tracking),
            # Each write to our table is one statement; to a row per position, several.
            transaction=self.statements._row_per_position,
            recorded=self._recorded_as_sent(stored_events, tracking),
        )
        local_news(self.news_key).announce()
        return ids

    async def _insert_tracked(
        self, conn: Conn, stored_events: Sequence[StoredEvent], tracking: Tracking
    ) -> list[int]:
        if self.statements._row_per_position:
            return await self._insert_tracked_in_steps(conn, stored_events, tracking)
        if not stored_events:
            await self._advance_tracking(conn, tracking)
            return []
        kind = _tracking_kind(tracking)
        ids = await self._write(
            conn,
            stored_events,
            ("insert tracked", kind),
            lambda shape, sequence: self.statements._insert_tracked_sql(kind, shape, sequence),
            _tracking_params(tracking),
        )
        if len(ids) == len(stored_events):
            return ids
        await self._check_conflicts(conn, stored_events)  # raises, naming the event
        raise TrackingConflictError(await self._refusal(conn, tracking))

    async def _insert_tracked_in_steps(
        self, conn: Conn, stored_events: Sequence[StoredEvent], tracking: Tracking
    ) -> list[int]:
        """For a tracking table of a row per position (see the sync recorder)."""
        if stored_events:
            ids = await self._write(conn, stored_events, ("insert",), self.statements._insert_sql)
            if len(ids) != len(stored_events):
                await self._check_conflicts(conn, stored_events)  # raises, naming the event
                raise RecordConflictError(
                    f"An event is already recorded in {self.events_table_name!r}; "
                    "nothing was recorded"
                )
        else:
            ids = []
            await conn.execute(self._statement(("lock",), self.statements._lock_sql))
        position = await self._select_position(conn, tracking.application_name)
        conflict = tracking_conflict(tracking, position)
        if conflict is not None:
            raise TrackingConflictError(conflict)
        statement = self._statement(
            ("add tracking row",),
            lambda: sql.SQL(
                "INSERT INTO {} (application_name, notification_id) VALUES (%s, %s)"
            ).format(self.statements._tracking),
        )
        try:
            await conn.execute(statement, (tracking.application_name, tracking.notification_id))
        except psycopg.errors.UniqueViolation as error:
            raise TrackingConflictError(
                f"Notification {tracking.notification_id} of {tracking.application_name!r} "
                "is already processed; nothing was recorded"
            ) from error
        return ids

    async def _advance_tracking(self, conn: Conn, tracking: Tracking) -> None:
        kind = _tracking_kind(tracking)
        statement = self._statement(
            ("track", kind),
            lambda: sql.SQL(_tracking_sql(kind, "")).format(tracking=self.statements._tracking),
        )
        cursor = await conn.execute(statement, _tracking_params(tracking))
        if len(await cursor.fetchall()) != 1:
            raise TrackingConflictError(await self._refusal(conn, tracking))

    async def _refusal(self, conn: Conn, tracking: Tracking) -> str:
        position = await self._select_position(conn, tracking.application_name)
        return (
            tracking_conflict(tracking, position)
            or f"Tracking of {tracking.application_name!r} was not recorded"
        )

    async def _select_position(self, conn: Conn, application_name: str) -> int | None:
        statement = self._statement(
            ("select position",),
            lambda: sql.SQL(
                "SELECT MAX(notification_id) FROM {} WHERE application_name = %s"
            ).format(self.statements._tracking),
        )
        cursor = await conn.execute(statement, (application_name,))
        row = await cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def max_tracking_id(self, application_name: str) -> int | None:
        async def select(conn: Conn) -> int | None:
            return await self._select_position(conn, application_name)

        return await self._run(
            select,
            what=f"Selecting tracking position of {application_name!r} "
            f"from {self.tracking_table_name!r}",
            transaction=False,
        )

    async def tracking_positions(self) -> dict[str, int]:
        statement = sql.SQL(
            "SELECT application_name, MAX(notification_id) FROM {} GROUP BY application_name"
        ).format(self.statements._tracking)

        async def select(conn: Conn) -> dict[str, int]:
            cursor = await conn.execute(statement)
            return {str(name): int(pos) for name, pos in await cursor.fetchall()}

        return await self._run(
            select,
            what=f"Selecting positions from {self.tracking_table_name!r}",
            transaction=False,
        )


async def _release_after_error(conn: Conn) -> None:
    """A parallel write that failed may have failed holding the table's lock (a session
    lock outlives its transaction): let it go, or close the connection that holds it
    (as ``eventsourcing._postgres_commits.release_after_error``). A statement cut off
    by a cancellation leaves the connection busy: it is closed."""
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
            raise InterfaceError("statement cut off")
        await conn.execute("SELECT pg_advisory_unlock_all()")
    except BaseException:  # the session is lost or unusable: closing it frees the lock
        await conn.close()


class AsyncPostgresListener:
    """A connection of its own that LISTENs on one events table's channel.

    It rides out outages as the sync listener does: when its connection is lost,
    ``wait`` connects and LISTENs again (with backoff, at most ``timeout`` per call),
    then returns True, since commits may have been missed meanwhile."""

    def __init__(self, datastore: AsyncPostgresDatastore, channel: str):
        self.datastore = datastore
        self.channel = channel
        settings = datastore.settings
        self.outage = Outage(logger, f"{settings.describe()} (listening on {channel!r})")
        self._next_delay = backoff_delays()
        self._conn: Conn | None = None

    async def open(self) -> None:
        self._conn = await self._listening()

    async def _listening(self) -> Conn:
        conn = await self.datastore.connect(application_name=LISTENER_APPLICATION_NAME)
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException as error:
            await conn.close()
            if isinstance(error, psycopg.Error):
                raise self.datastore.settings.translate(
                    error, f"Listening on {self.channel!r}"
                ) from error
            raise
        return conn

    async def wait(self, timeout: float) -> bool:
        conn = self._conn
        if conn is None:
            return await self._listen_again(timeout)
        try:
            async for _ in conn.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error as error:
            if not is_transient(error):
                raise self.datastore.settings.translate(
                    error, f"Waiting on {self.channel!r}"
                ) from error
            self.outage.begin(one_line(error), None)
            await self._drop_connection()
            return await self._listen_again(timeout)
        return False

    async def _listen_again(self, timeout: float) -> bool:
        """Connect and LISTEN again: True once listening, else False after a pause."""
        self.datastore._check_open()
        try:
            self._conn = await self._listening()
        except OperationalError as error:  # (the connection refused: retried)
            self.outage.begin(str(error), None)
            await asyncio.sleep(min(self._next_delay(), max(timeout, 0.0)))
            return False
        self._next_delay = backoff_delays()
        self.outage.end()
        return True

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def close(self) -> None:
        await self._drop_connection()
