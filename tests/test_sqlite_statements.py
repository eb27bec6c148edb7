"""The SQL statements a command runs on SQLite: none that are not needed.

A save of one event is one INSERT, which outside a transaction is a transaction of
its own: it takes the write lock before it reads anything (as BEGIN IMMEDIATE does)
and commits when it ends. These tests count the statements, and check that such an
insert still waits for the write lock and numbers notifications in order.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from recorder_contract import event

from eventsourcing.persistence import OperationalError, RecordConflictError, Tracking
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore, SQLiteProcessRecorder
from examples.dogschool import DogSchool


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement run on the datastores' connections, its first word."""
    ran: list[str] = []
    connect = SQLiteDatastore._connect

    def traced(self: SQLiteDatastore) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_trace_callback(lambda s: ran.append(s.split()[0].upper()))
        return conn

    monkeypatch.setattr(SQLiteDatastore, "_connect", traced)
    yield ran


def test_a_cached_aggregate_got_and_saved_runs_a_select_and_an_insert(
    tmp_path: Path, statements: list[str]
) -> None:
    """The example dog school's add_trick (examples/dogschool.py): the fast-forward
    read of the cached dog, and the insert of its event, with no BEGIN or COMMIT
    around either."""
    app = DogSchool(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "school.db"),
            "AGGREGATE_CACHE_MAXSIZE": "100",
        }
    )
    dog_id = app.register_dog("Fido")
    app.add_trick(dog_id, "roll over")  # (warm: the connection open, the dog cached)
    statements.clear()
    app.add_trick(dog_id, "play dead")
    assert statements == ["SELECT", "INSERT"]
    assert app.repository.get(dog_id).tricks == ["roll over", "play dead"]
    app.close()


def test_one_event_with_tracking_is_still_one_transaction(
    tmp_path: Path, statements: list[str]
) -> None:
    """Two statements (the event, the position) need their transaction."""
    recorder = SQLiteProcessRecorder(SQLiteDatastore(str(tmp_path / "p.db")))
    recorder.create_table()
    recorder.insert_events([event(uuid4(), 1)], tracking=Tracking("up", 1))
    statements.clear()
    recorder.insert_events([event(uuid4(), 1)], tracking=Tracking("up", 2, 1))
    assert statements == ["BEGIN", "INSERT", "UPDATE", "COMMIT"]
    recorder.datastore.close()


@pytest.mark.parametrize("memory", [False, True])
def test_a_single_insert_waits_for_the_write_lock_and_takes_the_next_id(
    tmp_path: Path, memory: bool
) -> None:
    """An insert of one event, made while another connection holds the write lock
    with a row of its own inserted, waits; it then numbers its row after that one."""
    name = "file:single?mode=memory&cache=shared" if memory else str(tmp_path / "s.db")
    recorder = SQLiteApplicationRecorder(SQLiteDatastore(name, lock_timeout=10))
    recorder.create_table()
    table = recorder.events_table_name
    blocker = sqlite3.connect(name, uri=memory, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    blocker.execute(
        f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
        "VALUES (?, 1, 'topic:B', x'00')",
        (uuid4().bytes,),
    )
    returned = threading.Event()
    ids: list[object] = []

    def insert() -> None:
        ids.append(recorder.insert_events([event(uuid4(), 1)]))
        returned.set()

    thread = threading.Thread(target=insert)
    thread.start()
    assert not returned.wait(0.3), "the insert did not wait for the write lock"
    blocker.execute("COMMIT")
    thread.join(10)
    assert ids == [[2]]
    assert [n.id for n in recorder.select_notifications(None, 10)] == [1, 2]
    blocker.close()
    recorder.datastore.close()


def test_single_inserts_from_two_datastores_leave_no_gap_a_reader_could_skip(
    tmp_path: Path,
) -> None:
    """Two datastores (as two processes) insert one event at a time; a reader that
    polls the log never sees an id before a lower one that comes later."""
    path = str(tmp_path / "race.db")
    writers = [SQLiteApplicationRecorder(SQLiteDatastore(path, lock_timeout=30)) for _ in range(2)]
    writers[0].create_table()
    reader = SQLiteApplicationRecorder(SQLiteDatastore(path))
    stop = time.monotonic() + 1.5
    returned_ids: list[int] = []

    def write(recorder: SQLiteApplicationRecorder) -> None:
        while time.monotonic() < stop:
            returned_ids.extend(recorder.insert_events([event(uuid4(), 1)]) or [])

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    seen = 0
    while any(t.is_alive() for t in threads):
        ids = [n.id for n in reader.select_notifications(seen + 1, 1000)]
        assert ids == list(range(seen + 1, seen + 1 + len(ids)))  # a gap-free prefix
        seen += len(ids)
    for thread in threads:
        thread.join()
    assert sorted(returned_ids) == list(range(1, len(returned_ids) + 1))
    assert reader.max_notification_id() == len(returned_ids) > 10
    for recorder in [*writers, reader]:
        recorder.datastore.close()


def test_a_single_insert_that_conflicts_leaves_nothing_open(tmp_path: Path) -> None:
    """A one-event insert refused (the version is taken) records nothing, leaves no
    transaction open on the connection, and the next insert takes the next id."""
    recorder = SQLiteApplicationRecorder(SQLiteDatastore(str(tmp_path / "c.db")))
    recorder.create_table()
    taken = uuid4()
    assert recorder.insert_events([event(taken, 1)]) == [1]
    with pytest.raises(RecordConflictError, match=str(taken)):
        recorder.insert_events([event(taken, 1)])
    with recorder.datastore.connection() as conn:
        assert not conn.in_transaction
    assert recorder.insert_events([event(uuid4(), 1)]) == [2]
    assert [n.id for n in recorder.select_notifications(None, 10)] == [1, 2]
    recorder.datastore.close()


@pytest.mark.parametrize("memory", [False, True])
def test_a_single_insert_within_a_transaction_of_the_thread_is_refused_as_before(
    tmp_path: Path, memory: bool
) -> None:
    """Inside ``datastore.transaction()`` a recorder's insert is refused (it cannot have
    a transaction of its own), and the open transaction is left as it was."""
    name = ":memory:" if memory else str(tmp_path / "n.db")
    recorder = SQLiteApplicationRecorder(SQLiteDatastore(name))
    recorder.create_table()
    table = recorder.events_table_name
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(
            f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "VALUES (?, 1, 'topic:T', x'00')",
            (uuid4().bytes,),
        )
        with pytest.raises(OperationalError, match="within a transaction"):
            recorder.insert_events([event(uuid4(), 1)])
    assert [n.id for n in recorder.select_notifications(None, 10)] == [1]  # (committed)
    recorder.datastore.close()
