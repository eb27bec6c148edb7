"""ORIGINATOR_ID_TYPE on SQLite: ``uuid`` (the default) or ``text``; an id of the
wrong type for the store is refused with an error naming it, its type and the table."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from eventsourcing.persistence import (
    DataError,
    RecordConflictError,
    StoredEvent,
    Tracking,
)
from eventsourcing.sqlite import Factory, OriginatorIDTypeError, SQLiteDatastore
from eventsourcing.utils import Environment


def stored(originator_id: object, version: int) -> StoredEvent:
    return StoredEvent(originator_id, version, "topic:A", b"{}")  # type: ignore[arg-type]


@pytest.fixture
def text_factory(tmp_path: Path) -> Iterator[Factory]:
    env = {"SQLITE_DBNAME": str(tmp_path / "text.db"), "ORIGINATOR_ID_TYPE": "text"}
    factory = Factory(Environment("Pages", env))
    yield factory
    factory.close()


@pytest.fixture
def uuid_factory(tmp_path: Path) -> Iterator[Factory]:
    factory = Factory(Environment("Dogs", {"SQLITE_DBNAME": str(tmp_path / "uuid.db")}))
    yield factory
    factory.close()


def test_string_ids_are_stored_and_read_back_as_strings(text_factory: Factory) -> None:
    recorder = text_factory.application_recorder()
    ids = recorder.insert_events([stored("page-home", 1), stored("page-about", 1)])
    assert ids == [1, 2]
    recorder.insert_events([stored("page-home", 2)])
    assert recorder.select_events("page-home") == [stored("page-home", 1), stored("page-home", 2)]  # type: ignore[arg-type]
    assert recorder.select_events("page-home", gt=1) == [stored("page-home", 2)]  # type: ignore[arg-type]
    notifications = recorder.select_notifications(1, 10)
    assert [(n.id, n.originator_id) for n in notifications] == [
        (1, "page-home"),
        (2, "page-about"),
        (3, "page-home"),
    ]
    assert all(type(n.originator_id) is str for n in notifications)


def test_string_ids_in_snapshots_and_with_tracking(text_factory: Factory) -> None:
    snapshots = text_factory.aggregate_recorder("snapshots")
    snapshots.insert_events([stored("page-home", 3)])
    assert snapshots.select_events("page-home", desc=True, limit=1) == [stored("page-home", 3)]  # type: ignore[arg-type]
    recorder = text_factory.process_recorder()
    recorder.insert_events([stored("count-sit", 1)], tracking=Tracking("Pages", 7))
    assert recorder.max_tracking_id("Pages") == 7
    assert recorder.select_notifications(1, 1)[0].originator_id == "count-sit"


def test_a_string_id_conflict_is_named(text_factory: Factory) -> None:
    recorder = text_factory.application_recorder()
    recorder.insert_events([stored("page-home", 1)])
    with pytest.raises(RecordConflictError, match="originator page-home at version 1"):
        recorder.insert_events([stored("page-new", 1), stored("page-home", 1)])
    assert recorder.max_notification_id() == 1


def test_a_uuid_in_a_text_store_is_an_error_naming_it(text_factory: Factory) -> None:
    recorder = text_factory.process_recorder()
    dog_id = uuid4()
    message = (
        re.escape(f"{dog_id!r} is a UUID, but table 'pages_events' keeps str ids (") + ".*=text"
    )
    with pytest.raises(OriginatorIDTypeError, match=message):
        recorder.insert_events([stored("page-home", 1), stored(dog_id, 1)])
    with pytest.raises(OriginatorIDTypeError, match=message):
        recorder.insert_events([stored(dog_id, 1)], tracking=Tracking("Up", 1))
    with pytest.raises(OriginatorIDTypeError, match=message):
        recorder.select_events(dog_id)
    assert recorder.max_notification_id() is None


def test_uuid_stays_the_default(uuid_factory: Factory, tmp_path: Path) -> None:
    assert uuid_factory.datastore.originator_id_type == "uuid"
    recorder = uuid_factory.application_recorder()
    dog_id = uuid4()
    recorder.insert_events([stored(dog_id, 1)])
    assert recorder.select_notifications(1, 1)[0].originator_id == dog_id
    with sqlite3.connect(tmp_path / "uuid.db") as conn:
        (kept,) = conn.execute("SELECT originator_id FROM dogs_events").fetchone()
    assert kept == dog_id.bytes


@pytest.mark.parametrize("events", [1, 3])
def test_a_string_id_in_a_uuid_store_is_an_error_naming_it(
    uuid_factory: Factory, events: int
) -> None:
    recorder = uuid_factory.process_recorder()
    batch = [stored(uuid4(), 1) for _ in range(events - 1)] + [stored("dog-fido", 1)]
    message = (
        r"Originator id 'dog-fido' is a str, but table 'dogs_events' keeps UUID ids "
        r"\(ORIGINATOR_ID_TYPE=uuid\) \(give the UUID, not its string form\)"
    )
    with pytest.raises(OriginatorIDTypeError, match=message):
        recorder.insert_events(batch)
    with pytest.raises(OriginatorIDTypeError, match=message):
        recorder.insert_events(batch, tracking=Tracking("Dogs", 1))
    with pytest.raises(OriginatorIDTypeError, match=message):
        recorder.select_events("dog-fido")  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # (it is one, and a PersistenceError)
        recorder.select_events("dog-fido")  # type: ignore[arg-type]
    assert recorder.select_events(str(uuid4())) == []  # (a UUID's string form: selects it)
    assert recorder.max_notification_id() is None
    assert recorder.max_tracking_id("Dogs") is None


def test_an_id_neither_str_nor_uuid_in_a_text_store_is_an_error_naming_it(
    text_factory: Factory,
) -> None:
    recorder = text_factory.application_recorder()
    message = r"Originator id 42 is a int, but table 'pages_events' keeps str ids"
    with pytest.raises(OriginatorIDTypeError, match=message):
        recorder.insert_events([stored(42, 1)])
    with pytest.raises(OriginatorIDTypeError, match=message):
        recorder.select_events(42)  # type: ignore[arg-type]


def test_text_that_is_no_uuid_in_a_uuid_store_is_named_by_its_notification(
    text_factory: Factory, tmp_path: Path
) -> None:
    text_factory.application_recorder().insert_events([stored(str(uuid4()), 1), stored("home", 1)])
    env = {"SQLITE_DBNAME": str(tmp_path / "text.db")}
    as_uuids = Factory(Environment("Pages", env)).application_recorder()
    assert isinstance(as_uuids.select_notifications(1, 1)[0].originator_id, UUID)
    with pytest.raises(DataError, match="Notification 2 in 'pages_events'.*'home' is not a UUID"):
        as_uuids.select_notifications(1, 10)


@pytest.mark.parametrize("value", ["TEXT", "Uuid"])
def test_the_setting_is_read_in_any_case(tmp_path: Path, value: str) -> None:
    env = {"SQLITE_DBNAME": str(tmp_path / "x.db"), "ORIGINATOR_ID_TYPE": value}
    assert Factory(Environment("", env)).datastore.originator_id_type == value.lower()


def test_a_bad_setting_is_named(tmp_path: Path) -> None:
    env = {"SQLITE_DBNAME": str(tmp_path / "x.db"), "ORIGINATOR_ID_TYPE": "int"}
    with pytest.raises(OSError, match="ORIGINATOR_ID_TYPE must be one of uuid, text, not 'int'"):
        Factory(Environment("", env))
    with pytest.raises(ValueError, match="originator_id_type must be one of uuid, text"):
        SQLiteDatastore(":memory:", originator_id_type="bytes")
