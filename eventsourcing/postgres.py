"""PostgreSQL recorders, with psycopg 3 and its connection pool.

Never skip, with writers that commit in parallel (see
``eventsourcing._postgres_commits`` for the design and its proof): every insert
into an application's events table takes the table's write lock, an advisory lock
keyed by the table's oid, only while it takes its transaction id and draws its
notification ids; each row records its writer's transaction id; a reader returns
no row that a writer still in progress could precede. So many writers' commits
are flushed together, and a reader that has seen id N never later finds a newly
committed id below N. Readers take no lock and are never blocked. Listeners are
notified after the commit, by a statement of its own (NOTIFY inside a write would
serialise its commit with all others). Writes in a transaction of several
statements (an extension's, a tracking table of a row per position), and every
write to a table made by an earlier version until ``create_table()`` migrates it,
hold the lock until commit, as earlier versions did. (An insert also holds the
table's ROW EXCLUSIVE lock from its start, so writers that take ``LOCK TABLE ...
IN EXCLUSIVE MODE`` instead, as older versions did, still exclude these.)

A write is one statement, prepared once per connection, which the server runs as
one transaction and commits before it answers. A plain save draws no ids if one
of its events is recorded already (then ``RecordConflictError``); a conflict with
a writer in progress aborts it, recording nothing, though the ids it drew are not
reused: ids may have gaps, and readers pass them once the writers that could fill
them have ended. A follower's write moves its tracking position in the same
statement as the insert, first, and records nothing, and draws no ids, if an event
exists or the position cannot move. (The statement sees the table as it was when
it began: an event that another writer committed meanwhile is found by the unique
key instead, and the write fails as a plain save's does; a moved position is found
by the update itself, which rereads a row changed meanwhile.)
A tracking table of a row per processed position takes a transaction of a few
statements instead (see ``PostgresProcessRecorder``).

Every identifier (schema, table) is quoted with ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import psycopg
import psycopg.errors
from psycopg import sql

from eventsourcing._deadletters_postgres import PostgresDeadLetters
from eventsourcing._postgres_commits import (
    CommitLayoutCache,
    NoticeSender,
    Notifier,
    add_stamp_column_sql,
    held_write_sql,
    lock_until_commit_sql,
    parallel_write_sql,
    release_after_error,
    settled_rows_sql,
    settled_topic_rows_sql,
    stamp_column_sql,
)
from eventsourcing._postgres_connections import (
    PostgresListener,
    one_line,
)
from eventsourcing._postgres_datastore import (  # noqa: F401 (kept importable from here)
    _IDLE,
    CREATE_TABLE_LOCK_KEY,
    MAX_IDENTIFIER_BYTES,
    SYNCHRONOUS_COMMIT_MODES,
    Connection,
    PooledConnection,
    PostgresCursor,
    PostgresDatastore,
    T,
    _check_identifier,
    _password_refreshing,
    fetch_all,
)
from eventsourcing._postgres_sql import (
    _RECORDED_CTE,
    _UNLESS_RECORDED,
    _UNLESS_RECORDED_UNLOCKED,
    _VALUES_MAX,
    _new_rows_cte,
    _new_rows_params,
    _tracking_kind,
    _tracking_params,
    _tracking_sql,
)
from eventsourcing.persistence import (
    ORIGINATOR_ID_TYPE,
    ORIGINATOR_ID_TYPES,
    AggregateRecorder,
    ApplicationRecorder,
    Beacon,
    BeaconWaker,
    DatabaseFactory,
    ListenNotifySubscription,
    Notification,
    PersistenceError,
    ProcessRecorder,
    RecordConflictError,
    StoredEvent,
    Tracking,
    TrackingConflictError,
    TrackingRecorder,
    Waker,
    What,
    first_definer,
    inserting,
    new_notification,
    new_stored_event,
    selected_id,
    tracking_conflict,
    wrong_id_type,
)
from eventsourcing.utils import Environment, resolve_topic

if TYPE_CHECKING:
    from eventsourcing.dcb.postgres_tt import PostgresDCBRecorderTT

__all__ = [
    "Factory",
    "PostgresAggregateRecorder",
    "PostgresApplicationRecorder",
    "PostgresCursor",
    "PostgresDatastore",
    "PostgresFactory",
    "PostgresListener",
    "PostgresProcessRecorder",
    "PostgresRecorder",
]

logger = logging.getLogger(__name__)

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
                recorded=lambda conn: self._recorded_as_sent(conn, stored_events, None),
            )
        return None

    def _insert_extended(
        self, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]
    ) -> Sequence[int] | None:
        """Insert through the subclass's ``_insert_events``, in one transaction."""

        def insert(conn: Connection) -> Sequence[int] | None:
            self._begin_extended_write(conn)
            with PostgresCursor(conn) as cursor:
                ids = self._insert_events(cursor, stored_events, **kwargs)
                return ids if ids is not None else cursor.notification_ids

        tracking = kwargs.get("tracking")
        return self.datastore.run(
            insert,
            what=inserting(self.events_table_name, stored_events, tracking),
            recorded=lambda conn: self._recorded_as_sent(conn, stored_events, tracking),
        )

    def _begin_extended_write(self, conn: psycopg.Connection[Any]) -> None:
        """Begin the transaction of an extension's write (nothing to do without ids)."""

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

    def _recorded_as_sent(
        self,
        conn: psycopg.Connection[Any],
        stored_events: Sequence[StoredEvent],
        tracking: Tracking | None,
    ) -> list[int] | None:
        """After a write retried on a lost connection met a conflict: the notification
        ids of ``stored_events`` if exactly they (ids, versions, topics, states) are
        recorded, and the tracking position too, so the first try was committed and
        only its answer was lost; else None (a genuine conflict)."""
        if tracking is not None and not self._tracked_as_sent(conn, tracking):
            return None
        if not stored_events:
            return []
        rows = conn.execute(*self._recorded_query(stored_events)).fetchall()
        return self._as_sent(stored_events, rows)

    def _recorded_query(self, stored_events: Sequence[StoredEvent]) -> tuple[bytes, Any]:
        """The query of the rows of ``stored_events`` recorded (for ``_as_sent``)."""
        return self._statement(("recorded as sent",), self._recorded_sql), (
            [s.originator_id for s in stored_events],
            [s.originator_version for s in stored_events],
        )

    def _as_sent(self, stored_events: Sequence[StoredEvent], rows: list[Any]) -> list[int] | None:
        """The notification ids of ``stored_events`` if ``rows`` (of ``_recorded_query``)
        hold exactly them, else None."""
        found = {(row[0], int(row[1])): row for row in rows}
        ids = []
        for stored in stored_events:
            row = found.get((stored.originator_id, stored.originator_version))
            if row is None or row[2] != stored.topic or bytes(row[3]) != stored.state:
                return None
            ids.append(int(row[4]))
        return sorted(ids) if self._numbered else []

    @property
    def _numbered(self) -> bool:
        """Whether the events table numbers its rows (has notification ids)."""
        return isinstance(self, PostgresApplicationRecorder)

    def _recorded_sql(self) -> sql.Composable:
        number = "e.notification_id" if self._numbered else "0"
        return sql.SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state, " + number + " "
            "FROM {} AS e JOIN unnest(%s::{}[], %s::bigint[]) AS k(originator_id, "
            "originator_version) USING (originator_id, originator_version)"
        ).format(self._events, sql.SQL(self._id_sql_type))

    def _tracked_as_sent(self, conn: psycopg.Connection[Any], tracking: Tracking) -> bool:
        """Whether the tracking table holds ``tracking``'s position (None if no table)."""
        query = self._tracked_query(tracking)
        return query is not None and conn.execute(*query).fetchone() is not None

    def _tracked_query(self, tracking: Tracking) -> tuple[bytes, Any] | None:
        """The query of a row if ``tracking``'s position is recorded (None: no table)."""
        table = getattr(self, "_tracking", None)
        if table is None:
            return None
        statement = self._statement(
            ("tracked as sent",),
            lambda: sql.SQL(
                "SELECT 1 FROM {} WHERE application_name = %s AND notification_id = %s"
            ).format(table),
        )
        return statement, (tracking.application_name, tracking.notification_id)

    def _conflict(self, error: psycopg.errors.UniqueViolation) -> RecordConflictError:
        """The error of a write that met an event already recorded (``error``)."""
        detail = error.diag.message_detail or one_line(error)
        return RecordConflictError(
            f"Event already recorded in {self.events_table_name!r}: {detail} "
            "(originator_id, originator_version); nothing was recorded"
        )

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
                raise self._conflict(error) from error
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
            lambda conn: fetch_all(conn, statement, params),
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
        if type(originator_id) is not self._id_type:
            # (A UUID's string form selects its events, as in the 9.x stores.)
            originator_id = selected_id(
                originator_id, self._id_type, f"table {self.events_table_name!r}"
            )
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


