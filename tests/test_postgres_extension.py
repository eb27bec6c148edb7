"""Extending the PostgreSQL recorders: rows of one's own written in the transaction
that records the events, with the keyword arguments given to ``Application.save``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from conftest import skip_module_unless_postgres
from psycopg.sql import SQL, Composable, Identifier

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    IntegrityError,
    ProgrammingError,
    RecordConflictError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresCursor,
    PostgresDatastore,
    PostgresFactory,
    PostgresProcessRecorder,
)

skip_module_unless_postgres()


@pytest.fixture
def datastore(postgres_env: dict[str, str]) -> Iterator[PostgresDatastore]:
    store = PostgresDatastore(
        postgres_env["POSTGRES_DBNAME"],
        postgres_env["POSTGRES_HOST"],
        postgres_env["POSTGRES_PORT"],
        postgres_env["POSTGRES_USER"],
        postgres_env["POSTGRES_PASSWORD"],
        pool_size=2,
    )
    yield store
    store.close()


def stored(version: int = 1, originator_id: UUID | None = None) -> StoredEvent:
    return StoredEvent(originator_id or uuid4(), version, "module:Topic", b"{}")


# -- the datastore's transactions ------------------------------------------------------


def test_a_transaction_commits_only_when_asked(datastore: PostgresDatastore) -> None:
    with datastore.transaction(commit=True) as cursor:
        assert isinstance(cursor, PostgresCursor)
        cursor.execute("CREATE TABLE notes (id int PRIMARY KEY, text text)")
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("INSERT INTO notes VALUES (%s, %s)", (1, "rolled back"))
    with datastore.transaction(commit=True) as cursor:
        cursor.execute("INSERT INTO notes VALUES (%s, %s)", (2, "kept"))
    with pytest.raises(LookupError), datastore.transaction(commit=True) as cursor:
        cursor.execute("INSERT INTO notes VALUES (%s, %s)", (3, "raised"))
        raise LookupError("the block failed")
    with pytest.raises(IntegrityError), datastore.transaction(True) as cursor:
        cursor.execute("INSERT INTO notes VALUES (%s, %s)", (2, "duplicate"))
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT id, text FROM notes ORDER BY id")
        assert cursor.fetchall() == [{"id": 2, "text": "kept"}]
        cursor.execute("SELECT count(*) AS n FROM notes")
        assert cursor.fetchone() == {"n": 1}
    with datastore.get_connection() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT text FROM notes")
        assert cursor.fetchall() == [{"text": "kept"}]


# -- a recorder that keeps a search table ----------------------------------------------


class SearchableRecorder(PostgresApplicationRecorder):
    """Writes (id, text) rows given as ``index=[...]`` to save(), with the events."""

    def __init__(
        self, datastore: PostgresDatastore, events_table_name: str = "stored_events", **kw: Any
    ):
        super().__init__(datastore, events_table_name=events_table_name, **kw)
        self.search_table_name = events_table_name + "_search"
        self.check_identifier_length(self.search_table_name)
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {} (page_id uuid PRIMARY KEY, body text)").format(
                Identifier(self.datastore.schema, self.search_table_name)
            )
        )
        self.insert_page = SQL("INSERT INTO {} VALUES (%s, %s)").format(
            Identifier(self.datastore.schema, self.search_table_name)
        )
        self.search = SQL("SELECT page_id FROM {} WHERE body LIKE %s ORDER BY body").format(
            Identifier(self.datastore.schema, self.search_table_name)
        )
        self.seen_kwargs: list[dict[str, Any]] = []

    def _insert_events(
        self,
        cursor: PostgresCursor,
        stored_events: Sequence[StoredEvent],
        *,
        index: Sequence[tuple[UUID, str]] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        self.seen_kwargs.append(dict(kwargs, index=index))
        notification_ids = super()._insert_events(cursor, stored_events, **kwargs)
        for page_id, body in index:
            if body == "fail":
                raise ValueError("the extension refused this page")
            cursor.execute(self.insert_page, (page_id, body), prepare=True)
        return notification_ids

    def search_pages(self, pattern: str) -> list[UUID]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(self.search, (pattern,))
            return [row["page_id"] for row in cursor.fetchall()]


class SearchableFactory(PostgresFactory):
    application_recorder_class = SearchableRecorder


class Page(Aggregate):
    @event("Created")
    def __init__(self, body: str):
        self.body = body

    @event("Edited")
    def edit(self, body: str) -> None:
        self.body = body


class Wiki(Application):
    def create_page(self, body: str) -> UUID:
        page = Page(body)
        self.save(page, index=[(page.id, body)])
        return page.id


def wiki(postgres_env: dict[str, str]) -> Wiki:
    return Wiki(env=dict(postgres_env, PERSISTENCE_MODULE=f"{__name__}:SearchableFactory"))


def test_save_writes_an_extension_table_in_the_transaction_of_the_events(
    postgres_env: dict[str, str],
) -> None:
    app = wiki(postgres_env)
    recorder = app.recorder
    assert isinstance(recorder, SearchableRecorder)
    fetch = app.create_page("how to fetch")
    roll = app.create_page("how to roll")
    assert recorder.search_pages("%fetch%") == [fetch]
    assert recorder.search_pages("how%") == [fetch, roll]
    assert recorder.seen_kwargs[-1]["index"] == [(roll, "how to roll")]
    assert [n.originator_id for n in recorder.select_notifications(1, 10)] == [fetch, roll]
    assert app.repository.get(roll).body == "how to roll"
    # A save's recordings carry the notification ids the extension returned.
    page = Page("third")
    (recording,) = app.save(page, index=[(page.id, "third")])
    assert recording.notification.id == 3


def test_a_failing_extension_records_nothing(postgres_env: dict[str, str]) -> None:
    app = wiki(postgres_env)
    app.create_page("kept")
    page = Page("fail")
    with pytest.raises(ValueError, match="refused"):
        app.save(page, index=[(page.id, "fail")])
    assert page.id not in app.repository
    assert app.recorder.max_notification_id() == 1
    recorder = app.recorder
    assert isinstance(recorder, SearchableRecorder)
    assert recorder.search_pages("%") == [recorder.select_notifications(1, 1)[0].originator_id]


def test_a_conflict_in_an_extended_insert_records_nothing(postgres_env: dict[str, str]) -> None:
    app = wiki(postgres_env)
    page_id = app.create_page("first")
    recorder = app.recorder
    duplicate = recorder.select_events(page_id)[0]
    with pytest.raises(RecordConflictError):
        recorder.insert_events([duplicate], index=[(uuid4(), "second")])
    assert isinstance(recorder, SearchableRecorder)
    assert recorder.search_pages("second") == []


# -- a process recorder whose extension sees the tracking record -----------------------


class TrackedNotes(PostgresProcessRecorder):
    """Keeps a table of the upstream positions that caused each write."""

    def construct_create_table_statements(self) -> list[Composable]:
        return [
            *super().construct_create_table_statements(),
            SQL("CREATE TABLE IF NOT EXISTS {} (position bigint, events int)").format(
                Identifier(self.events_table_name + "_caused")
            ),
        ]

    def _insert_events(
        self, cursor: PostgresCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        super()._insert_events(cursor, stored_events, **kwargs)
        tracking = kwargs["tracking"]
        cursor.execute(
            SQL("INSERT INTO {} VALUES (%s, %s)").format(
                Identifier(self.events_table_name + "_caused")
            ),
            (tracking.notification_id, len(stored_events)),
        )
        return None  # (as some extensions do: the ids are found all the same)


def test_a_process_recorder_extension_writes_with_the_tracking_record(
    datastore: PostgresDatastore,
) -> None:
    recorder = TrackedNotes(datastore, "notes_events", "notes_tracking")
    recorder.create_table()
    ids = recorder.insert_events([stored(), stored()], tracking=Tracking("Up", 5))
    assert list(ids or []) == [1, 2]
    recorder.insert_events([], tracking=Tracking("Up", 7))
    assert recorder.max_tracking_id("Up") == 7
    with pytest.raises(IntegrityError):
        recorder.insert_events([stored()], tracking=Tracking("Up", 6))
    with datastore.transaction() as cursor:
        cursor.execute("SELECT position, events FROM notes_events_caused ORDER BY position")
        assert cursor.fetchall() == [{"position": 5, "events": 2}, {"position": 7, "events": 0}]
    assert recorder.max_notification_id() == 2


# -- extra columns ---------------------------------------------------------------------


class TimestampedRecorder(PostgresApplicationRecorder):
    """An events table with an extra column, and a table of each event's timestamp."""

    def construct_create_table_statements(self) -> list[Composable]:
        events, *others = super().construct_create_table_statements()
        with_column = SQL(
            "{}; ALTER TABLE {} ADD COLUMN IF NOT EXISTS recorded_at "
            "timestamptz NOT NULL DEFAULT now()"
        ).format(events, self._events)
        timestamps = SQL(
            "CREATE TABLE IF NOT EXISTS {} (originator_id uuid, originator_version bigint, "
            "timestamp timestamptz, PRIMARY KEY (originator_id, originator_version))"
        ).format(Identifier(self.events_table_name + "_ts"))
        return [with_column, *others, timestamps]

    def _insert_events(
        self,
        cursor: PostgresCursor,
        stored_events: Sequence[StoredEvent],
        *,
        timestamps: Sequence[tuple[UUID, int, datetime]] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        statement = SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(
            Identifier(self.events_table_name + "_ts")
        )
        for row in timestamps:
            cursor.execute(statement, row)
        return super()._insert_events(cursor, stored_events, **kwargs)

    def version_at(self, originator_id: UUID, when: datetime) -> int | None:
        statement = SQL(
            "SELECT max(originator_version) AS v FROM {} WHERE originator_id = %s "
            "AND timestamp <= %s"
        ).format(Identifier(self.events_table_name + "_ts"))
        with self.datastore.transaction() as cursor:
            cursor.execute(statement, (originator_id, when))
            row = cursor.fetchone()
            return None if row is None else row["v"]


class TimestampedApp(Application):
    def save(self, *objs: Any, **kwargs: Any) -> Any:
        kwargs["timestamps"] = [
            (e.originator_id, e.originator_version, e.timestamp)
            for obj in objs
            for e in obj.pending_events
        ]
        return super().save(*objs, **kwargs)


class TimestampedFactory(PostgresFactory):
    application_recorder_class = TimestampedRecorder


def test_an_extension_with_extra_columns(postgres_env: dict[str, str]) -> None:
    app = TimestampedApp(
        env=dict(postgres_env, PERSISTENCE_MODULE=f"{__name__}:TimestampedFactory")
    )
    page = Page("one")
    app.save(page)
    middle = page.modified_on
    page.edit("two")
    app.save(page)
    recorder = app.recorder
    assert isinstance(recorder, TimestampedRecorder)
    assert recorder.version_at(page.id, middle) == 1
    assert recorder.version_at(page.id, page.modified_on) == 2
    with recorder.datastore.transaction() as cursor:
        cursor.execute(SQL("SELECT recorded_at FROM {}").format(recorder._events))
        assert all(isinstance(row["recorded_at"], datetime) for row in cursor.fetchall())


# -- table names -----------------------------------------------------------------------


def test_a_table_name_past_the_identifier_limit_is_refused_at_construction(
    datastore: PostgresDatastore,
) -> None:
    name = "e" * 64
    with pytest.raises(ProgrammingError, match=f"{name}.*63 bytes"):
        PostgresApplicationRecorder(datastore, events_table_name=name)
    with pytest.raises(ProgrammingError, match="63 bytes"):
        SearchableRecorder(datastore, events_table_name="s" * 60)  # its search table: 67
    with pytest.raises(ProgrammingError, match="63 bytes"):
        PostgresApplicationRecorder.check_identifier_length("é" * 32)  # 64 bytes
    PostgresApplicationRecorder.check_identifier_length("e" * 63)


# -- a process application's policy passes keyword arguments to its recorder ----------


class IndexingRecorder(PostgresProcessRecorder):
    """Keeps the words a policy gave as ``words=[...]``, with the events and tracking."""

    def construct_create_table_statements(self) -> list[Composable]:
        return [
            *super().construct_create_table_statements(),
            SQL("CREATE TABLE IF NOT EXISTS {} (word text, position bigint)").format(
                Identifier(self.events_table_name + "_words")
            ),
        ]

    def _insert_events(
        self,
        cursor: PostgresCursor,
        stored_events: Sequence[StoredEvent],
        *,
        words: Sequence[str] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        ids = super()._insert_events(cursor, stored_events, **kwargs)
        statement = SQL("INSERT INTO {} VALUES (%s, %s)").format(
            Identifier(self.events_table_name + "_words")
        )
        for word in words:
            cursor.execute(statement, (word, kwargs["tracking"].notification_id))
        return ids

    def words(self) -> list[str]:
        statement = SQL("SELECT word FROM {} ORDER BY position, word").format(
            Identifier(self.events_table_name + "_words")
        )
        with self.datastore.transaction() as cursor:
            cursor.execute(statement)
            return [row["word"] for row in cursor.fetchall()]


class IndexingFactory(PostgresFactory):
    process_recorder_class = IndexingRecorder


def test_a_policy_passes_keyword_arguments_to_a_process_recorder_extension(
    postgres_env: dict[str, str],
) -> None:
    from eventsourcing.dispatch import singledispatchmethod
    from eventsourcing.system import ProcessApplication, SingleThreadedRunner, System

    class Indexer(ProcessApplication):
        @singledispatchmethod
        def policy(self, domain_event: Any, processing_event: Any) -> None:
            if isinstance(domain_event, Page.Created):
                processing_event.collect_events(words=domain_event.body.split())

    class Pages(Application):
        pass

    env = dict(postgres_env, PERSISTENCE_MODULE=f"{__name__}:IndexingFactory")
    with SingleThreadedRunner(System(pipes=[[Pages, Indexer]]), env=env) as runner:
        pages = runner.get(Pages)
        pages.save(Page("how to fetch"))
        indexer = runner.get(Indexer)
        assert isinstance(indexer.recorder, IndexingRecorder)
        assert indexer.recorder.words() == ["fetch", "how", "to"]
        assert indexer.recorder.max_tracking_id("Pages") == 1
