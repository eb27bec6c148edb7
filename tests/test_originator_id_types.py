"""ORIGINATOR_ID_TYPE: string ids on PostgreSQL (a text column) and in memory, UUIDs
by default; an id of the wrong type for a store is a clear error, never a silent miss."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from conftest import postgres_unreachable_reason

from eventsourcing.application import Application
from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    DomainEvent,
    event,
)
from eventsourcing.persistence import (
    InfrastructureFactory,
    OriginatorIDTypeError,
    RecordConflictError,
    StoredEvent,
    Tracking,
    TrackingConflictError,
)
from eventsourcing.popo import POPOApplicationRecorder, POPOProcessRecorder
from eventsourcing.system import ProcessApplication
from eventsourcing.utils import Environment


class Noted(DomainEvent):
    text: str


def noted(originator_id: Any, version: int = 1) -> Noted:
    return Noted(
        originator_id=originator_id,
        originator_version=version,
        timestamp=Noted.create_timestamp(),
        text=f"note {version}",
    )


def stored(originator_id: Any, version: int = 1) -> StoredEvent:
    return StoredEvent(originator_id, version, "module:Topic", b"{}")


@pytest.fixture(params=["popo", "sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "popo":
        yield {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        return
    if request.param == "sqlite":
        yield {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "ids.db"),
        }
        return
    reason = postgres_unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    postgres_env = request.getfixturevalue("postgres_env")
    yield dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres")


def factory(env: dict[str, str], **settings: str) -> InfrastructureFactory:
    return InfrastructureFactory.construct(Environment("Notes", dict(env, **settings)))


def test_text_ids_are_stored_and_read_back_as_strings(store_env: dict[str, str]) -> None:
    made = factory(store_env, ORIGINATOR_ID_TYPE="text")
    events = made.event_store()
    first, second = noted("note-1"), noted("note-1", 2)
    others = [noted(f"bulk-{n}") for n in range(20)]  # (more than one statement's rows)
    events.put([first, second])
    events.put(others)
    assert list(events.get("note-1")) == [first, second]
    assert list(events.get("note-1", gt=1)) == [second]
    notifications = events.recorder.select_notifications(1, 100)  # type: ignore[attr-defined]
    assert [n.originator_id for n in notifications] == ["note-1", "note-1"] + [
        f"bulk-{n}" for n in range(20)
    ]
    with pytest.raises(RecordConflictError):
        events.put([noted("note-1", 2)])
    made.close()


def test_a_text_process_recorder_tracks_and_refuses_duplicates(store_env: dict[str, str]) -> None:
    made = factory(store_env, ORIGINATOR_ID_TYPE="text")
    recorder = made.process_recorder()
    ids = recorder.insert_events([stored("a"), stored("b")], tracking=Tracking("Up", 1))
    assert list(ids or []) == [1, 2]
    with pytest.raises(RecordConflictError):
        recorder.insert_events([stored("c"), stored("a")], tracking=Tracking("Up", 2))
    with pytest.raises(TrackingConflictError):
        recorder.insert_events([stored("c")], tracking=Tracking("Up", 1))
    assert recorder.max_tracking_id("Up") == 1
    assert [e.originator_id for e in recorder.select_events("a")] == ["a"]
    made.close()


def test_uuid_ids_are_the_default(store_env: dict[str, str]) -> None:
    made = factory(store_env)
    events = made.event_store()
    event = noted(uuid4())
    events.put([event])
    assert list(events.get(event.originator_id)) == [event]
    made.close()


def test_an_id_of_the_wrong_type_is_a_clear_error(store_env: dict[str, str]) -> None:
    uuid_store = factory(store_env, ORIGINATOR_ID_TYPE="uuid")
    recorder = uuid_store.application_recorder()
    with pytest.raises(OriginatorIDTypeError, match="'note-1' is a str.*UUID ids"):
        recorder.insert_events([stored("note-1")])
    with pytest.raises(OriginatorIDTypeError, match="'note-1' is a str.*UUID ids"):
        recorder.select_events("note-1")
    known = uuid4()
    recorder.insert_events([stored(known)])
    with pytest.raises(OriginatorIDTypeError, match="not its string form"):
        recorder.insert_events([stored(str(known), 2)])
    with pytest.raises(TypeError):  # (OriginatorIDTypeError is one)
        recorder.insert_events([stored(uuid4()), stored("note-2")])
    assert recorder.max_notification_id() == 1
    uuid_store.close()

    text_store = factory(store_env, ORIGINATOR_ID_TYPE="TEXT")
    recorder = text_store.application_recorder()
    with pytest.raises(OriginatorIDTypeError, match="is a UUID.*str ids.*text"):
        recorder.insert_events([stored(uuid4())])
    with pytest.raises(OriginatorIDTypeError, match="is a UUID"):
        recorder.select_events(uuid4())
    text_store.close()


def test_a_bad_originator_id_type_is_named(store_env: dict[str, str]) -> None:
    with pytest.raises(OSError, match="ORIGINATOR_ID_TYPE must be one of uuid, text, not 'int'"):
        factory(store_env, ORIGINATOR_ID_TYPE="int").application_recorder()


def test_in_memory_recorders_without_a_type_keep_either_and_find_either_form() -> None:
    recorder = POPOApplicationRecorder()
    known = uuid4()
    recorder.insert_events([stored(known), stored("note-1")])
    assert [e.originator_id for e in recorder.select_events(known)] == [known]
    assert [e.originator_id for e in recorder.select_events("note-1")] == ["note-1"]
    assert recorder.select_events(uuid4()) == []
    assert recorder.select_events("other") == []
    # A UUID and its string form select the same events (as kept), either way round.
    assert [e.originator_id for e in recorder.select_events(str(known))] == [known]
    assert [e.originator_id for e in recorder.select_events(known.hex)] == [known]
    text_uuid = str(uuid4())
    recorder.insert_events([stored(text_uuid)])
    assert [e.originator_id for e in recorder.select_events(UUID(text_uuid))] == [text_uuid]
    with pytest.raises(OriginatorIDTypeError, match="is a str"):
        POPOProcessRecorder(originator_id_type=UUID).insert_events(
            [stored("x")], tracking=Tracking("Up", 1)
        )


def test_a_uuids_string_form_selects_its_events_where_ids_are_uuids(
    store_env: dict[str, str],
) -> None:
    """As the 9.x stores let it (in memory and on PostgreSQL): an id taken from a URL
    or a message, as text, finds the aggregate's events; they carry the UUID."""
    made = factory(store_env)
    events = made.event_store()
    known = uuid4()
    first, second = noted(known), noted(known, 2)
    events.put([first, second])
    for form in (str(known), known.hex, str(known).upper(), f"urn:uuid:{known}"):
        assert list(events.get(form)) == [first, second], form
        assert list(events.get(form, gt=1)) == [second], form
        selected = events.recorder.select_events(form, desc=True, limit=1)
        assert [(s.originator_id, s.originator_version) for s in selected] == [(known, 2)]
    assert list(events.get(str(uuid4()))) == []
    processes, processed = made.process_recorder(), uuid4()
    processes.insert_events([stored(processed)], tracking=Tracking("Up", 1))
    assert [s.originator_id for s in processes.select_events(str(processed))] == [processed]
    made.close()


class Shelf(BaseAggregate[str]):
    @dataclass(frozen=True)
    class Event(CanMutateAggregate[str]):
        originator_id: str
        originator_version: int
        timestamp: datetime

    @dataclass(frozen=True)
    class Put(Event, CanInitAggregate[str]):
        originator_topic: str
        label: str

    @staticmethod
    def create_id(label: str) -> str:
        return f"shelf-{label}"

    @event(Put)
    def __init__(self, label: str) -> None:
        self.label = label


@pytest.mark.parametrize("cls", [Application, ProcessApplication])
def test_every_kind_of_application_gets_aggregates_by_text_ids(
    store_env: dict[str, str], cls: type[Application[Any]]
) -> None:
    app = cls(env=dict(store_env, ORIGINATOR_ID_TYPE="text"))
    app.save(Shelf("top"))
    assert app.repository.get("shelf-top").label == "top"
    assert "shelf-top" in app.repository
    app.close()
