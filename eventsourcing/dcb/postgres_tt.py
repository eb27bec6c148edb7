"""DCB events in PostgreSQL: ``PostgresDCBRecorderTT`` (tags in a table of their own)
and its factory.

Tables: ``<name>`` (position, type, data, tags) and ``<name>_tags`` (one row per
distinct tag of an event, keyed by tag and position), where ``<name>`` is
``dcb_events`` (``<app>_dcb_events`` for a named application); settings are
those of ``eventsourcing.postgres``.

An append is one call of a function made with the tables, run as one
transaction:

1. Advisory locks, taken in one global order (so writers cannot deadlock): an
   exclusive lock per condition query item (keyed by its first tag, or by each of
   its types, or one key for "any event"), and a shared lock on the keys an
   appended event could match (each of its tags and its type, and "any event").
   A writer whose events could match a condition being checked waits for that
   check's transaction, and the other way round; writers on disjoint queries do
   not wait for each other here.
2. The condition is checked (each statement of the function sees what was
   committed before it began, so what the waited-for writers recorded): a few
   indexed look-ups per query item. If an event matches, nothing is written.
3. The table's write lock (an advisory lock, held briefly until commit), so that
   positions are drawn and become visible in order: a reader never sees a
   position before a lower one that will be committed later.
4. The events and their tags are inserted, and a NOTIFY wakes subscribers.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

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
from eventsourcing.dcb._sql import DCBSQL
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

_APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION {function}(
    lock_keys bigint[], lock_exclusive boolean[], items jsonb, after_position bigint,
    event_types text[], event_datas bytea[], tag_events int[], tag_values text[],
    channel text
) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    item jsonb;
    item_types text[];
    item_tags text[];
    found boolean;
    base bigint;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(lock_keys), 0) LOOP
        IF lock_exclusive[i] THEN
            PERFORM pg_advisory_xact_lock(lock_keys[i]);
        ELSE
            PERFORM pg_advisory_xact_lock_shared(lock_keys[i]);
        END IF;
    END LOOP;
    IF items IS NOT NULL THEN
        IF jsonb_array_length(items) = 0 THEN
            IF EXISTS (SELECT 1 FROM {events} WHERE position > after_position) THEN
                RETURN NULL;
            END IF;
        END IF;
        FOR item IN SELECT value FROM jsonb_array_elements(items) LOOP
            item_types := ARRAY(SELECT jsonb_array_elements_text(item -> 'types'));
            item_tags := ARRAY(SELECT jsonb_array_elements_text(item -> 'tags'));
            IF cardinality(item_tags) > 0 THEN
                found := EXISTS (
                    SELECT 1 FROM {tags} a
                    WHERE a.tag = item_tags[1] AND a.position > after_position
                    AND (cardinality(item_types) = 0 OR a.type = ANY (item_types))
                    AND (SELECT count(*) FROM {tags} b
                         WHERE b.tag = ANY (item_tags) AND b.position = a.position)
                        = cardinality(item_tags)
                );
            ELSIF cardinality(item_types) > 0 THEN
                found := EXISTS (
                    SELECT 1 FROM {events}
                    WHERE type = ANY (item_types) AND position > after_position
                );
            ELSE
                found := EXISTS (SELECT 1 FROM {events} WHERE position > after_position);
            END IF;
            IF found THEN
                RETURN NULL;
            END IF;
        END LOOP;
    END IF;
    PERFORM pg_advisory_xact_lock({table_lock_key});
    SELECT coalesce(max(position), 0) INTO base FROM {events};
    INSERT INTO {events} (position, type, data, tags)
    SELECT base + e.n, e.type, e.data, coalesce(ARRAY(
        SELECT t.value FROM unnest(tag_events, tag_values) WITH ORDINALITY AS t(n, value, k)
        WHERE t.n = e.n ORDER BY t.k), '{{}}')
    FROM unnest(event_types, event_datas) WITH ORDINALITY AS e(type, data, n);
    INSERT INTO {tags} (tag, position, type)
    SELECT DISTINCT t.value, base + t.n, event_types[t.n]
    FROM unnest(tag_events, tag_values) AS t(n, value);
    PERFORM pg_notify(channel, '');
    RETURN base + cardinality(event_types);
END
$$
"""


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
        function_name = events_table_name + "_append"
        type_index = events_table_name + "_type_position"
        for name in (self.tags_table_name, function_name, type_index):
            self.check_identifier_length(name)
        self._events = datastore.table(events_table_name)
        self._tags = datastore.table(self.tags_table_name)
        self._function = datastore.table(function_name)
        table = self._events.as_string(None)
        self._sql = DCBSQL(table, self._tags.as_string(None), "%s")
        self._any_key = _lock_key(table, "any", "")
        names = {
            "events": self._events,
            "tags": self._tags,
            "function": self._function,
            "type_index": sql.Identifier(type_index),
            "table_lock_key": sql.Literal(_lock_key(table, "table", "")),
        }
        self.sql_create_statements.extend(
            sql.SQL(statement).format(**names)
            for statement in (
                "CREATE TABLE IF NOT EXISTS {events} (position bigint PRIMARY KEY, "
                "type text NOT NULL, data bytea NOT NULL, tags text[] NOT NULL)",
                "CREATE INDEX IF NOT EXISTS {type_index} ON {events} (type, position)",
                "CREATE TABLE IF NOT EXISTS {tags} (tag text NOT NULL, "
                "position bigint NOT NULL, type text NOT NULL, PRIMARY KEY (tag, position))",
                _APPEND_FUNCTION,
            )
        )
        self._append_sql = sql.SQL(
            "SELECT {}(%s::bigint[], %s::boolean[], %s::jsonb, %s, "
            "%s::text[], %s::bytea[], %s::int[], %s::text[], %s)"
        ).format(self._function)
        self._head_sql = sql.SQL("SELECT max(position) FROM {}").format(self._events)

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
            # The head first, then nothing beyond it: the events and the head agree.
            head = conn.execute(self._head_sql, prepare=True).fetchone()[0]  # type: ignore[index]
            if head is None or limit == 0:
                return [], head
            statement = self._sql.read(items, start, head, limit)
            rows = conn.execute(statement.sql.encode(), statement.params, prepare=True)
            return rows.fetchall(), head

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
        tag_events = [n for n, e in enumerate(new_events, 1) for _ in e.tags]
        params = [
            keys,
            exclusive,
            None if items is None else Jsonb([_item_json(i) for i in items]),
            (condition.after if condition is not None else None) or 0,
            [e.type for e in new_events],
            [e.data for e in new_events],
            tag_events,
            [t for e in new_events for t in e.tags],
            self.channel_name,
        ]

        def call(conn: psycopg.Connection[Any]) -> Any:
            return conn.execute(self._append_sql, params, prepare=True).fetchone()[0]  # type: ignore[index]

        position = self.datastore.run(
            call,
            what=f"Appending DCB events to {self.events_table_name!r}",
            transaction=False,  # one statement: its own transaction
        )
        if position is None:
            raise IntegrityError(f"DCB append condition failed: {condition}")
        return int(position)

    def _lock_keys(
        self, events: Sequence[DCBEvent], items: Sequence[DCBQueryItem] | None
    ) -> tuple[list[int], list[bool]]:
        """The advisory lock keys of an append, in order, and whether each is exclusive."""
        table = self._events.as_string(None)
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
        table = self._events.as_string(None)
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


def _item_json(item: DCBQueryItem) -> dict[str, list[str]]:
    return {"types": sorted(set(item.types)), "tags": sorted(set(item.tags))}


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
