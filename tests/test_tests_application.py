"""The application test cases of ``eventsourcing.tests``, subclassed for every store
as an extension project subclasses them, and shown to catch a broken store."""

from __future__ import annotations

import unittest
from typing import Any

from store_environ import POPOEnviron, PostgresEnviron, SQLiteEnviron

from eventsourcing.popo import POPOAggregateRecorder, POPOFactory
from eventsourcing.tests import application as cases

# (The module, not its classes: pytest would collect the bases as tests too.)


class TestApplicationWithPOPO(POPOEnviron, cases.ApplicationTestCase):
    pass


class TestExampleApplicationWithPOPO(POPOEnviron, cases.ExampleApplicationTestCase):
    expected_factory_topic = "eventsourcing.popo:POPOFactory"


class TestApplicationWithSQLite(SQLiteEnviron, cases.ApplicationTestCase):
    pass


class TestExampleApplicationWithSQLite(SQLiteEnviron, cases.ExampleApplicationTestCase):
    expected_factory_topic = "eventsourcing.sqlite:SQLiteFactory"


class TestApplicationWithPostgres(PostgresEnviron, cases.ApplicationTestCase):
    pass


class TestExampleApplicationWithPostgres(PostgresEnviron, cases.ExampleApplicationTestCase):
    expected_factory_topic = "eventsourcing.postgres:PostgresFactory"


# A broken store: its snapshot store forgets every snapshot.


class ForgetfulSnapshotRecorder(POPOAggregateRecorder):
    def insert_events(self, stored_events: Any, **kwargs: Any) -> Any:
        return None


class ForgetfulFactory(POPOFactory):
    def aggregate_recorder(self, purpose: str = "events") -> Any:
        if purpose == "snapshots":
            return ForgetfulSnapshotRecorder()
        return super().aggregate_recorder(purpose)


class Factory(ForgetfulFactory):  # (the module's factory, by that name)
    pass


def test_example_application_test_case_fails_on_a_store_that_loses_snapshots() -> None:
    class ExampleOnForgetfulStore(POPOEnviron, cases.ExampleApplicationTestCase):
        expected_factory_topic = f"{__name__}:Factory"

        def store_environ(self) -> dict[str, str]:
            return {"PERSISTENCE_MODULE": f"{__name__}:Factory"}

    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(ExampleOnForgetfulStore).run(result)
    assert result.testsRun == 1
    assert len(result.failures) == 1, result.errors
    assert "[]" in result.failures[0][1]  # (no snapshots found)


def test_application_test_case_catches_a_log_that_does_not_warn(monkeypatch: Any) -> None:
    from eventsourcing.application import Application

    monkeypatch.setattr(Application, "log", property(lambda app: app.notification_log))
    result = unittest.TestResult()
    TestApplicationWithPOPO("test_application_log").run(result)
    assert len(result.failures) == 1, result.errors
