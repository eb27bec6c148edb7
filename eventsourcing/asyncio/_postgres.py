"""PostgreSQL recorders on psycopg's ``AsyncConnection`` and ``AsyncConnectionPool``.

The tables, statements and guarantees are those of ``eventsourcing.postgres``:
the statements are made by the sync recorders' own builders (a sync recorder
of each table is kept for that, and never connects), and run here on async
connections. So a write is one statement (lock, insert, tracking, NOTIFY), run
as one transaction: a task cancelled while it is in flight leaves it recorded
whole or not at all, and the pool discards the connection it was using.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar
from uuid import UUID

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
    new_notification,
    new_stored_event,
    tracking_conflict,
)
from eventsourcing.postgres import (
    _VALUES_MAX,
    CREATE_TABLE_LOCK_KEY,
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresProcessRecorder,
    _new_rows_params,
    _tracking_kind,
    _tracking_params,
    _tracking_sql,
    one_line,
)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]

# The application_name of a subscription's LISTEN connection (seen in pg_stat_activity).
LISTENER_APPLICATION_NAME = "eventsourcing-async-listener"


class AsyncPostgresDatastore:
    """A pool of async connections to the database that ``settings`` (a sync
    datastore, never connected by this one) describes, with its settings."""

    def __init__(self, settings: PostgresDatastore):
        self.settings = settings
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False

    async def pool(self) -> AsyncConnectionPool[Conn]:
        if self._closed:
            raise InterfaceError(f"Datastore for {self.settings.describe()} is closed")
        if self._pool is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    await self._probe()
                    settings = self.settings
                    pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
                        kwargs=settings.connect_kwargs(),
                        min_size=settings.pool_size,
                        max_size=settings.pool_size + settings.max_overflow,
                        max_waiting=settings.max_waiting,
                        max_lifetime=float(settings.conn_max_age or 10 * 365 * 24 * 3600),
                        check=AsyncConnectionPool.check_connection if settings.pre_ping else None,
                        timeout=settings.pool_timeout,
                        name=f"eventsourcing-async-{settings.dbname}",
                        open=False,
                    )
                    await pool.open(wait=False)
                    self._pool = pool
        return self._pool

    async def _probe(self) -> None:
        """Connect once, directly, so a bad setting fails at once with its real cause."""
        try:
            conn = await psycopg.AsyncConnection.connect(**self.settings.connect_kwargs())
        except psycopg.Error as error:
            raise self.settings.connection_error(error, "Connecting") from None
        await conn.close()

    async def connect(self, **kwargs: Any) -> Conn:
        """A connection of its own (not pooled), with the datastore's settings."""
        try:
            return await psycopg.AsyncConnection.connect(**self.settings.connect_kwargs(), **kwargs)
        except psycopg.Error as error:
            raise self.settings.connection_error(error, "Connecting") from None

    async def run(
        self, func: Callable[[Conn], Awaitable[T]], *, what: What, transaction: bool = True
    ) -> T:
        """Run ``func`` with a pooled connection (in a transaction, unless not wanted)."""
        pool = await self.pool()
        try:
            # getconn/putconn rather than pool.connection(), whose exit also commits
            # (nothing to commit in autocommit mode) at the cost of a lock and a wait.
            conn = await pool.getconn()
            try:
                if not transaction:
                    return await func(conn)
                async with conn.transaction():
                    return await func(conn)
            finally:
                # (The pool discards a connection whose statement was cut off.)
                await pool.putconn(conn)
        except PoolTimeout as error:
            raise OperationalError(
                f"{describe(what)}: no connection to {self.settings.describe()} free within "
                f"{self.settings.pool_timeout}s"
            ) from error
        except psycopg.Error as error:
            raise self.settings.translate(error, describe(what)) from error

    def stats(self) -> dict[str, int]:
        """The pool's statistics (psycopg's ``get_stats``), empty before it opens."""
        return dict(self._pool.get_stats()) if self._pool is not None else {}

    async def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            await self._pool.close(timeout=5)
            self._pool = None


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

    async def open(self) -> None:
        if self.tables_pending:
            await self.create_table()

    async def _run(
        self, func: Callable[[Conn], Awaitable[T]], *, what: What, transaction: bool = True
    ) -> T:
        if self.tables_pending:
            await self.create_table()
        return await self.datastore.run(func, what=what, transaction=transaction)

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
                    raise self._conflict(error) from error

        await self._run(insert, what=inserting(self.events_table_name, stored_events))
        return None

    def _conflict(self, error: psycopg.errors.UniqueViolation) -> RecordConflictError:
        detail = error.diag.message_detail or one_line(error)
        return RecordConflictError(
            f"Event already recorded in {self.events_table_name!r}: {detail} "
            "(originator_id, originator_version); nothing was recorded"
        )

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
        if not isinstance(originator_id, id_type):
            raise self.statements._wrong_id(originator_id)
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

    @property
    def channel(self) -> str:
        return self.statements.channel

    async def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        self.statements._check_written(stored_events)

        async def insert(conn: Conn) -> list[int]:
            return await self._write(conn, stored_events, ("insert",), self.statements._insert_sql)

        ids = await self._run(
            insert, what=inserting(self.events_table_name, stored_events), transaction=False
        )
        local_news(self.news_key).announce()
        return ids

    async def _write(
        self,
        conn: Conn,
        stored_events: Sequence[StoredEvent],
        kind: tuple[str, ...],
        build: Callable[[int | None], sql.Composable],
        more_params: Sequence[Any] = (),
    ) -> list[int]:
        """Run the write statement of ``kind`` (see the sync recorder's ``_write``)."""
        count = len(stored_events)
        shape = count if count <= _VALUES_MAX else None
        statement = self._statement((*kind, shape), lambda: build(shape))
        params = _new_rows_params(stored_events, shape)
        params += more_params
        params.append(self.channel)
        try:
            cursor = await conn.execute(statement, params, prepare=shape is not None)
            rows = await cursor.fetchall()
        except psycopg.errors.UniqueViolation as error:
            raise self._conflict(error) from error
        return sorted(int(row[0]) for row in rows)

    async def select_notifications(
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
        statement = self._statement(
            shape, lambda: self.statements._select_notifications_sql(*shape[1:])
        )
        rows = await self._select_rows(
            statement, params, f"Selecting notifications from {self.events_table_name!r}"
        )
        return [
            new_notification(originator_id, version, topic, bytes(state), nid)
            for nid, originator_id, version, topic, state in rows
        ]

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
            transaction=self.statements._row_per_position,
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
            lambda shape: self.statements._insert_tracked_sql(kind, shape),
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

    async def _check_conflicts(self, conn: Conn, stored_events: Sequence[StoredEvent]) -> None:
        """Raise ``RecordConflictError`` naming the first duplicate or recorded event."""
        statement = sql.SQL(
            "SELECT e.originator_id, e.originator_version FROM {} AS e "
            "JOIN unnest(%s::{}[], %s::bigint[]) AS k(originator_id, originator_version) "
            "USING (originator_id, originator_version)"
        ).format(self.statements._events, sql.SQL(self.statements._id_sql_type))
        params = (
            [s.originator_id for s in stored_events],
            [s.originator_version for s in stored_events],
        )
        cursor = await conn.execute(statement, params)
        recorded = {(row[0], int(row[1])) for row in await cursor.fetchall()}
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


class AsyncPostgresListener:
    """A connection of its own that LISTENs on one events table's channel."""

    def __init__(self, datastore: AsyncPostgresDatastore, channel: str):
        self.datastore = datastore
        self.channel = channel
        self._conn: Conn | None = None

    async def open(self) -> None:
        conn = await self.datastore.connect(application_name=LISTENER_APPLICATION_NAME)
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except psycopg.Error as error:
            await conn.close()
            raise self.datastore.settings.translate(
                error, f"Listening on {self.channel!r}"
            ) from error
        self._conn = conn

    async def wait(self, timeout: float) -> bool:
        assert self._conn is not None
        try:
            async for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error as error:
            raise self.datastore.settings.translate(
                error, f"Waiting on {self.channel!r}"
            ) from error
        return False

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
