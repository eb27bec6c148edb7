"""A read model of the dog school: how many dogs know each trick, as a projection.

``TrickCountsProjection`` counts each ``Dog.TrickAdded`` into a view, a tracking
recorder of the store the settings select (in memory, SQLite or PostgreSQL), whose
command writes the counts and the tracking record in one transaction: each event
is counted exactly once. It takes events in batches too (``process_events``).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import get_topic
from examples.dogschool import Dog


class TrickCounts(TrackingRecorder, ABC):
    """How many dogs know each trick."""

    @abstractmethod
    def add_tricks(self, tricks: Sequence[str], tracking: Tracking) -> None:
        """Count the tricks and record ``tracking``, in one transaction."""

    @abstractmethod
    def get_count(self, trick: str) -> int:
        """The count of ``trick`` (0 if none)."""


class InMemoryTrickCounts(POPOTrackingRecorder, TrickCounts):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counts: Counter[str] = Counter()

    def add_tricks(self, tricks: Sequence[str], tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            self._counts.update(tricks)
            self._insert_tracking(tracking)

    def get_count(self, trick: str) -> int:
        with self._database_lock:
            return self._counts[trick]


class SQLiteTrickCounts(SQLiteTrackingRecorder, TrickCounts):
    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS trick_counts (trick TEXT PRIMARY KEY, dogs INTEGER)",
        ]

    def add_tricks(self, tricks: Sequence[str], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            for trick, dogs in Counter(tricks).items():
                cursor.execute(
                    "INSERT INTO trick_counts VALUES (?, ?) "
                    "ON CONFLICT (trick) DO UPDATE SET dogs = dogs + excluded.dogs",
                    (trick, dogs),
                )
            self._insert_tracking(cursor, tracking)

    def get_count(self, trick: str) -> int:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT dogs FROM trick_counts WHERE trick = ?", (trick,))
            row = cursor.fetchone()
        return 0 if row is None else int(row["dogs"])


@functools.cache
def postgres_trick_counts() -> type[TrickCounts]:
    """The PostgreSQL view (made on demand: psycopg is an optional dependency)."""
    from psycopg.sql import SQL, Identifier

    from eventsourcing.postgres import PostgresTrackingRecorder

    class PostgresTrickCounts(PostgresTrackingRecorder, TrickCounts):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            table = SQL("{}.{}").format(
                Identifier(self.datastore.schema), Identifier("trick_counts")
            )
            self.sql_create_statements.append(
                SQL("CREATE TABLE IF NOT EXISTS {} (trick text PRIMARY KEY, dogs integer)").format(
                    table
                )
            )
            self._add = SQL(
                "INSERT INTO {0} AS t VALUES (%s, %s) "
                "ON CONFLICT (trick) DO UPDATE SET dogs = t.dogs + EXCLUDED.dogs"
            ).format(table)
            self._select = SQL("SELECT dogs FROM {} WHERE trick = %s").format(table)

        def add_tricks(self, tricks: Sequence[str], tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as cursor:
                for trick, dogs in Counter(tricks).items():
                    cursor.execute(query=self._add, params=(trick, dogs), prepare=True)
                self._insert_tracking(cursor, tracking)

        def get_count(self, trick: str) -> int:
            with self.datastore.transaction(commit=False) as cursor:
                cursor.execute(query=self._select, params=(trick,), prepare=True)
                row = cursor.fetchone()
            return 0 if row is None else int(row["dogs"])

    return PostgresTrickCounts


def view_class(persistence_module: str | None) -> type[TrickCounts]:
    """The view of the store that ``PERSISTENCE_MODULE`` names."""
    if persistence_module == "eventsourcing.postgres":
        return postgres_trick_counts()
    if persistence_module == "eventsourcing.sqlite":
        return SQLiteTrickCounts
    return InMemoryTrickCounts


class TrickCountsProjection(Projection[TrickCounts]):
    """Counts each trick added (no other event is even read)."""

    topics = (get_topic(Dog.TrickAdded),)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.add_tricks([domain_event.trick], tracking)

    def process_events(self, batch: Sequence[tuple[Any, Tracking]]) -> None:
        self.view.add_tricks([domain_event.trick for domain_event, _ in batch], batch[-1][1])
