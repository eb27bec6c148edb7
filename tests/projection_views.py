"""A trick-counting view on every store, written as users write views (shared by
the projection tests and the crash worker they start)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from psycopg.sql import SQL, Identifier

from eventsourcing.application import Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import get_topic


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/dogs/{name}")

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class DogSchool(Application):
    def register_dog(self, name: str) -> int:
        self.save(Dog(name))
        return self.recorder.max_notification_id() or 0

    def add_trick(self, name: str, trick: str) -> int:
        dog: Dog = self.repository.get(Dog.create_id(name))
        dog.add_trick(trick)
        recordings = self.save(dog)
        return recordings[-1].notification.id


class TrickCounts(TrackingRecorder, ABC):
    def count_trick(self, trick: str, tracking: Tracking) -> None:
        self.count_tricks([trick], tracking)

    def _before_commit(self) -> None:
        """Called in a command's transaction, after its tracking record (where the
        slow views dwell)."""

    @abstractmethod
    def count_tricks(self, tricks: Sequence[str], tracking: Tracking) -> None:
        """Count many tricks, recording only the last tracking record (a batch)."""

    @abstractmethod
    def get_count(self, trick: str) -> int: ...


class POPOTrickCounts(POPOTrackingRecorder, TrickCounts):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counts: dict[str, int] = defaultdict(int)

    def count_tricks(self, tricks: Sequence[str], tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            for trick in tricks:
                self._counts[trick] += 1
            self._insert_tracking(tracking)

    def get_count(self, trick: str) -> int:
        with self._database_lock:
            return self._counts[trick]


class SQLiteTrickCounts(SQLiteTrackingRecorder, TrickCounts):
    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            "CREATE TABLE IF NOT EXISTS trick_counts (trick TEXT PRIMARY KEY, count INTEGER)"
        )
        return statements

    def count_tricks(self, tricks: Sequence[str], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            for trick in tricks:
                cursor.execute(
                    "INSERT INTO trick_counts VALUES (?, 1) "
                    "ON CONFLICT (trick) DO UPDATE SET count = count + 1",
                    (trick,),
                )
            self._insert_tracking(cursor, tracking)
            self._before_commit()

    def get_count(self, trick: str) -> int:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT count FROM trick_counts WHERE trick = ?", (trick,))
            row = cursor.fetchone()
        return 0 if row is None else int(row["count"])


class PostgresTrickCounts(PostgresTrackingRecorder, TrickCounts):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts_table_name = "trick_counts"
        self.check_identifier_length(self.counts_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.{1} (trick text PRIMARY KEY, count integer)"
            ).format(Identifier(self.datastore.schema), Identifier(self.counts_table_name))
        )
        self._increment = SQL(
            "INSERT INTO {0}.{1} VALUES (%s, 1) "
            "ON CONFLICT (trick) DO UPDATE SET count = {1}.count + 1"
        ).format(Identifier(self.datastore.schema), Identifier(self.counts_table_name))
        self._select = SQL("SELECT count FROM {0}.{1} WHERE trick = %s").format(
            Identifier(self.datastore.schema), Identifier(self.counts_table_name)
        )

    def count_tricks(self, tricks: Sequence[str], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for trick in tricks:
                curs.execute(query=self._increment, params=(trick,), prepare=True)
            self._insert_tracking(curs, tracking)
            self._before_commit()

    def get_count(self, trick: str) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query=self._select, params=(trick,), prepare=True)
            row = curs.fetchone()
        return 0 if row is None else int(row["count"])


VIEWS: dict[str, type[TrickCounts]] = {
    "eventsourcing.popo": POPOTrickCounts,
    "eventsourcing.sqlite": SQLiteTrickCounts,
    "eventsourcing.postgres": PostgresTrickCounts,
}


class CountProjection(Projection[TrickCounts]):
    """One event at a time (as the documented projections are written)."""

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def trick_added(self, domain_event: Dog.TrickAdded, tracking: Tracking) -> None:
        self.view.count_trick(domain_event.trick, tracking)


class BatchCountProjection(Projection[TrickCounts]):
    """Only TrickAdded events, in batches: one transaction per batch."""

    topics = (get_topic(Dog.TrickAdded),)
    batch_sizes: list[int] = []

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.count_trick(domain_event.trick, tracking)

    def process_events(self, batch: Sequence[tuple[Any, Tracking]]) -> None:
        type(self).batch_sizes.append(len(batch))
        self.view.count_tricks([e.trick for e, _ in batch], batch[-1][1])


# Views that dwell in their transaction after recording the position: a process
# killed then must lose the whole command (a view whose tracking record committed
# on its own would keep the position and lose the counts).


class SlowSQLiteTrickCounts(SQLiteTrickCounts):
    def _before_commit(self) -> None:
        time.sleep(0.01)


class SlowPostgresTrickCounts(PostgresTrickCounts):
    def _before_commit(self) -> None:
        time.sleep(0.01)


def dog_school_runner(
    env: dict[str, str],
    view_class: type[TrickCounts],
    projection_class: type[Projection[TrickCounts]] = CountProjection,
) -> ProjectionRunner[DogSchool, TrickCounts]:
    """A runner of ``projection_class`` over a ``DogSchool``, into ``view_class``."""
    return ProjectionRunner(
        application_class=DogSchool,
        projection_class=projection_class,
        view_class=view_class,
        env=env,
    )


SLOW_VIEWS: dict[str, type[TrickCounts]] = {
    "eventsourcing.sqlite": SlowSQLiteTrickCounts,
    "eventsourcing.postgres": SlowPostgresTrickCounts,
}
