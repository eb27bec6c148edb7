"""Extending the SQLite recorders, as the documented 9.x API allows.

A subclass writes rows of its own in the transaction that records the events
(overriding ``_insert_events(cursor, stored_events, **kwargs)``), creates its tables
(overriding ``construct_create_table_statements``) and reads them in a transaction of
the datastore (``datastore.transaction(commit=False)``). The keyword arguments of
``Application.save`` (or of ``processing_event.collect_events``) reach it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from recorder_contract import event

from eventsourcing import sqlite as sqlite_module
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, ProgrammingError, StoredEvent
from eventsourcing.sqlite import (
    Factory,
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteProcessRecorder,
)
from eventsourcing.system import MultiThreadedRunner, SingleThreadedRunner, System
from eventsourcing.utils import TopicError, get_topic
from examples.dogschool import Counter, Counters, Dog, DogSchool


@pytest.fixture
def datastore(tmp_path: Path) -> Iterator[SQLiteDatastore]:
    datastore = SQLiteDatastore(str(tmp_path / "extended.db"))
    yield datastore
    datastore.close()


def test_the_factory_is_exported_by_both_names() -> None:
    assert Factory is SQLiteFactory
    assert {"SQLiteFactory", "SQLiteCursor"} <= set(sqlite_module.__all__)


# ---------------------------------------------------------------------------
# Transactions of the datastore.


def test_a_transaction_commits_and_its_rows_are_read_by_name(datastore: SQLiteDatastore) -> None:
    with datastore.transaction(commit=True) as cursor:
        assert isinstance(cursor, SQLiteCursor)
        cursor.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        cursor.execute("INSERT INTO notes (text) VALUES (?)", ["first"])
        assert cursor.lastrowid == 1
        cursor.executemany("INSERT INTO notes (text) VALUES (:text)", [{"text": "second"}])
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT id, text FROM notes ORDER BY id")
        rows = cursor.fetchall()
        cursor.execute("SELECT COUNT(*) AS n FROM notes")
        count = cursor.fetchone()
    assert [(row["id"], row["text"]) for row in rows] == [(1, "first"), (2, "second")]
    assert tuple(rows[0]) == (1, "first")
    assert count["n"] == count[0] == 2


def test_a_transaction_not_to_commit_is_rolled_back(datastore: SQLiteDatastore) -> None:
    with datastore.transaction(commit=True) as cursor:
        cursor.execute("CREATE TABLE notes (text TEXT)")
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("INSERT INTO notes VALUES ('not kept')")
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT COUNT(*) FROM notes")
        assert cursor.fetchone()[0] == 0


def test_an_error_in_a_transaction_rolls_it_back(datastore: SQLiteDatastore) -> None:
    with datastore.transaction(commit=True) as cursor:
        cursor.execute("CREATE TABLE notes (text TEXT UNIQUE)")
    with pytest.raises(ValueError, match="changed my mind"):
        with datastore.transaction(commit=True) as cursor:
            cursor.execute("INSERT INTO notes VALUES ('a')")
            raise ValueError("changed my mind")
    with pytest.raises(IntegrityError, match="UNIQUE"):
        with datastore.transaction(commit=True) as cursor:
            cursor.execute("INSERT INTO notes VALUES ('b')")
            cursor.execute("INSERT INTO notes VALUES ('b')")
    with pytest.raises(ProgrammingError, match="no such table"):
        with datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT * FROM absent")
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT COUNT(*) FROM notes")
        assert cursor.fetchone()[0] == 0
    # The connection is usable again: nothing was left open.
    with datastore.transaction(commit=True) as cursor:
        cursor.execute("INSERT INTO notes VALUES ('c')")


def test_a_memory_database_is_one_database_for_transactions_and_recorders() -> None:
    datastore = SQLiteDatastore(":memory:")
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    recorder.insert_events([event(uuid4(), 1)])
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT COUNT(*) FROM stored_events")
        assert cursor.fetchone()[0] == 1
    datastore.close()


# ---------------------------------------------------------------------------
# A recorder that keeps a searchable table of pages beside the events.


class SearchablePagesRecorder(SQLiteApplicationRecorder):
    """Pages named in ``save(..., pages=[(page_id, body), ...])`` become searchable;
    ``save(..., fail=True)`` fails after the events and the pages were written."""

    pages_table = "pages"

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {self.pages_table} (page_id TEXT PRIMARY KEY, body TEXT)",
        ]

    def _insert_events(
        self, cursor: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._insert_events(cursor, stored_events, **kwargs)
        for page_id, body in kwargs.get("pages", ()):
            cursor.execute(
                f"INSERT INTO {self.pages_table} (page_id, body) VALUES (?, ?) "
                "ON CONFLICT (page_id) DO UPDATE SET body = excluded.body",
                (str(page_id), body),
            )
        if kwargs.get("fail"):
            raise RuntimeError("the search index refused the page")
        return ids

    def search(self, word: str) -> list[str]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT page_id FROM {self.pages_table} WHERE body LIKE ? ORDER BY page_id",
                (f"%{word}%",),
            )
            return [row["page_id"] for row in cursor.fetchall()]


class SearchableFactory(SQLiteFactory):
    application_recorder_class = SearchablePagesRecorder


def searchable_app(tmp_path: Path) -> Application:
    return Application(
        env={
            "PERSISTENCE_MODULE": get_topic(SearchableFactory),
            "SQLITE_DBNAME": str(tmp_path / "pages.db"),
        }
    )


def test_a_subclass_writes_its_rows_in_the_events_transaction(tmp_path: Path) -> None:
    app = searchable_app(tmp_path)
    recorder = app.recorder
    assert isinstance(recorder, SearchablePagesRecorder)
    first, second = Dog("Fido"), Dog("Rex")
    recordings = app.save(first, second, pages=[(first.id, "a dog that sits")])
    assert [r.notification.id for r in recordings] == [1, 2]
    second.add_trick("sit")
    app.save(second, pages=[(second.id, "another dog that sits and begs")])
    assert recorder.search("sits") == sorted([str(first.id), str(second.id)])
    assert recorder.search("begs") == [str(second.id)]
    assert app.repository.get(second.id).tricks == ["sit"]


def test_a_failing_subclass_records_nothing(tmp_path: Path) -> None:
    app = searchable_app(tmp_path)
    recorder = app.recorder
    assert isinstance(recorder, SearchablePagesRecorder)
    dog = Dog("Fido")
    with pytest.raises(RuntimeError, match="search index refused"):
        app.save(dog, pages=[(dog.id, "a dog")], fail=True)
    assert recorder.search("dog") == []
    assert app.recorder.max_notification_id() is None
    assert app.recorder.select_events(dog.id) == []


class TenantRecorder(SQLiteApplicationRecorder):
    """The events table has an extra column, filled from ``save(..., tenant=...)``."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.events_table_name} ("
            "notification_id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "originator_id BLOB NOT NULL, originator_version INTEGER NOT NULL, "
            "topic TEXT NOT NULL, state BLOB NOT NULL, tenant TEXT, "
            "UNIQUE (originator_id, originator_version))"
        ]

    def _insert_events(
        self, cursor: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = list(super()._insert_events(cursor, stored_events, **kwargs) or [])
        cursor.executemany(
            f"UPDATE {self.events_table_name} SET tenant = ? WHERE notification_id = ?",
            [(kwargs.get("tenant"), i) for i in ids],
        )
        return ids

    def positions_of(self, tenant: str) -> list[int]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT notification_id FROM {self.events_table_name} WHERE tenant = ?",
                (tenant,),
            )
            return [row["notification_id"] for row in cursor.fetchall()]


