"""SQLite recorders: the shared contract (file and in-memory), durability, factory."""

from __future__ import annotations

import pickle
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from recorder_contract import DatabaseRecorders, event

from eventsourcing.persistence import (
    DataError,
    InfrastructureFactory,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from eventsourcing.sqlite import (
    Factory,
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteDatastore,
    SQLiteProcessRecorder,
)
from eventsourcing.utils import Environment


class SQLiteContract(DatabaseRecorders):
    datastore: SQLiteDatastore
    aggregate_recorder_class = SQLiteAggregateRecorder
    application_recorder_class = SQLiteApplicationRecorder
    process_recorder_class = SQLiteProcessRecorder


class TestSQLiteFile(SQLiteContract):
    supports_concurrency = True

    @pytest.fixture(autouse=True)
    def _file_datastore(self, tmp_path: Path) -> Iterator[None]:
        self.datastore = SQLiteDatastore(str(tmp_path / "events.sqlite"))
        yield
        self.datastore.close()


class TestSQLiteMemory(SQLiteContract):
    supports_concurrency = True

    @pytest.fixture(autouse=True)
    def _memory_datastore(self) -> Iterator[None]:
        self.datastore = SQLiteDatastore(":memory:")
        yield
        self.datastore.close()


def test_file_database_is_durable(tmp_path: Path) -> None:
    datastore = SQLiteDatastore(str(tmp_path / "durable.sqlite"))
    try:
        with datastore.connection() as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        datastore.close()


def test_normal_synchronous_is_an_option_and_other_modes_are_refused(tmp_path: Path) -> None:
    env = {"SQLITE_DBNAME": str(tmp_path / "fast.sqlite"), "SQLITE_SYNCHRONOUS": "normal"}
    factory = Factory(Environment("app", env))
    recorder = factory.application_recorder()
    recorder.insert_events([event(uuid4(), 1)])
    try:
        with factory.datastore.connection() as conn:
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        factory.close()
    for bad in ("OFF", "fast", "0"):
        with pytest.raises(
            OSError, match=f"SQLITE_SYNCHRONOUS must be one of FULL, NORMAL, not '{bad}'"
        ):
            Factory(Environment("app", {**env, "SQLITE_SYNCHRONOUS": bad}))
    with pytest.raises(ValueError, match="synchronous must be one of FULL, NORMAL"):
        SQLiteDatastore(str(tmp_path / "x.sqlite"), synchronous="EXTRA")


def test_memory_database_is_shared_by_threads() -> None:
    datastore = SQLiteDatastore(":memory:")
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    a = uuid4()
    thread = threading.Thread(target=lambda: recorder.insert_events([event(a, 1)]))
    thread.start()
    thread.join()
    assert recorder.select_events(a) == [event(a, 1)]
    datastore.close()


def test_two_memory_datastores_are_separate() -> None:
    first, second = SQLiteDatastore(":memory:"), SQLiteDatastore(":memory:")
    for datastore in (first, second):
        SQLiteApplicationRecorder(datastore).create_table()
    SQLiteApplicationRecorder(first).insert_events([event(uuid4(), 1)])
    assert SQLiteApplicationRecorder(second).max_notification_id() is None


def test_shared_cache_uri_is_shared_by_datastores() -> None:
    uri = f"file:es_{uuid4().hex}?mode=memory&cache=shared"
    first, second = SQLiteDatastore(uri), SQLiteDatastore(uri)
    SQLiteApplicationRecorder(first).create_table()
    SQLiteApplicationRecorder(first).insert_events([event(uuid4(), 1)])
    assert SQLiteApplicationRecorder(second).max_notification_id() == 1
    first.close()
    second.close()


def test_missing_table_is_a_programming_error() -> None:
    recorder = SQLiteApplicationRecorder(SQLiteDatastore(":memory:"), "absent")
    with pytest.raises(ProgrammingError, match="absent"):
        recorder.max_notification_id()


def test_factory_requires_sqlite_dbname() -> None:
    with pytest.raises(OSError, match="SQLITE_DBNAME"):
        Factory(Environment("app", {}))


def test_factory_builds_recorders(tmp_path: Path) -> None:
    db = str(tmp_path / "factory.sqlite")
    env = Environment(
        "My\"App'; DROP TABLE x; --",
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": db},
    )
    factory = InfrastructureFactory.construct(env)
    assert isinstance(factory, Factory)
    recorder = factory.process_recorder()
    assert recorder.events_table_name == "my\"app'; drop table x; --_events"  # type: ignore[attr-defined]
    a = uuid4()
    assert list(recorder.insert_events([event(a, 1)]) or []) == [1]
    snapshots = factory.aggregate_recorder("snapshots")
    snapshots.insert_events([event(a, 1)])
    assert snapshots.select_events(a) == [event(a, 1)]
    factory.close()


def test_factory_per_application_dbname(tmp_path: Path) -> None:
    env = Environment(
        "Dogs",
        {
            "SQLITE_DBNAME": "unused",
            "DOGS_SQLITE_DBNAME": str(tmp_path / "dogs.sqlite"),
            "SQLITE_LOCK_TIMEOUT": "2",
            "CREATE_TABLE": "no",
        },
    )
    factory = Factory(env)
    assert factory.datastore.db_name.endswith("dogs.sqlite")
    assert factory.datastore.lock_timeout == 2.0
    recorder = factory.application_recorder()
    with pytest.raises(ProgrammingError, match="dogs_events"):
        recorder.max_notification_id()
    factory.close()


def test_lock_timeout_is_an_operational_error(tmp_path: Path) -> None:
    path = str(tmp_path / "locked.sqlite")
    datastore = SQLiteDatastore(path, lock_timeout=0.1, retry_timeout=0)  # no retries
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="Inserting 1 event.*locked"):
            recorder.insert_events([event(uuid4(), 1)])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert list(recorder.insert_events([event(uuid4(), 1)]) or []) == [1]
    datastore.close()


