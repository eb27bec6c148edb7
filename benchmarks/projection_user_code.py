"""The user code of benchmarks/projections.py: the same under both libraries (only
the documented projection API), at module level so that topics resolve in every
process."""

from __future__ import annotations

from typing import Any

from psycopg.sql import SQL, Identifier

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder


class Meter(Aggregate):
    @event("Started")
    def __init__(self) -> None:
        self.ticks = 0

    @event("Ticked")
    def tick(self) -> None:
        self.ticks += 1


class Meters(Application):
    pass


class POPOCounts(POPOTrackingRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts: dict[str, int] = {}

    def count(self, names: list[str], tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            for name in names:
                self.counts[name] = self.counts.get(name, 0) + 1
            self._insert_tracking(tracking)


class SQLiteCounts(SQLiteTrackingRecorder):
    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append("CREATE TABLE IF NOT EXISTS counts (name TEXT PRIMARY KEY, n INTEGER)")
        return statements

    def count(self, names: list[str], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:
            for name in names:
                c.execute(
                    "INSERT INTO counts VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET n = n + 1",
                    (name,),
                )
            self._insert_tracking(c, tracking)


class PostgresCounts(PostgresTrackingRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table = (Identifier(self.datastore.schema), Identifier("counts"))
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {0}.{1} (name text PRIMARY KEY, n int)").format(*table)
        )
        self.increment = SQL(
            "INSERT INTO {0}.{1} VALUES (%s, 1) ON CONFLICT (name) DO UPDATE SET n = {1}.n + 1"
        ).format(*table)

    def count(self, names: list[str], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for name in names:
                curs.execute(query=self.increment, params=(name,), prepare=True)
            self._insert_tracking(curs, tracking)


class CountView(Projection[Any]):
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.count([type(domain_event).__name__], tracking)


class BatchedCountView(CountView):
    name = "CountView"

    def process_events(self, batch: list[tuple[Any, Tracking]]) -> None:
        self.view.count([type(e).__name__ for e, _ in batch], batch[-1][1])


VIEWS = {"popo": POPOCounts, "sqlite": SQLiteCounts, "postgres": PostgresCounts}
