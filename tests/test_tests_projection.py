"""The projection test cases of ``eventsourcing.tests``, subclassed for every store
with event-counter views written as an extension project writes them, and shown to
catch a broken view."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from typing import Any

from conftest import postgres_datastore
from psycopg.sql import SQL, Identifier
from store_environ import PostgresEnviron, StoreEnviron

from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from eventsourcing.tests import projection as cases

# (The module, not its classes: pytest would collect the bases as tests too.)

MSGPACK_MAPPER = "eventsourcing.dcb.msgpack:MessagePackMapper"

# -- the views ------------------------------------------------------------------------


class POPOEventCounters(POPOTrackingRecorder, cases.EventCountersView):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counts = {"created": 0, "subsequent": 0}

    def get_created_event_counter(self) -> int:
        return self._counts["created"]

    def get_subsequent_event_counter(self) -> int:
        return self._counts["subsequent"]

    def incr_created_event_counter(self, tracking: Tracking) -> None:
        self._increment("created", tracking)

    def incr_subsequent_event_counter(self, tracking: Tracking) -> None:
        self._increment("subsequent", tracking)

    def _increment(self, counter: str, tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            self._counts[counter] += 1
            self._insert_tracking(tracking)


class SQLiteEventCounters(SQLiteTrackingRecorder, cases.EventCountersView):
    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS event_counters (name TEXT PRIMARY KEY, count INTEGER)",
        ]

    def get_created_event_counter(self) -> int:
        return self._get("created")

    def get_subsequent_event_counter(self) -> int:
        return self._get("subsequent")

    def incr_created_event_counter(self, tracking: Tracking) -> None:
        self._increment("created", tracking)

    def incr_subsequent_event_counter(self, tracking: Tracking) -> None:
        self._increment("subsequent", tracking)

    def _get(self, name: str) -> int:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT count FROM event_counters WHERE name = ?", (name,))
            row = cursor.fetchone()
        return 0 if row is None else int(row["count"])

    def _increment(self, name: str, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                "INSERT INTO event_counters VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET count = count + 1",
                (name,),
            )
            self._insert_tracking(cursor, tracking)


class PostgresEventCounters(PostgresTrackingRecorder, cases.EventCountersView):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema), Identifier("event_counters")
        )
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {0} (name text PRIMARY KEY, count bigint)").format(
                table
            )
        )
        self._select = SQL("SELECT count FROM {0} WHERE name = %s").format(table)
        self._increment_statement = SQL(
            "INSERT INTO {0} AS c VALUES (%s, 1) "
            "ON CONFLICT (name) DO UPDATE SET count = c.count + 1"
        ).format(table)

    def get_created_event_counter(self) -> int:
        return self._get("created")

    def get_subsequent_event_counter(self) -> int:
        return self._get("subsequent")

    def incr_created_event_counter(self, tracking: Tracking) -> None:
        self._increment("created", tracking)

    def incr_subsequent_event_counter(self, tracking: Tracking) -> None:
        self._increment("subsequent", tracking)

    def _get(self, name: str) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._select, (name,))
            row = curs.fetchone()
        return 0 if row is None else int(row["count"])

    def _increment(self, name: str, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._increment_statement, (name,))
            self._insert_tracking(curs, tracking)


# -- each store: its view and its settings ---------------------------------------------


class POPOViews(StoreEnviron):
    view_class: type[cases.EventCountersView] = POPOEventCounters

    def setUp(self) -> None:
        super().setUp()
        self.env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}

    def construct_event_counters_view(self) -> cases.EventCountersView:
        return POPOEventCounters()


class SQLiteViews(StoreEnviron):
    view_class: type[cases.EventCountersView] = SQLiteEventCounters

    def setUp(self) -> None:
        super().setUp()
        directory = tempfile.mkdtemp(prefix="es-testcases-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.db_path = os.path.join(directory, "views.sqlite")
        self.env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": self.db_path,
        }

    def construct_event_counters_view(self) -> cases.EventCountersView:
        view = SQLiteEventCounters(SQLiteDatastore(self.db_path))
        view.create_table()
        return view


class PostgresViews(PostgresEnviron):
    view_class: type[cases.EventCountersView] = PostgresEventCounters

    def setUp(self) -> None:
        super().setUp()  # (a fresh database, its settings in os.environ)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key.startswith("POSTGRES_") or key == "PERSISTENCE_MODULE"
        }

    def construct_event_counters_view(self) -> cases.EventCountersView:
        settings = {
            "dbname": self.env["POSTGRES_DBNAME"],
            "host": self.env["POSTGRES_HOST"],
            "port": self.env["POSTGRES_PORT"],
            "user": self.env["POSTGRES_USER"],
            "password": self.env["POSTGRES_PASSWORD"],
        }
        datastore = postgres_datastore(settings)
        self.addCleanup(datastore.close)
        view = PostgresEventCounters(datastore)
        view.create_table()
        return view


class MsgpackMapper(unittest.TestCase):
    """Adds the mapper of decisions a DCB application needs to a store's settings."""

    env: dict[str, str]

    def setUp(self) -> None:
        super().setUp()
        self.env = dict(self.env, MAPPER_TOPIC=MSGPACK_MAPPER)


