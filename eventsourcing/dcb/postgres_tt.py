"""DCB events in PostgreSQL: ``PostgresDCBRecorderTT`` (tags in a table of their own)
and its factory.

Tables: ``<name>`` (position, type, data, tags, transaction_id) and ``<name>_tags``
(one row per distinct tag of an event, keyed by tag and position), where ``<name>``
is ``dcb_events`` (``<app>_dcb_events`` for a named application); settings are
those of ``eventsourcing.postgres``.

An append is one round trip (a pipeline of two statements in one transaction):

1. Advisory locks, taken in one global order (so writers cannot deadlock), held
   until commit: an exclusive lock per condition query item (keyed by the first of
   its tags in sorted order, or by each of its types, or one key for "any event"),
   and a shared lock on each key an appended event could match (each of its tags,
   its type, and "any event").
   A writer whose events could match a condition being checked waits for that
   check's transaction, and the other way round; writers on disjoint queries do
   not wait for each other here.
2. One statement (whose snapshot, taken after those locks, shows what the
   waited-for writers recorded): the condition is checked, a few indexed
   look-ups per query item; if no event matches, the events and their tags are
   inserted, with positions drawn as the application recorders draw notification
   ids (see ``eventsourcing._postgres_commits``): the table's write lock (an
   advisory lock) is held only while the transaction takes its id and draws the
   positions, not across the commit, and each row records that id. So appends
   commit in parallel, and the server flushes their commits together.

Readers never skip: a read (its events and its head) goes no further than the
last position up to which no event can still appear (``settled_frontier_sql``):
a position drawn by an append still in progress holds back every reader, and so
every head, at the position before it. That keeps append conditions sound: a
writer W that has drawn position 100 and not committed holds its shared locks;
a reader whose query matches W's event is given a head of at most 99, and its
conditional append after that head takes the exclusive lock W's shared lock
excludes, so it checks only after W has committed, sees position 100 and fails.
A recorder finds that position from the last one it found (while that event is
still there with the same stamp), so a read looks at the events appended since;
at a gap left by an append that failed, reads wait (and look at the events after
the gap) until every transaction older than the event after it has ended.

Listeners are woken after the commit by one NOTIFY per recorder (``Notifier``):
NOTIFY inside the append takes a lock of the whole server until its commit.

A table made by an earlier version (without ``transaction_id``) gets the column
from ``create_table()``; until then the recorder keeps the earlier way: the write
lock (the same key) is held until commit, NOTIFY is sent in the append, and a
read's head is the last position. (Processes of the earlier version still running
after the migration read heads that may pass a position still to be committed:
stop them before migrating.)
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from eventsourcing._postgres_commits import (
    STAMP_COLUMN,
    CommitLayoutCache,
    add_stamp_column_sql,
    parallel_write_sql,
    release_after_error,
    settled_frontier_sql,
    stamp_column_sql,
)
from eventsourcing.dcb._common import (
    DCBInfrastructureFactory,
    DCBListenNotifySubscription,
    checked_condition,
    checked_events,
    checked_read_args,
    condition_failed,
    match_all,
    read_response,
    sequenced,
)
from eventsourcing.dcb._sql import DCBSQL, Statement
from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBQueryItem,
    DCBReadResponse,
    DCBRecorder,
)
from eventsourcing.postgres import (
    NotifiesAfterCommit,
    PostgresDatastore,
    PostgresFactory,
    PostgresListener,
    PostgresRecorder,
)

__all__ = [
    "Factory",
    "PostgresDCBRecorderTT",
    "PostgresDCBSubscription",
    "PostgresTTDCBFactory",
]

_LOCK_SQL = (
    "SELECT bool_and(CASE WHEN exclusive THEN pg_advisory_xact_lock(key) IS NULL "
    "ELSE pg_advisory_xact_lock_shared(key) IS NULL END) "
    "FROM unnest(%s::bigint[], %s::boolean[]) AS locks(key, exclusive)"
)

# A table made by an earlier version: the write lock is held until commit. ({check} is
# empty, or "WHERE NOT EXISTS (...)"; the positions are drawn in the order of the
# events, after the table's write lock.)
_HELD_APPEND_SQL = """WITH lock AS (SELECT pg_advisory_xact_lock({table_lock_key})),
new AS (
    SELECT * FROM unnest(%s::text[], %s::bytea[], %s::text[])
    WITH ORDINALITY AS new(type, data, tags, n)
),
inserted AS (
    INSERT INTO {events} (type, data, tags)
    SELECT new.type, new.data, ARRAY(SELECT jsonb_array_elements_text(new.tags::jsonb))
    FROM new, lock {check} ORDER BY new.n
    RETURNING position, type, tags
),
tagged AS (
    INSERT INTO {tags} (tag, position, type)
    SELECT DISTINCT tag, inserted.position, inserted.type
    FROM inserted, unnest(inserted.tags) AS tag
),
notified AS (
    SELECT pg_notify(%s, '') FROM (SELECT 1 FROM inserted LIMIT 1) AS any_inserted
)
SELECT (SELECT max(position) FROM inserted), (SELECT count(*) FROM notified)"""

# The events of an append, in order ("position" is the order within the append).
_NEW_CTE = (
    "new AS (SELECT type, data, ARRAY(SELECT jsonb_array_elements_text(tags::jsonb)) AS tags, "
    "position FROM unnest(%s::text[], %s::bytea[], %s::text[]) "
    "WITH ORDINALITY AS new(type, data, tags, position))"
)

# Inserted after ``parallel_write_sql``'s CTEs: the tags of the events inserted.
_PARALLEL_TAGS_SQL = """, tagged AS (
    INSERT INTO {tags} (tag, position, type)
    SELECT DISTINCT tag, inserted.position, inserted.type
    FROM inserted, unnest(inserted.tags) AS tag
)
SELECT max(position) FROM inserted"""


def _lock_key(table: str, kind: str, name: str) -> int:
    """A 64-bit advisory lock key (a collision only makes two writers wait)."""
    digest = hashlib.blake2b(f"{table}\x00{kind}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresDCBRecorderTT(
    NotifiesAfterCommit, CommitLayoutCache, PostgresRecorder, DCBRecorder
):
    """Records DCB events in PostgreSQL, tags in a table of their own."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "dcb_events"
    ) -> None:
        super().__init__(datastore)
        self.events_table_name = events_table_name
        self.tags_table_name = events_table_name + "_tags"
        self.channel_name = events_table_name
        type_index = events_table_name + "_type_position"
        for name in (self.tags_table_name, type_index):
            self.check_identifier_length(name)
        self._events = datastore.table(events_table_name)
        self._tags = datastore.table(self.tags_table_name)
        table = self._events.as_string(None)
        self._sql = DCBSQL(table, self._tags.as_string(None), "%s")
        self._any_key = _lock_key(table, "any", "")
        names = {
            "events": self._events,
            "tags": self._tags,
            "type_index": sql.Identifier(type_index),
        }
        self.sql_create_statements.extend(
            sql.SQL(statement).format(**names)
            for statement in (
                "CREATE TABLE IF NOT EXISTS {events} ("
                "position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "type text NOT NULL, data bytea NOT NULL, tags text[] NOT NULL, "
                f"{stamp_column_sql()})",
                "CREATE INDEX IF NOT EXISTS {type_index} ON {events} (type, position)",
                "CREATE TABLE IF NOT EXISTS {tags} (tag text NOT NULL, "
                "position bigint NOT NULL, type text NOT NULL, PRIMARY KEY (tag, position))",
            )
        )
        self.sql_create_statements.append(add_stamp_column_sql(self._events))
        self._table_lock_key = _lock_key(table, "table", "")
        # The head of a table made by an earlier version, and whether the table has
        # been given the stamp column since (then this recorder reads it anew).
        self._head_sql = (
            f"SELECT max(position), NULL::text, EXISTS (SELECT 1 FROM pg_attribute "
            f"WHERE attrelid = {sql.Literal(table).as_string(None)}::regclass "
            f"AND attname = '{STAMP_COLUMN}' AND NOT attisdropped) FROM {table}"
        )
        self._settled_head_sql = (
            "SELECT NULLIF(f.id, 0), f.stamp, false "
            f"FROM ({settled_frontier_sql('position').format(events=table)}) AS f(id, stamp)"
        )
        # A position up to which no event can still appear, and the stamp of its row,
        # as a read last found (see settled_frontier_sql): reads look on from there.
        self._settled: tuple[int, str] = (0, "0")
        self._append_sql: dict[tuple[str, str | None], bytes] = {}

    # (The table's layout is read at its first use: see CommitLayoutCache.)
    _layout_id_column = "position"

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this events table."""
        return self.channel_name

    def read(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> DCBReadResponse:
        items, start, limit = checked_read_args(query, after, limit)

        def select(conn: psycopg.Connection[Any]) -> tuple[list[Any], int | None]:
            if limit == 0:
                return [], None
            # One statement, so one snapshot: the head and the events agree. Rows
            # that appends in progress may precede are not read (see above).
            settled: tuple[int, str] | None = None
            if self._commit_layout(conn).stamped:
                head_sql, bound = self._settled_head_sql, "head.max"
                settled = self._settled
            else:
                head_sql, bound = self._head_sql, None
            statement = self._sql.read(items, start, None, limit, bound=bound)
            rows = conn.execute(
                f"SELECT head.max, head.stamp, head.migrated, e.* "
                f"FROM ({head_sql}) AS head(max, stamp, migrated) "
                f"LEFT JOIN LATERAL ({statement.sql}) AS e ON true ORDER BY e.position".encode(),
                [*(settled or ()), *statement.params],
                prepare=True,
            ).fetchall()
            if rows and rows[0][2]:
                # Given the stamp column since its layout was read (by another
                # process): appends may commit in parallel now, so read as they allow.
                self._layout = None
                return select(conn)
            head: int | None = rows[0][0] if rows else None
            stamp: str | None = rows[0][1] if rows else None
            if head is not None and stamp is not None and head > self._settled[0]:
                self._settled = (head, stamp)
            return [row[3:] for row in rows if row[3] is not None], head

        rows, head = self.datastore.run(
            select,
            what=f"Reading DCB events from {self.events_table_name!r}",
            transaction=False,
        )
        return read_response(list(sequenced(rows)), limit, head)

    def append(
        self, events: Sequence[DCBEvent], condition: DCBAppendCondition | None = None
    ) -> int:
        new_events = checked_events(events)
        condition = checked_condition(condition)
        items = None if condition is None else list(condition.fail_if_events_match.items)
        keys, exclusive = self._lock_keys(new_events, items)
        after = (condition.after if condition is not None else None) or 0
        check = None if items is None else self._sql.matches(items, after)
        params = [
            [e.type for e in new_events],
            [e.data for e in new_events],
            [json.dumps(list(e.tags)) for e in new_events],
            *(check.params if check is not None else []),
        ]

        def call(conn: psycopg.Connection[Any]) -> tuple[Any, bool]:
            layout = self._commit_layout(conn)
            sequence = layout.sequence if layout.parallel else None
            statement = self._append_statement(check, sequence)
            # One round trip: the locks, then (a new snapshot) check and insert.
            control, cursor = conn.cursor(), conn.cursor()
            try:
                with conn.pipeline():
                    control.execute(b"BEGIN")
                    control.execute(_LOCK_SQL, [keys, exclusive], prepare=True)
                    cursor.execute(
                        statement,
                        params if sequence else [*params, self.channel_name],
                        prepare=True,
                    )
                    control.execute(b"COMMIT")
            except BaseException:
                # Roll back (else the pool does), and let the write lock go, which a
                # parallel append holds in the session while it draws positions.
                if sequence is not None:
                    _roll_back_and_release(conn)
                raise
            return cursor.fetchone()[0], sequence is not None  # type: ignore[index]

        position, parallel = self.datastore.run(
            call,
            what=f"Appending DCB events to {self.events_table_name!r}",
            transaction=False,  # (its own, above)
        )
        if position is None:
            raise condition_failed(condition)
        if parallel:
            self._notify_after_commit(None)
        return int(position)

    def _append_statement(self, check: Statement | None, sequence: str | None) -> bytes:
        where = "" if check is None else f"WHERE NOT EXISTS ({check.sql})"
        statement = self._append_sql.get((where, sequence))
        if statement is None:
            names = {
                "events": self._sql.events,
                "tags": self._sql.tags,
                "table_lock_key": str(self._table_lock_key),
                "check": where,
            }
            if sequence is None:
                statement = _HELD_APPEND_SQL.format(**names).encode()
            else:
                gate = "TRUE" if check is None else "NOT EXISTS ({check_sql})"
                writing = parallel_write_sql(
                    _NEW_CTE,
                    [],
                    gate,
                    sequence,
                    id_column="position",
                    columns=("type", "data", "tags"),
                    lock_key=str(self._table_lock_key),
                    overriding=True,
                    returning="position, type, tags",
                )
                statement = (
                    (writing + _PARALLEL_TAGS_SQL)
                    .format(
                        events=self._sql.events,
                        tags=self._sql.tags,
                        check_sql="" if check is None else check.sql,
                    )
                    .encode()
                )
            self._append_sql[where, sequence] = statement
        return statement

    def _lock_keys(
        self, events: Sequence[DCBEvent], items: Sequence[DCBQueryItem] | None
    ) -> tuple[list[int], list[bool]]:
        """The advisory lock keys of an append, in order, and whether each is exclusive."""
        table = self._sql.events
        keys: dict[int, bool] = {self._any_key: False}
        for event in events:
            keys.setdefault(_lock_key(table, "type", event.type), False)
            for tag in event.tags:
                keys.setdefault(_lock_key(table, "tag", tag), False)
        for key in self._checked_keys(items or [], items is not None):
            keys[key] = True
        ordered = sorted(keys)
        return ordered, [keys[key] for key in ordered]

    def _checked_keys(self, items: Sequence[DCBQueryItem], checking: bool) -> list[int]:
        if not checking:
            return []
        if match_all(items):
            return [self._any_key]
        table = self._sql.events
        keys = []
        for item in items:
            if item.tags:
                keys.append(_lock_key(table, "tag", min(item.tags)))
            else:
                keys.extend(_lock_key(table, "type", t) for t in item.types)
        return keys

    def subscribe(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
    ) -> PostgresDCBSubscription:
        return PostgresDCBSubscription(self, query=query, after=after)


def _roll_back_and_release(conn: psycopg.Connection[Any]) -> None:
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute(b"ROLLBACK")
    except BaseException:
        conn.close()
        return
    release_after_error(conn)


class PostgresDCBSubscription(DCBListenNotifySubscription[PostgresDCBRecorderTT]):
    """Woken by NOTIFY (a LISTEN connection in a thread of its own)."""

    def _start_wake_ups(self) -> None:
        recorder = self._recorder
        self._listener = PostgresListener(recorder.datastore, recorder.channel_name)
        self._listen_thread = threading.Thread(
            target=self._listen, name=f"dcb-listen-{recorder.channel_name}", daemon=True
        )
        self._listen_thread.start()

    def _listen(self) -> None:
        try:
            while not self._has_been_stopped:
                if self._listener.wait(timeout=0.5):
                    self._has_been_notified.set()
        except BaseException as error:
            if not self._has_been_stopped:
                self._thread_error = error
                self._has_been_notified.set()
        finally:
            self._listener.close()

    def stop(self) -> None:
        super().stop()
        self._listener.interrupt()  # (its wait returns at once)
        if threading.current_thread() is not self._listen_thread:
            self._listen_thread.join(timeout=5)


class PostgresTTDCBFactory(PostgresFactory, DCBInfrastructureFactory):
    """The PostgreSQL factory, which builds a PostgresDCBRecorderTT (``dcb_recorder()``)."""


Factory = PostgresTTDCBFactory  # (the name PERSISTENCE_MODULE looks for first)