def test_a_subclass_may_add_columns_to_the_events_table(datastore: SQLiteDatastore) -> None:
    recorder = TenantRecorder(datastore, "stored_events")
    recorder.create_table()
    a, b = uuid4(), uuid4()
    assert recorder.insert_events([event(a, 1), event(b, 1)], tenant="acme") == [1, 2]
    assert recorder.insert_events([event(a, 2)], tenant="zeta") == [3]
    assert recorder.positions_of("acme") == [1, 2]
    assert recorder.positions_of("zeta") == [3]
    assert [n.id for n in recorder.select_notifications(1, 10)] == [1, 2, 3]
    assert recorder.select_events(a) == [event(a, 1), event(a, 2)]


# ---------------------------------------------------------------------------
# The keyword arguments reach _insert_events on every path.

SEEN: list[tuple[str, dict[str, Any], int]] = []  # (recorder, kwargs, number of events)


def _seen(kind: str, kwargs: dict[str, Any], stored_events: Sequence[StoredEvent]) -> None:
    SEEN.append((kind, {k: v for k, v in kwargs.items() if v is not None}, len(stored_events)))


class SeeingAggregateRecorder(SQLiteAggregateRecorder):
    def _insert_events(
        self, cursor: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        _seen("aggregate", kwargs, stored_events)
        return super()._insert_events(cursor, stored_events, **kwargs)


class SeeingApplicationRecorder(SQLiteApplicationRecorder):
    def _insert_events(
        self, cursor: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        _seen("application", kwargs, stored_events)
        return super()._insert_events(cursor, stored_events, **kwargs)


class SeeingProcessRecorder(SQLiteProcessRecorder):
    def _insert_events(
        self, cursor: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking = kwargs.get("tracking")
        _seen(
            "process", {**kwargs, "tracking": tracking and tracking.notification_id}, stored_events
        )
        return super()._insert_events(cursor, stored_events, **kwargs)


class SeeingFactory(SQLiteFactory):
    aggregate_recorder_class = SeeingAggregateRecorder
    application_recorder_class = SeeingApplicationRecorder
    process_recorder_class = SeeingProcessRecorder


class TaggingCounters(Counters):
    """Counters that pass a keyword argument with the counter they save."""

    name = "Counters"

    def policy(self, domain_event: Any, processing_event: Any) -> None:
        if isinstance(domain_event, Dog.TrickAdded):
            try:
                counter = self.repository.get(Counter.create_id(domain_event.trick))
            except AggregateNotFoundError:
                counter = Counter(domain_event.trick)
            counter.increment()
            processing_event.collect_events(counter, tag=domain_event.trick)


@pytest.fixture
def seeing_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    SEEN.clear()
    yield {
        "PERSISTENCE_MODULE": get_topic(SeeingFactory),
        "SQLITE_DBNAME": str(tmp_path / "seen.db"),
    }
    SEEN.clear()


def test_save_kwargs_reach_the_application_and_snapshot_recorders(
    seeing_env: dict[str, str],
) -> None:
    app = DogSchool(env={**seeing_env, "IS_SNAPSHOTTING_ENABLED": "y"})
    dog_id = app.register_dog("Fido")
    dog = app.repository.get(dog_id)
    dog.add_trick("sit")
    app.save(dog, reason="training")
    app.take_snapshot(dog_id)
    assert SEEN == [("application", {}, 1), ("application", {"reason": "training"}, 1)] + [
        ("aggregate", {}, 1)
    ]


def test_kwargs_and_tracking_reach_the_process_recorder_one_event_at_a_time(
    seeing_env: dict[str, str],
) -> None:
    with SingleThreadedRunner(System(pipes=[[DogSchool, TaggingCounters]]), env=seeing_env) as r:
        school = r.get(DogSchool)
        dog_id = school.register_dog("Fido")
        school.add_trick(dog_id, "sit")
        assert r.get(TaggingCounters).get_count("sit") == 1
    process = [entry for entry in SEEN if entry[0] == "process"]
    # The registration is processed (and tracked) with no new events; the trick makes a
    # counter (created and incremented: two events).
    assert process == [
        ("process", {"tracking": 1}, 0),
        ("process", {"tag": "sit", "tracking": 2}, 2),
    ]


def test_kwargs_of_each_upstream_event_reach_the_process_recorder_apart(
    seeing_env: dict[str, str],
) -> None:
    school = DogSchool(env=seeing_env)
    dog_id = school.register_dog("Fido")
    for trick in ["sit", "beg", "roll", "sit", "beg"]:
        school.add_trick(dog_id, trick)
    SEEN.clear()
    # Started after the tricks, the follower catches up on six notifications. Events
    # without keyword arguments share a batch; an event whose policy gives some ends
    # its batch, so that each event's arguments reach the recorder as they were given
    # (merged into one batch, the last "tag" would hide the others).
    runner = MultiThreadedRunner(System(pipes=[[DogSchool, TaggingCounters]]), env=seeing_env)
    runner.start()
    try:
        runner.wait(timeout=10)
        counters = runner.get(TaggingCounters)
        assert [counters.get_count(t) for t in ["sit", "beg", "roll"]] == [2, 2, 1]
    finally:
        runner.stop()
    assert [entry for entry in SEEN if entry[0] == "process"] == [
        ("process", {"tag": "sit", "tracking": 2}, 2),  # the registration, and a new counter
        ("process", {"tag": "beg", "tracking": 3}, 2),
        ("process", {"tag": "roll", "tracking": 4}, 2),
        ("process", {"tag": "sit", "tracking": 5}, 1),  # an increment
        ("process", {"tag": "beg", "tracking": 6}, 1),
    ]


def test_our_own_recorders_do_not_route_inserts_through_the_hook(
    datastore: SQLiteDatastore,
) -> None:
    # The fast path: our classes insert directly; a subclass's hook is always called.
    assert not SQLiteProcessRecorder(datastore)._routes_inserts
    assert SeeingProcessRecorder(datastore)._routes_inserts


def test_rows_of_the_hook_are_plain_rows_for_our_own_queries(datastore: SQLiteDatastore) -> None:
    recorder = SeeingApplicationRecorder(datastore)
    recorder.create_table()
    a = uuid4()
    recorder.insert_events([event(a, 1)], note="x")
    assert recorder.select_events(a) == [event(a, 1)]
    with sqlite3.connect(datastore.db_name) as conn:
        assert conn.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0] == 1


def test_recorder_topics_choose_the_recorder_classes(tmp_path: Path) -> None:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(tmp_path / "topics.db"),
        "APPLICATION_RECORDER_TOPIC": get_topic(SearchablePagesRecorder),
        "PROCESS_RECORDER_TOPIC": get_topic(SeeingProcessRecorder),
    }
    assert type(Application(env=env).recorder) is SearchablePagesRecorder
    assert type(Counters(env=env).recorder) is SeeingProcessRecorder
    assert SQLiteFactory.PROCESS_RECORDER_TOPIC == "PROCESS_RECORDER_TOPIC"
    wrong = dict(env, APPLICATION_RECORDER_TOPIC=get_topic(SQLiteDatastore))
    with pytest.raises(TopicError, match="_RECORDER_TOPIC .* names no ApplicationRecorder"):
        Application(env=wrong)
