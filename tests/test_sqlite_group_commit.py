"""SQLite group commit: writes from many threads share one transaction, each undone
alone if it fails (see eventsourcing/_sqlite_group.py)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from recorder_contract import event

from eventsourcing.persistence import RecordConflictError, Tracking
from eventsourcing.sqlite import SQLiteDatastore, SQLiteProcessRecorder

HERE = Path(__file__).parent


def _counting_commits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every commit on the datastores' connections (one per fsync): each COMMIT, and
    each write run outside a transaction (a transaction by itself)."""
    commits: list[str] = []
    connect = SQLiteDatastore._connect

    def traced(self: SQLiteDatastore) -> sqlite3.Connection:
        conn = connect(self)

        def trace(statement: str) -> None:
            if statement == "COMMIT" or (
                not conn.in_transaction and statement.startswith(("INSERT", "UPDATE", "DELETE"))
            ):
                commits.append(statement)

        conn.set_trace_callback(trace)
        return conn

    monkeypatch.setattr(SQLiteDatastore, "_connect", traced)
    return commits


def _recorder(path: Path, **kwargs: Any) -> SQLiteProcessRecorder:
    """A process recorder of the database file ``path`` (``kwargs`` as SQLiteDatastore
    takes them), its tables created."""
    kwargs.setdefault("lock_timeout", 30)
    recorder = SQLiteProcessRecorder(SQLiteDatastore(str(path), **kwargs))
    recorder.create_table()
    return recorder


def _run_together(path: Path, threads: list[threading.Thread]) -> None:
    """Start the writer ``threads`` while the database's write lock is held, so they
    all arrive before any commits; then let go, and wait for them."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # (setup: let every writer arrive; a late one just commits later)
    blocker.execute("ROLLBACK")
    blocker.close()
    for thread in threads:
        thread.join()


def test_one_conflicting_save_among_50_fails_alone(tmp_path: Path, monkeypatch) -> None:
    commits = _counting_commits(monkeypatch)
    path = tmp_path / "group.db"
    recorder = _recorder(path)
    taken = uuid4()
    recorder.insert_events([event(taken, 1)])
    originators = [uuid4() for _ in range(49)] + [taken]
    outcomes: dict[UUID, Any] = {}
    barrier = threading.Barrier(50)

    def save(originator: UUID) -> None:
        barrier.wait()
        try:
            outcomes[originator] = recorder.insert_events([event(originator, 1)])
        except Exception as error:
            outcomes[originator] = error

    threads = [threading.Thread(target=save, args=(o,)) for o in originators]
    commits.clear()
    _run_together(path, threads)
    assert isinstance(outcomes[taken], RecordConflictError)
    assert str(taken) in str(outcomes[taken])
    for originator in originators[:49]:
        assert [e.originator_version for e in recorder.select_events(originator)] == [1]
    ids = sorted(i for o in originators[:49] for i in outcomes[o])
    assert ids == [n.id for n in recorder.select_notifications(2, 100)]  # each its own id
    assert len(commits) < 10, f"{len(commits)} commits for 50 saves arriving together"
    recorder.datastore.close()


def test_a_tracking_conflict_in_a_group_fails_alone(tmp_path: Path, monkeypatch) -> None:
    """Two followers' writes of one position in one group: the second is refused,
    seeing the first's (uncommitted) position in the shared transaction."""
    commits = _counting_commits(monkeypatch)
    path = tmp_path / "group.db"
    recorder = _recorder(path)
    outcomes: list[Any] = []
    barrier = threading.Barrier(2)

    def follow() -> None:
        barrier.wait()
        try:
            outcomes.append(recorder.insert_events([event(uuid4(), 1)], tracking=Tracking("up", 1)))
        except Exception as error:
            outcomes.append(error)

    threads = [threading.Thread(target=follow) for _ in range(2)]
    commits.clear()
    _run_together(path, threads)
    assert sorted(type(o).__name__ for o in outcomes) == ["TrackingConflictError", "list"]
    assert recorder.max_tracking_id("up") == 1
    assert recorder.max_notification_id() == 1
    assert len(commits) == 1
    recorder.datastore.close()


