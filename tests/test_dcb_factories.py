"""Which factories build DCB recorders, chosen by PERSISTENCE_MODULE."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventsourcing.dcb._common import DCBInfrastructureFactory, Listeners
from eventsourcing.dcb.api import DCBEvent
from eventsourcing.dcb.popo import InMemoryDCBFactory, InMemoryDCBRecorder
from eventsourcing.dcb.sqlite import SQLiteDCBRecorder
from eventsourcing.dcb.tests import EnsureSubscriptionBlockAndReceive
from eventsourcing.persistence import InfrastructureFactory, NotSupportedError, ProgrammingError
from eventsourcing.popo import POPOFactory
from eventsourcing.sqlite import SQLiteDatastore
from eventsourcing.utils import Environment, TopicError


class NoDCBFactory(POPOFactory):
    """A store's factory that has no DCB recorder."""


NoDCBFactory.dcb_recorder = InfrastructureFactory.dcb_recorder  # type: ignore[method-assign,assignment]


@pytest.mark.parametrize(
    ("module", "factory_class"),
    [
        ("eventsourcing.dcb.popo", InMemoryDCBFactory),
        ("eventsourcing.popo", POPOFactory),
        ("", POPOFactory),
    ],
)
def test_in_memory_factories_build_in_memory_dcb_recorders(
    module: str, factory_class: type[InfrastructureFactory]
) -> None:
    env = Environment("", {"PERSISTENCE_MODULE": module} if module else {})
    factory = DCBInfrastructureFactory.construct(env)
    assert type(factory) is factory_class
    recorder = factory.dcb_recorder()
    assert isinstance(recorder, InMemoryDCBRecorder)
    assert recorder.append([DCBEvent("T", b"", [])]) == 1
    assert factory.dcb_recorder().read().head is None  # a new recorder each time


def test_a_factory_without_dcb_recorder_is_refused() -> None:
    with pytest.raises(NotSupportedError, match="NoDCBFactory cannot build a DCB recorder"):
        NoDCBFactory(Environment()).dcb_recorder()
    env = Environment("", {"PERSISTENCE_MODULE": f"{__name__}:NoDCBFactory"})
    with pytest.raises(TopicError, match="NoDCBFactory .* cannot build a DCB recorder"):
        DCBInfrastructureFactory.construct(env)


@pytest.fixture
def durable_env(persistence_env: dict[str, str]) -> dict[str, str]:
    if persistence_env["PERSISTENCE_MODULE"] == "eventsourcing.popo":
        pytest.skip("in memory: nothing is shared between factories")
    return persistence_env


def _factory(env: dict[str, str], name: str = "", **more: str) -> InfrastructureFactory:
    return DCBInfrastructureFactory.construct(Environment(name, dict(env, **more)))


def test_durable_stores_keep_dcb_events_in_tables_named_after_the_application(
    durable_env: dict[str, str],
) -> None:
    first, second, other = (
        _factory(durable_env),
        _factory(durable_env),
        _factory(durable_env, "Courses"),
    )
    try:
        first.dcb_recorder().append([DCBEvent("T", b"one", ["a"])])
        # Another factory on the same database reads them; another application does not.
        assert [e.event.data for e in second.dcb_recorder().read()] == [b"one"]
        courses = other.dcb_recorder()
        assert getattr(courses, "events_table_name") == "courses_dcb_events"  # noqa: B009
        assert list(courses.read()) == []
        courses.append([DCBEvent("T", b"two", ["a"])])
        assert [e.event.data for e in first.dcb_recorder().read()] == [b"one"]
    finally:
        for factory in (first, second, other):
            factory.close()


def test_create_table_false_leaves_the_tables_to_be_made(durable_env: dict[str, str]) -> None:
    factory = _factory(durable_env, CREATE_TABLE="false")
    try:
        recorder = factory.dcb_recorder()
        with pytest.raises(ProgrammingError, match="create the table"):
            recorder.read()
        with pytest.raises(ProgrammingError, match="create the table"):
            recorder.append([DCBEvent("T", b"", [])])
        getattr(recorder, "create_table")()  # noqa: B009
        assert recorder.append([DCBEvent("T", b"", [])]) == 1
    finally:
        factory.close()


def test_a_subscription_is_woken_by_another_recorder_of_the_same_database(
    durable_env: dict[str, str],
) -> None:
    reader, writer = _factory(durable_env), _factory(durable_env)
    try:
        with reader.dcb_recorder().subscribe() as subscription:
            waiting = EnsureSubscriptionBlockAndReceive(subscription)
            waiting.has_blocked.wait()
            writer.dcb_recorder().append([DCBEvent("T", b"news", ["a"])])
            assert waiting.has_received.wait(timeout=10)
            assert waiting.received_event is not None
            assert waiting.received_event.event.data == b"news"
    finally:
        reader.close()
        writer.close()


def test_an_sqlite_subscription_finds_appends_of_other_processes_by_polling(
    tmp_path: Path,
) -> None:
    datastore = SQLiteDatastore(str(tmp_path / "dcb.sqlite"))
    reader = SQLiteDCBRecorder(datastore)
    reader.create_table()
    # A recorder as another process has it: its appends wake nobody here.
    elsewhere = SQLiteDCBRecorder(SQLiteDatastore(str(tmp_path / "dcb.sqlite")))
    elsewhere.listeners = Listeners()
    with reader.subscribe() as subscription:
        waiting = EnsureSubscriptionBlockAndReceive(subscription)
        waiting.has_blocked.wait()
        elsewhere.append([DCBEvent("T", b"from afar", [])])
        assert waiting.has_received.wait(timeout=10)
        assert waiting.received_event is not None
        assert waiting.received_event.event.data == b"from afar"


def test_construct_takes_a_plain_mapping_of_settings(tmp_path: Path) -> None:
    settings = {
        "PERSISTENCE_MODULE": "eventsourcing.dcb.sqlite",
        "SQLITE_DBNAME": str(tmp_path / "dcb.sqlite"),
    }
    factory = DCBInfrastructureFactory.construct(settings)
    try:
        recorder = factory.dcb_recorder()
        assert isinstance(recorder, SQLiteDCBRecorder)
        assert recorder.append([DCBEvent("T", b"", [])]) == 1
    finally:
        factory.close()
