"""DCB events in PostgreSQL: ``PostgresDCBRecorderTT`` (tags in a table of their own)
and its factory.

Tables: ``<name>`` (position, type, data, tags) and ``<name>_tags`` (one row per
distinct tag of an event, keyed by tag and position), where ``<name>`` is
``dcb_events`` (``<app>_dcb_events`` for a named application); settings are
those of ``eventsourcing.postgres``.

An append is one round trip (a pipeline of two statements in one transaction):

1. Advisory locks, taken in one global order (so writers cannot deadlock): an
   exclusive lock per condition query item (keyed by the first of its tags in
   sorted order, or by each of its types, or one key for "any event"), and a
   shared lock on each key an appended event could match (each of its tags, its
   type, and "any event").
   A writer whose events could match a condition being checked waits for that
   check's transaction, and the other way round; writers on disjoint queries do
   not wait for each other here.
2. One statement (whose snapshot, taken after those locks, shows what the
   waited-for writers recorded): the condition is checked, a few indexed
   look-ups per query item; if no event matches, the table's write lock is taken
   (an advisory lock held until commit, so that positions are drawn and become
   visible in order: a reader never sees a position before a lower one that is
   still to be committed), the events and their tags are inserted, and a NOTIFY
   wakes subscribers.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from eventsourcing.dcb._common import (
    DCBInfrastructureFactory,
    DCBListenNotifySubscription,
    checked_condition,
    checked_events,
    checked_limit,
    checked_position,
    checked_query,
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
from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import (
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

# ({check} is empty, or "WHERE NOT EXISTS (...)"; the positions are drawn in the
# order of the events, after the table's write lock.)
_APPEND_SQL = """WITH lock AS (SELECT pg_advisory_xact_lock({table_lock_key})),
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


def _lock_key(table: str, kind: str, name: str) -> int:
    """A 64-bit advisory lock key (a collision only makes two writers wait)."""
    digest = hashlib.blake2b(f"{table}\x00{kind}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresDCBRecorderTT(PostgresRecorder, DCBRecorder):
    """Records DCB events in PostgreSQL, tags in a table of their own."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "dcb_events"):
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
                "type text NOT NULL, data bytea NOT NULL, tags text[] NOT NULL)",
                "CREATE INDEX IF NOT EXISTS {type_index} ON {events} (type, position)",
                "CREATE TABLE IF NOT EXISTS {tags} (tag text NOT NULL, "
                "position bigint NOT NULL, type text NOT NULL, PRIMARY KEY (tag, position))",
            )
        )
        self._table_lock_key = _lock_key(table, "table", "")
        self._head_sql = f"SELECT max(position) FROM {table}"
        self._append_sql: dict[str, bytes] = {}

    def read(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> DCBReadResponse:
        items = checked_query(query)
        start = checked_position(after, "DCB read after") or 0
        limit = checked_limit(limit)

        def select(conn: psycopg.Connection[Any]) -> tuple[list[Any], int | None]:
            if limit == 0:
                return [], None
            # One statement, so one snapshot: the head and the events agree.
            statement = self._sql.read(items, start, None, limit)
            rows = conn.execute(
                f"SELECT head.max, e.* FROM ({self._head_sql}) AS head "
                f"LEFT JOIN LATERAL ({statement.sql}) AS e ON true ORDER BY e.position".encode(),
                statement.params,
                prepare=True,
            ).fetchall()
            head = rows[0][0] if rows else None
            return [row[1:] for row in rows if row[1] is not None], head

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
        statement = self._append_statement(check)
        params = [
            [e.type for e in new_events],
            [e.data for e in new_events],
            [json.dumps(list(e.tags)) for e in new_events],
            *(check.params if check is not None else []),
            self.channel_name,
        ]

        def call(conn: psycopg.Connection[Any]) -> Any:
            # One round trip: the locks, then (a new snapshot) check and insert.
            # (A connection left in the transaction by an error is rolled back
            # when the pool takes it back.)
            control, cursor = conn.cursor(), conn.cursor()
            with conn.pipeline():
                control.execute(b"BEGIN")
                control.execute(_LOCK_SQL, [keys, exclusive], prepare=True)
                cursor.execute(statement, params, prepare=True)
                control.execute(b"COMMIT")
            return cursor.fetchone()[0]  # type: ignore[index]

        position = self.datastore.run(
            call,
            what=f"Appending DCB events to {self.events_table_name!r}",
            transaction=False,  # (its own, above)
        )
        if position is None:
            raise IntegrityError(f"DCB append condition failed: {condition}")
        return int(position)

    def _append_statement(self, check: Statement | None) -> bytes:
        where = "" if check is None else f"WHERE NOT EXISTS ({check.sql})"
        statement = self._append_sql.get(where)
        if statement is None:
            names = {
                "events": self._sql.events,
                "tags": self._sql.tags,
                "table_lock_key": str(self._table_lock_key),
                "check": where,
            }
            statement = self._append_sql[where] = _APPEND_SQL.format(**names).encode()
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


class PostgresDCBSubscription(DCBListenNotifySubscription[PostgresDCBRecorderTT]):
    """Woken by NOTIFY (a LISTEN connection in a thread of its own)."""

    def __init__(
        self,
        recorder: PostgresDCBRecorderTT,
        query: DCBQuery | None = None,
        after: int | None = None,
    ) -> None:
        super().__init__(recorder=recorder, query=query, after=after)
        # Listening before the first read: nothing committed in between is missed.
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
        if threading.current_thread() is not self._listen_thread:
            self._listen_thread.join(timeout=5)


class PostgresTTDCBFactory(PostgresFactory, DCBInfrastructureFactory):
    """The PostgreSQL factory, which builds a PostgresDCBRecorderTT (``dcb_recorder()``)."""


Factory = PostgresTTDCBFactory  # (the name PERSISTENCE_MODULE looks for first)