class NotifiesAfterCommit:
    """Wakes the listeners of a recorder's channel (``channel``) after writes commit
    in parallel, through one ``Notifier`` per recorder (NOTIFY inside a write, or
    after it by each writer, serialises the writers' commits)."""

    datastore: PostgresDatastore
    # Wakes listeners after parallel writes (made at the first).
    _notifier: Notifier | None = None
    _notifier_lock = threading.Lock()

    @property
    def channel(self) -> str:
        raise NotImplementedError

    def _notify_after_commit(self, conn: psycopg.Connection[Any] | None) -> None:
        """Wake listeners, once the write is committed, by a thread that sends one
        NOTIFY for any number of writes (see ``Notifier``): NOTIFY in the write's own
        transaction, or after it by each writer, serialised the writers' commits."""
        notifier = self._notifier
        if notifier is None:
            notifier = self._start_notifier()
        notifier.signal()

    def _start_notifier(self) -> Notifier:
        with self._notifier_lock:
            notifier = self._notifier
            if notifier is None:
                sender = NoticeSender(self._notice_connection, self.channel)
                notifier = self._notifier = Notifier(sender, self.channel, self._datastore_closed)
                before_close = getattr(self.datastore, "before_close", None)
                if before_close is not None:  # (a notice pending is sent first)
                    before_close(notifier.close)
            return notifier

    def _notice_connection(self) -> psycopg.Connection[Any]:
        """A new connection for the notifier, after an outage if there is one (reported
        with the writers': a notice pending then follows once the server is back)."""
        datastore = self.datastore
        what = f"Notifying listeners of {self.channel!r}"
        return datastore.retrying(datastore.connect, what=what)

    def _datastore_closed(self) -> bool:
        """Whether the datastore is closed, or closing (its notices are flushed then:
        the notifier's thread stops)."""
        closing = getattr(self.datastore, "_closing", None)
        if closing is not None and closing.is_set():
            return True
        return bool(getattr(self.datastore, "_closed", False))


