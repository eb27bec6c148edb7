"""DCB events in SQLite: ``SQLiteDCBRecorder`` and its factory.

Tables: ``<name>`` (position, type, data, tags as a JSON list) and ``<name>_tags``
(one row per distinct tag of an event, keyed by tag and position), where
``<name>`` is ``dcb_events`` (``<app>_dcb_events`` for a named application).
An append runs under SQLite's write lock (BEGIN IMMEDIATE): its condition is
checked and its events inserted with no other writer in between, and positions
become visible in order. Settings are those of ``eventsourcing.sqlite``
(``SQLITE_DBNAME``, ``SQLITE_LOCK_TIMEOUT``, ``SQLITE_SYNCHRONOUS``, ``CREATE_TABLE``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from eventsourcing.dcb._common import (
    DCBInfrastructureFactory,
    Listeners,
    LocalSubscription,
    checked_condition,
    checked_events,
    checked_limit,
    checked_position,
    checked_query,
    read_response,
    sequenced,
)
from eventsourcing.dcb._sql import DCBSQL
from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBReadResponse,
    DCBRecorder,
)
from eventsourcing.persistence import DataError, IntegrityError
from eventsourcing.sqlite import SQLiteDatastore, SQLiteFactory, quote_identifier

__all__ = ["Factory", "SQLiteDCBFactory", "SQLiteDCBRecorder", "SQLiteDCBSubscription"]

# The wake-ups of subscriptions to one table of one database file, shared by the
# recorders of this process (other processes' appends are found by polling).
_listeners_lock = threading.Lock()
_listeners: dict[tuple[str, str], Listeners] = {}


def _listeners_of(datastore: SQLiteDatastore, table: str) -> Listeners:
    database = f"memory:{id(datastore)}" if datastore.is_memory else datastore.db_name
    with _listeners_lock:
        return _listeners.setdefault((database, table), Listeners())


class SQLiteDCBRecorder(DCBRecorder):
    """Records DCB events in an SQLite database."""

    def __init__(self, datastore: SQLiteDatastore, *, events_table_name: str = "dcb_events"):
        self.datastore = datastore
        self.events_table_name = events_table_name
        self.tags_table_name = events_table_name + "_tags"
        self._events = quote_identifier(self.events_table_name)
        self._tags = quote_identifier(self.tags_table_name)
        self._sql = DCBSQL(self._events, self._tags, "?")
        self.listeners = _listeners_of(datastore, events_table_name)
        type_index = quote_identifier(events_table_name + "_type_position")
        self.create_table_statements = [
            f"CREATE TABLE IF NOT EXISTS {self._events} ("
            "position INTEGER PRIMARY KEY, type TEXT NOT NULL, "
            "data BLOB NOT NULL, tags TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {type_index} ON {self._events} (type, position)",
            f"CREATE TABLE IF NOT EXISTS {self._tags} ("
            "tag TEXT NOT NULL, position INTEGER NOT NULL, type TEXT NOT NULL, "
            "PRIMARY KEY (tag, position)) WITHOUT ROWID",
        ]

    def create_table(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            for statement in self.create_table_statements:
                conn.execute(statement)

        what = f"Creating DCB tables {self.events_table_name!r}"
        self.datastore.run(create, write=True, what=what)

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

        def select(conn: sqlite3.Connection) -> tuple[list[Any], int | None]:
            # The head first, then nothing beyond it: the events and the head agree.
            head = conn.execute(f"SELECT MAX(position) FROM {self._events}").fetchone()[0]
            if head is None or limit == 0:
                return [], head
            statement = self._sql.read(items, start, head, -1 if limit is None else limit)
            return conn.execute(statement.sql, statement.params).fetchall(), head

        rows, head = self.datastore.run(
            select, write=False, what=f"Reading DCB events from {self.events_table_name!r}"
        )
        return read_response(list(sequenced(_decoded(rows))), limit, head)

    def append(
        self, events: Sequence[DCBEvent], condition: DCBAppendCondition | None = None
    ) -> int:
        new_events = checked_events(events)
        condition = checked_condition(condition)
        rows = [(e.type, e.data, json.dumps(list(e.tags))) for e in new_events]

        def insert(conn: sqlite3.Connection) -> int:
            if condition is not None:
                self._check(conn, condition)
            last = conn.execute(f"SELECT MAX(position) FROM {self._events}").fetchone()[0] or 0
            positions = range(last + 1, last + 1 + len(rows))
            conn.executemany(
                f"INSERT INTO {self._events} (position, type, data, tags) VALUES (?, ?, ?, ?)",
                [(p, *row) for p, row in zip(positions, rows)],
            )
            conn.executemany(
                f"INSERT INTO {self._tags} (tag, position, type) VALUES (?, ?, ?)",
                [(t, p, e.type) for p, e in zip(positions, new_events) for t in set(e.tags)],
            )
            return positions[-1]

        position = self.datastore.run(
            insert, write=True, what=f"Appending DCB events to {self.events_table_name!r}"
        )
        self.listeners.notify()
        return position

    def _check(self, conn: sqlite3.Connection, condition: DCBAppendCondition) -> None:
        items = list(condition.fail_if_events_match.items)
        statement = self._sql.any_match(items, condition.after or 0)
        if conn.execute(statement.sql, statement.params).fetchone()[0]:
            raise IntegrityError(f"DCB append condition failed: {condition}")

    def subscribe(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
    ) -> SQLiteDCBSubscription:
        return SQLiteDCBSubscription(self, query=query, after=after)


class SQLiteDCBSubscription(LocalSubscription[SQLiteDCBRecorder]):
    """Woken by appends of this process; polls for those of other processes."""

    poll_interval = 0.5


def _decoded(rows: list[Any]) -> list[tuple[int, str, bytes, list[str]]]:
    decoded = []
    for position, type_, data, tags in rows:
        try:
            decoded.append((position, type_, data, json.loads(tags)))
        except (TypeError, ValueError) as error:
            raise DataError(
                f"DCB event {position}: its tags are not a JSON list: {error}"
            ) from None
    return decoded


class SQLiteDCBFactory(SQLiteFactory, DCBInfrastructureFactory):
    """The SQLite factory, which builds a SQLiteDCBRecorder (``dcb_recorder()``)."""


Factory = SQLiteDCBFactory  # (the name PERSISTENCE_MODULE looks for first)