@pytest.mark.parametrize("threads", [16, 1])
def test_sigkill_during_groups_loses_only_saves_that_had_not_returned(
    tmp_path: Path, threads: int
) -> None:
    """A process of 16 writer threads prints each save that returned; killed with
    SIGKILL mid-stream, every printed save is in the file afterwards. With one thread
    each save is alone, one INSERT outside a transaction: durable as well."""
    path = tmp_path / "killed.db"
    writer = subprocess.Popen(
        [sys.executable, str(HERE / "group_commit_writer.py"), str(path), str(threads)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
    )
    assert writer.stdout is not None
    returned: list[str] = []
    try:
        while len(returned) < 500:
            line = writer.stdout.readline()
            assert line, "the writer stopped"
            returned.append(line.strip())
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
    returned.extend(line.strip() for line in writer.stdout.read().splitlines())
    writer.stdout.close()
    datastore = SQLiteDatastore(str(path))
    recorder = SQLiteProcessRecorder(datastore)
    recorded = {str(n.originator_id) for n in recorder.select_notifications(None, 10**6)}
    missing = [o for o in returned if o and o not in recorded]
    assert missing == []
    assert len(recorded) >= 500
    datastore.close()


def test_writes_that_cannot_have_the_lock_in_time_all_fail_and_later_writes_work(
    tmp_path: Path,
) -> None:
    path = tmp_path / "group.db"
    # (A locked database is retried until the retry timeout: that too must end before
    # the lock is let go, else the writes would wait for it and succeed.)
    recorder = _recorder(path, lock_timeout=0.3, retry_timeout=1.0)
    outcomes: list[Any] = []

    def save() -> None:
        try:
            outcomes.append(recorder.insert_events([event(uuid4(), 1)]))
        except Exception as error:
            outcomes.append(error)

    threads = [threading.Thread(target=save) for _ in range(5)]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert [type(o).__name__ for o in outcomes] == ["OperationalError"] * 5
    assert all("locked" in str(o) for o in outcomes)
    assert recorder.max_notification_id() is None  # nothing recorded
    assert recorder.insert_events([event(uuid4(), 1)]) == [1]  # no write left waiting
    recorder.datastore.close()


def test_a_write_within_a_write_is_refused_not_waited_for(tmp_path: Path) -> None:
    """A write started by a write of the same thread (in its transaction) cannot wait
    for the group its own write is in: it fails, as it did before groups."""
    datastore = SQLiteDatastore(str(tmp_path / "group.db"))
    outcome: list[Any] = []

    def nested() -> None:
        try:
            datastore.run(
                lambda conn: datastore.run(lambda inner: None, write=True, what="inner"),
                write=True,
                what="outer",
            )
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the nested write waited for its own group"
    assert "within a transaction" in str(outcome[0])
    datastore.close()


def _group_of_singles(
    tmp_path: Path, funcs: list[Any]
) -> tuple[sqlite3.Connection, list[Any]]:
    """Run ``funcs`` (each one statement: ``single``) as one group in a transaction of a
    fresh table ``t``; the connection and each write's outcome (result or error)."""
    from eventsourcing._sqlite_group import _run_group, _Write

    conn = sqlite3.connect(tmp_path / "singles.db", isolation_level=None)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (0)")
    writes = [_Write(func, single=True) for func in funcs]
    conn.execute("BEGIN IMMEDIATE")
    _run_group(conn, writes)
    outcomes: list[Any] = []
    for write in writes:
        try:
            outcomes.append(write.outcome())
        except BaseException as error:
            outcomes.append(error)
    return conn, outcomes


def _keys(conn: sqlite3.Connection) -> list[int]:
    return [k for (k,) in conn.execute("SELECT k FROM t ORDER BY k")]


def test_a_single_write_that_fails_in_a_group_leaves_nothing_and_fails_alone(
    tmp_path: Path,
) -> None:
    """A single write runs in a group without a savepoint: its statement, failing on
    its last row, is undone whole by SQLite, and the writes around it are committed."""
    conn, outcomes = _group_of_singles(
        tmp_path,
        [
            lambda c: c.execute("INSERT INTO t VALUES (1)").lastrowid,
            lambda c: c.execute("INSERT INTO t VALUES (2), (3), (0)").lastrowid,
            lambda c: c.execute("INSERT INTO t VALUES (4)").lastrowid,
        ],
    )
    assert outcomes[0] == 1 and outcomes[2] == 4
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert not conn.in_transaction
    assert _keys(conn) == [0, 1, 4]


def test_a_single_write_interrupted_after_its_statement_fails_the_group(
    tmp_path: Path,
) -> None:
    """An error that is not its statement's (an interruption, say) may have come after
    the statement wrote: without a savepoint that row cannot be told apart, so the
    group is rolled back and every write of it fails; nothing of it is recorded."""

    class Interrupted(BaseException):
        pass

    def wrote_then_interrupted(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (2)")
        raise Interrupted

    conn, outcomes = _group_of_singles(
        tmp_path,
        [
            lambda c: c.execute("INSERT INTO t VALUES (1)").lastrowid,
            wrote_then_interrupted,
            lambda c: c.execute("INSERT INTO t VALUES (3)").lastrowid,
        ],
    )
    assert isinstance(outcomes[1], Interrupted)
    assert all(isinstance(o, Interrupted) for o in outcomes)
    assert not conn.in_transaction
    assert _keys(conn) == [0]