def notifications_query(
    start: int | None,
    limit: int,
    stop: int | None,
    topics: Sequence[str],
    inclusive_of_start: bool,
) -> tuple[list[Any], tuple[Any, ...]]:
    """The parameters of a notifications query, and its shape (the key of its prepared
    statement), as the sync and async recorders build it."""
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
    return params, shape


def notifications_of_rows(rows: Iterable[Any]) -> list[Notification]:
    """Notifications of rows (id, originator id, version, topic, state)."""
    return [
        new_notification(originator_id, version, topic, bytes(state), nid)
        for nid, originator_id, version, topic, state in rows
    ]


class PostgresApplicationRecorder(
    NotifiesAfterCommit, CommitLayoutCache, PostgresAggregateRecorder, ApplicationRecorder
):
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
                f"{stamp_column_sql()}, "
                "UNIQUE (originator_id, originator_version))"
            ).format(self._events, sql.SQL(self._id_sql_type)),
            add_stamp_column_sql(self._events),
        ]

    def _begin_extended_write(self, conn: psycopg.Connection[Any]) -> None:
        # An extension may write before inserting events: the lock, and a transaction
        # id under it, come first, so its stamp keeps the order (see _postgres_commits).
        if self._commit_layout(conn).parallel:
            conn.execute(self._statement(("lock until commit",), self._lock_until_commit_sql))

    def _lock_until_commit_sql(self) -> sql.Composable:
        return sql.SQL(lock_until_commit_sql()).format(**self._sql_names())

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
            recorded=lambda conn: self._recorded_as_sent(conn, stored_events, None),
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
        ids = self._write(conn, stored_events, ("insert",), self._insert_sql, ())
        if len(ids) != len(stored_events):  # refused: an event is recorded already
            self._check_conflicts(conn, stored_events)  # raises, naming the event
            raise RecordConflictError(
                f"An event is already recorded in {self.events_table_name!r}; nothing was recorded"
            )
        return ids

    def _write(
        self,
        conn: psycopg.Connection[Any],
        stored_events: Sequence[StoredEvent],
        kind: tuple[str, ...],
        build: Callable[[int | None, str | None], sql.Composable],
        more_params: Sequence[Any],
    ) -> list[int]:
        """Run a write statement made by ``build`` (once per ``kind`` and shape); return
        the ids of the events it inserted.

        A few events (a save, a follower that keeps up) go as rows of values, in a
        statement prepared per count; more go as four arrays. A duplicate, even one
        committed while this write waited for the lock, is a RecordConflictError.
        """
        layout = self._commit_layout(conn)
        # In a transaction of several statements the lock is held until commit.
        parallel = layout.parallel and conn.info.transaction_status == _IDLE
        statement, params, prepare = self._write_query(
            stored_events, kind, build, more_params, layout.sequence if parallel else None
        )
        try:
            try:
                rows = fetch_all(conn, statement, params, prepare=prepare)
            except BaseException:
                if parallel:
                    release_after_error(conn)
                raise
        except psycopg.errors.UniqueViolation as error:
            raise self._conflict(error) from error
        if parallel and rows:
            self._notify_after_commit(conn)
        return sorted(int(row[0]) for row in rows)

    def _write_query(
        self,
        stored_events: Sequence[StoredEvent],
        kind: tuple[str, ...],
        build: Callable[[int | None, str | None], sql.Composable],
        more_params: Sequence[Any],
        sequence: str | None,
    ) -> tuple[bytes, list[Any], bool]:
        """The write statement of ``kind`` for these events, its parameters, and whether
        to prepare it: a parallel write given the ``sequence`` that draws ids, else one
        that holds the lock until commit and sends NOTIFY (also the async API's)."""
        count = len(stored_events)
        shape = count if count <= _VALUES_MAX else None
        statement = self._statement((*kind, shape, sequence), lambda: build(shape, sequence))
        params = _new_rows_params(stored_events, shape)
        params += more_params
        if sequence is None:
            params.append(self.channel)
        return statement, params, shape is not None

    def _check_conflicts(
        self, conn: psycopg.Connection[Any], stored_events: Sequence[StoredEvent]
    ) -> None:
        """Raise ``RecordConflictError`` naming the first duplicate or recorded event."""
        rows = conn.execute(*self._recorded_query(stored_events)).fetchall()
        self._raise_first_conflict(stored_events, rows)

    def _raise_first_conflict(
        self, stored_events: Sequence[StoredEvent], rows: Sequence[Any]
    ) -> None:
        """Raise ``RecordConflictError`` naming the first of ``stored_events`` that
        repeats an earlier one or is among ``rows`` (of ``_recorded_query``)."""
        recorded = {(row[0], int(row[1])) for row in rows}
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

    def _insert_sql(self, shape: int | None, sequence: str | None) -> sql.Composable:
        new_rows = _new_rows_cte(shape, self._id_sql_type)
        if sequence is None:
            return self._write_sql(new_rows, [], "TRUE", sequence)
        # Committing in parallel, ids are drawn only if no event is recorded already:
        # a gap in the ids holds readers back while older transactions run.
        return self._write_sql(
            new_rows, [_RECORDED_CTE], "NOT EXISTS (SELECT 1 FROM recorded)", sequence
        )

    def _write_sql(
        self, new_cte: str, checks: list[str], gate: str, sequence: str | None
    ) -> sql.Composable:
        """One statement that writes to the events table: ``checks`` (CTEs), then the
        insert of the rows of ``new_cte`` if ``gate`` holds, then NOTIFY. The table's
        write lock is held until commit, or, given the ``sequence`` that draws ids,
        only while they are drawn (see eventsourcing._postgres_commits)."""
        if sequence is not None:  # (listeners are notified after the commit)
            writing = parallel_write_sql(new_cte, checks, gate, sequence)
            return sql.SQL(writing + " SELECT notification_id FROM inserted").format(
                **self._sql_names()
            )
        writing = held_write_sql(new_cte, checks, gate)
        return sql.SQL(
            writing + ", notified AS (SELECT pg_notify(%s, '') AS sent) "
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
        return _listen_on(self.datastore, self.channel, callback)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        params, shape = notifications_query(start, limit, stop, topics, inclusive_of_start)

        def select(conn: Connection) -> list[Any]:
            if self._commit_layout(conn).stamped:
                return self._select_settled(conn, start, limit, stop, topics, inclusive_of_start)
            statement = self._statement(shape, lambda: self._select_notifications_sql(*shape[1:]))
            return conn.execute(statement, params).fetchall()

        rows = self.datastore.run(
            select,
            what=f"Selecting notifications from {self.events_table_name!r}",
            transaction=False,
        )
        return notifications_of_rows(rows)

    def _select_settled(
        self,
        conn: psycopg.Connection[Any],
        start: int | None,
        limit: int,
        stop: int | None,
        topics: Sequence[str],
        inclusive_of_start: bool,
    ) -> list[Any]:
        """Rows from a table whose writers commit in parallel: none that a writer still
        in progress could precede (see eventsourcing._postgres_commits)."""
        statement, params = self._settled_query(start, limit, stop, topics, inclusive_of_start)
        return fetch_all(conn, statement, params)

    def _settled_query(
        self,
        start: int | None,
        limit: int,
        stop: int | None,
        topics: Sequence[str],
        inclusive_of_start: bool,
    ) -> tuple[bytes, Any]:
        """The statement and parameters of ``_select_settled`` (also the async API's)."""
        after = 0 if start is None else start - 1 if inclusive_of_start else start
        if topics:
            statement = self._statement(
                ("select settled of topics", stop is not None),
                lambda: sql.SQL(settled_topic_rows_sql(stop is not None)).format(
                    events=self._events
                ),
            )
            named = {"after": after, "stop": stop, "topics": list(topics), "limit": max(limit, 0)}
            return statement, named
        statement = self._statement(
            ("select settled", stop is not None),
            lambda: sql.SQL(settled_rows_sql(stop is not None)).format(events=self._events),
        )
        params: list[Any] = [after, after]
        if stop is not None:
            params.append(stop)
        params.append(max(limit, 0))
        return statement, params

    def _select_notifications_sql(
        self,
        has_start: bool,
        inclusive_of_start: bool,
        has_stop: bool,
        has_topics: bool,
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


class PostgresProcessRecorder(PostgresDeadLetters, PostgresApplicationRecorder, ProcessRecorder):
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
            recorded=lambda conn: self._recorded_as_sent(conn, stored_events, tracking),
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
            lambda shape, sequence: self._insert_tracked_sql(kind, shape, sequence),
            _tracking_params(tracking),
        )
        if len(ids) == len(stored_events):
            return ids
        self._check_conflicts(conn, stored_events)  # raises, naming the event
        return None

    def _insert_tracked_sql(
        self, tracking_kind: str, shape: int | None, sequence: str | None
    ) -> sql.Composable:
        """The tracked insert, of ``shape`` rows given as values, or (None) of four arrays.

        Holding the lock until commit, it is taken before the tracking row is locked;
        else the tracking row is moved first, and ids are drawn only if it moved."""
        after = _UNLESS_RECORDED if sequence is None else _UNLESS_RECORDED_UNLOCKED
        return self._write_sql(
            _new_rows_cte(shape, self._id_sql_type),
            [
                _RECORDED_CTE,
                f"tracked AS ({_tracking_sql(tracking_kind, after)})",
            ],
            "NOT EXISTS (SELECT 1 FROM recorded) AND EXISTS (SELECT 1 FROM tracked)",
            sequence,
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


# The recorders of this module: a subclass whose _insert_events is one of theirs is
# not extended, and inserts with the quick statements.
_OUR_RECORDERS: tuple[type, ...] = (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresProcessRecorder,
)


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
POSTGRES_URL = "POSTGRES_URL"
POSTGRES_APPLICATION_NAME = "POSTGRES_APPLICATION_NAME"
POSTGRES_RETRY_TIMEOUT = "POSTGRES_RETRY_TIMEOUT"
POSTGRES_GET_PASSWORD_TOPIC = "POSTGRES_GET_PASSWORD_TOPIC"
POSTGRES_MAX_WAITING = "POSTGRES_MAX_WAITING"
# Accepted for compatibility with the eventsourcing 9.x settings; they change nothing
# here (a tracking table holds one row per upstream application, and a write is one
# statement without database functions), but a bad value is still refused.
SINGLE_ROW_TRACKING = "SINGLE_ROW_TRACKING"
POSTGRES_ENABLE_DB_FUNCTIONS = "POSTGRES_ENABLE_DB_FUNCTIONS"


class PostgresFactory(DatabaseFactory):
    """Builds PostgreSQL recorders; all of one application's recorders share one pool.

    The database is named by ``POSTGRES_DBNAME``, ``POSTGRES_URL`` (a libpq URI such
    as ``postgresql://user:secret@host:5432/db``) or libpq's ``PGDATABASE``. Settings
    given override the URI's parts; those not given (host, port, user, password) are
    left to libpq: its environment (``PGHOST``, ``PGPASSWORD``, ``PGPASSFILE``...)
    or defaults. ``POSTGRES_SYNCHRONOUS_COMMIT=off`` is a faster, less durable
    option (see ``SYNCHRONOUS_COMMIT_MODES``); the default is the server's durable
    ``on``. ``POSTGRES_RETRY_TIMEOUT`` (else ``RETRY_TIMEOUT``, else 30) is how many
    seconds an operation rides out an outage. Connections set ``application_name``
    to ``POSTGRES_APPLICATION_NAME``, else the application's name.
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
    POSTGRES_GET_PASSWORD_TOPIC = POSTGRES_GET_PASSWORD_TOPIC
    POSTGRES_SCHEMA = POSTGRES_SCHEMA
    POSTGRES_CONNECT_TIMEOUT = POSTGRES_CONNECT_TIMEOUT
    POSTGRES_POOL_SIZE = POSTGRES_POOL_SIZE
    POSTGRES_MAX_OVERFLOW = POSTGRES_MAX_OVERFLOW
    POSTGRES_MAX_WAITING = POSTGRES_MAX_WAITING
    POSTGRES_CONN_MAX_AGE = POSTGRES_CONN_MAX_AGE
    POSTGRES_PRE_PING = POSTGRES_PRE_PING
    POSTGRES_LOCK_TIMEOUT = POSTGRES_LOCK_TIMEOUT
    POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT = POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT
    POSTGRES_SYNCHRONOUS_COMMIT = POSTGRES_SYNCHRONOUS_COMMIT
    POSTGRES_SINGLE_ROW_TRACKING = SINGLE_ROW_TRACKING
    POSTGRES_ENABLE_DB_FUNCTIONS = POSTGRES_ENABLE_DB_FUNCTIONS
    POSTGRES_URL = POSTGRES_URL
    POSTGRES_APPLICATION_NAME = POSTGRES_APPLICATION_NAME
    POSTGRES_RETRY_TIMEOUT = POSTGRES_RETRY_TIMEOUT
    ORIGINATOR_ID_TYPE = ORIGINATOR_ID_TYPE

    def __init__(self, env: Environment | None = None):
        super().__init__(env)
        url = self.env.get(POSTGRES_URL) or ""
        self._check_url(url)
        for accepted in (SINGLE_ROW_TRACKING, POSTGRES_ENABLE_DB_FUNCTIONS):
            self.setting_bool(accepted, False)
        self.datastore = PostgresDatastore(
            dbname=self._dbname(url),
            host=self.env.get(POSTGRES_HOST) or "",
            port=self.setting_int(POSTGRES_PORT, 0) or None,
            user=self.env.get(POSTGRES_USER) or "",
            password=self.env.get(POSTGRES_PASSWORD) or "",
            get_password_func=self._get_password_function(),
            conninfo=url,
            application_name=self.env.get(POSTGRES_APPLICATION_NAME) or self.env.name,
            connect_timeout=self.setting_int(POSTGRES_CONNECT_TIMEOUT, 5),
            idle_in_transaction_session_timeout=self.setting_int(
                POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT, 0
            ),
            pool_size=self.setting_int(POSTGRES_POOL_SIZE, 5),
            max_overflow=self.setting_int(POSTGRES_MAX_OVERFLOW, 10),
            max_waiting=self.setting_int(POSTGRES_MAX_WAITING, 0),
            conn_max_age=self.setting_float(POSTGRES_CONN_MAX_AGE, None),
            pre_ping=self.setting_bool(POSTGRES_PRE_PING, False),
            lock_timeout=self.setting_int(POSTGRES_LOCK_TIMEOUT, 0),
            schema=self.env.get(POSTGRES_SCHEMA) or "",
            synchronous_commit=self.setting_choice(
                POSTGRES_SYNCHRONOUS_COMMIT, SYNCHRONOUS_COMMIT_MODES
            ),
            originator_id_type=self.setting_choice(ORIGINATOR_ID_TYPE, list(ORIGINATOR_ID_TYPES)),
            retry_timeout=self.setting_retry_timeout(POSTGRES_RETRY_TIMEOUT),
        )

    def _check_url(self, url: str) -> None:
        if not url:
            return
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as error:
            raise OSError(
                f"{self.setting_name(POSTGRES_URL)} is not a libpq connection string or "
                f"postgresql:// URI: {one_line(error)}"
            ) from None

    def _dbname(self, url: str) -> str:
        """The database's name; OSError naming the settings if none gives one."""
        dbname = self.env.get(POSTGRES_DBNAME) or ""
        url_names_one = bool(url and psycopg.conninfo.conninfo_to_dict(url).get("dbname"))
        if not (dbname or url_names_one or os.environ.get("PGDATABASE")):
            raise OSError(
                f"{self.setting_name(POSTGRES_DBNAME)} is not set: the PostgreSQL store needs "
                f"the name of a database (or {POSTGRES_URL}, or libpq's PGDATABASE)"
            )
        return str(dbname)

    def _get_password_function(self) -> Callable[[], str] | None:
        topic = self.env.get(POSTGRES_GET_PASSWORD_TOPIC)
        if not topic:
            return None
        function = resolve_topic(topic)
        if not callable(function):
            raise OSError(
                f"{self.setting_name(POSTGRES_GET_PASSWORD_TOPIC)} {topic!r} names no "
                f"function: {function!r}"
            )
        return cast("Callable[[], str]", function)

    def dcb_recorder(self) -> PostgresDCBRecorderTT:
        from eventsourcing.dcb._common import dcb_table_name  # (these import this module)
        from eventsourcing.dcb.postgres_tt import PostgresDCBRecorderTT

        name = dcb_table_name(self.env.name)
        recorder = PostgresDCBRecorderTT(self.datastore, events_table_name=name)
        return cast(PostgresDCBRecorderTT, self._created(recorder))


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
    when this returns. Returns a function that stops it (at once: the wait under way
    is interrupted)."""
    listener = PostgresListener(datastore, channel)
    stopping = threading.Event()

    def run() -> None:
        # The listener connects again after an outage, and then wakes the callback.
        try:
            while not stopping.is_set():
                if listener.wait(timeout=0.5) and not stopping.is_set():
                    callback()
        except Exception as error:  # not transient; the callers' polls cover us
            if not stopping.is_set():
                logger.warning("Stopped listening on %r: %s", channel, error)
        finally:
            listener.close()

    thread = threading.Thread(target=run, name=f"listen-{channel}", daemon=True)
    thread.start()

    def stop(join: bool = True) -> None:
        stopping.set()
        listener.interrupt()
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