# -- the test cases, on each store ---------------------------------------------------


class TestEventCountersViewWithPOPO(POPOViews, cases.EventCountersViewTestCase):
    pass


class TestEventCountersViewWithSQLite(SQLiteViews, cases.EventCountersViewTestCase):
    pass


class TestEventCountersViewWithPostgres(PostgresViews, cases.EventCountersViewTestCase):
    pass


class TestAggregateProjectionWithPOPO(POPOViews, cases.AggregateEventCountersProjectionTestCase):
    pass


class TestAggregateProjectionWithSQLite(
    SQLiteViews, cases.AggregateEventCountersProjectionTestCase
):
    pass


class TestAggregateProjectionWithPostgres(
    PostgresViews, cases.AggregateEventCountersProjectionTestCase
):
    pass


class TestDecisionProjectionWithPOPO(
    MsgpackMapper, POPOViews, cases.TaggedDecisionCountersProjectionTestCase
):
    pass


class TestDecisionProjectionWithSQLite(
    MsgpackMapper, SQLiteViews, cases.TaggedDecisionCountersProjectionTestCase
):
    pass


class TestDecisionProjectionWithPostgres(
    MsgpackMapper, PostgresViews, cases.TaggedDecisionCountersProjectionTestCase
):
    pass


class TestEventSourcedProjectionWithPOPO(POPOViews, cases.EventSourcedProjectionTestCase):
    pass


class TestEventSourcedProjectionWithSQLite(SQLiteViews, cases.EventSourcedProjectionTestCase):
    pass


class TestEventSourcedProjectionWithPostgres(PostgresViews, cases.EventSourcedProjectionTestCase):
    pass


# -- broken views are caught -----------------------------------------------------------


class CountsBeforeCheckingPOPOView(POPOEventCounters):
    """Counts a position processed before (then refuses it): not atomic."""

    def _increment(self, counter: str, tracking: Tracking) -> None:
        with self._database_lock:
            self._counts[counter] += 1
            self._assert_tracking_uniqueness(tracking)
            self._insert_tracking(tracking)


class ForgetsPositionsPOPOView(POPOEventCounters):
    """Counts, and records no position: waiting for one never returns."""

    def _increment(self, counter: str, tracking: Tracking) -> None:
        self._counts[counter] += 1


def _run(case: type[unittest.TestCase]) -> unittest.TestResult:
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
    return result


def test_view_test_case_catches_a_view_that_counts_refused_positions() -> None:
    class Broken(POPOViews, cases.EventCountersViewTestCase):
        def construct_event_counters_view(self) -> cases.EventCountersView:
            return CountsBeforeCheckingPOPOView()

    result = _run(Broken)
    assert (result.testsRun, len(result.failures), result.errors) == (1, 1, [])
    assert "(2, 3)" in result.failures[0][1]  # (counted both refused positions)


def test_projection_test_case_catches_a_view_that_records_no_positions() -> None:
    class Broken(POPOViews, cases.AggregateEventCountersProjectionTestCase):
        view_class = ForgetsPositionsPOPOView

    result = _run(Broken)
    assert result.testsRun == 2
    failed = sorted(test.id().rsplit(".", 1)[-1] for test, _ in result.errors + result.failures)
    assert failed == ["test_event_counters_projection"]  # (its wait timed out)


def test_event_counters_interface_is_the_older_deprecated_name() -> None:
    import pytest

    with pytest.warns(DeprecationWarning, match="EventCountersView"):

        class OldStyle(POPOEventCounters, cases.EventCountersInterface):
            pass

    assert issubclass(OldStyle, cases.EventCountersView)