def test_closed_datastore_refuses_work(tmp_path: Path) -> None:
    datastore = SQLiteDatastore(str(tmp_path / "closed.sqlite"))
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    datastore.close()
    with pytest.raises(InterfaceError, match="closed"):
        recorder.max_notification_id()


def test_notifications_carry_the_originator_ids_that_were_recorded(tmp_path: Path) -> None:
    datastore = SQLiteDatastore(str(tmp_path / "ids.sqlite"))
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    ids = [uuid4() for _ in range(50)] + [UUID(int=0), UUID(int=2**128 - 1)]
    recorder.insert_events([event(i, 1) for i in ids])
    read = [n.originator_id for n in recorder.select_notifications(1, 100)]
    assert read == ids
    for got, made in zip(read, ids):
        assert (str(got), hash(got), got.bytes, got.version) == (
            str(made),
            hash(made),
            made.bytes,
            made.version,
        )
        assert isinstance(got, UUID) and got.is_safe == made.is_safe
        assert pickle.loads(pickle.dumps(got)) == made
    datastore.close()


def test_a_stored_originator_id_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "short.sqlite")
    datastore = SQLiteDatastore(path)
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    recorder.insert_events([event(uuid4(), 1), event(uuid4(), 1)])
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE stored_events SET originator_id = ? WHERE notification_id = 2", (b"\x01" * 15,)
        )
    with pytest.raises(DataError, match="Notification 2 in 'stored_events'.* 15 bytes, not 16"):
        recorder.select_notifications(1, 10)
    assert len(recorder.select_notifications(1, 1)) == 1
    datastore.close()


def test_close_waits_for_an_operation_of_another_thread(tmp_path: Path) -> None:
    # Closing a connection while another thread runs a statement on it can crash
    # sqlite3 (seen as a segfault): close() lets the operation finish first.
    datastore = SQLiteDatastore(str(tmp_path / "close.sqlite"))
    started = threading.Event()

    def slow_read(conn: sqlite3.Connection) -> int:
        started.set()
        time.sleep(0.3)
        return int(conn.execute("SELECT 1").fetchone()[0])

    results: list[object] = []

    def read() -> None:
        try:
            results.append(datastore.run(slow_read, write=False, what="A slow read"))
        except Exception as error:  # (reported by the assertion below)
            results.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(5)
    datastore.close()
    reader.join(5)
    assert results == [1]
    with pytest.raises(InterfaceError, match="closed"):
        datastore.run(slow_read, write=False, what="A read after close")


def test_close_inside_an_operation_ends_when_another_threads_operation_does(
    tmp_path: Path,
) -> None:
    """close() called within an operation of its own thread waits for the others only:
    once another thread's operation ends, it goes on (not at the end of CLOSE_WAIT)."""
    datastore = SQLiteDatastore(str(tmp_path / "close.sqlite"))
    started = threading.Event()

    def slow_read(conn: sqlite3.Connection) -> int:
        started.set()
        time.sleep(0.3)
        return int(conn.execute("SELECT 1").fetchone()[0])

    reader = threading.Thread(
        target=lambda: datastore.run(slow_read, write=False, what="A slow read")
    )
    reader.start()
    assert started.wait(5)
    closing_took: list[float] = []

    def close_within(conn: sqlite3.Connection) -> None:
        began = time.monotonic()
        datastore.close()
        closing_took.append(time.monotonic() - began)

    datastore.run(close_within, write=False, what="A read that closes")
    reader.join(5)
    assert closing_took and closing_took[0] < 3, f"close() waited {closing_took[0]:.1f}s"
