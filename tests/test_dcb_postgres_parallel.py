"""DCB appends on PostgreSQL that commit in parallel: conditions still hold, and
readers (their events and their heads) never skip a position committed late.

See eventsourcing/dcb/postgres_tt.py and eventsourcing/_postgres_commits.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import skip_module_unless_postgres
from dcb_booking import CAPACITY, PER_STUDENT, book, check_invariants

from eventsourcing._postgres_commits import read_layout
from eventsourcing.dcb._common import DCBInfrastructureFactory
from eventsourcing.dcb.api import DCBAppendCondition, DCBEvent, DCBQuery, DCBQueryItem
from eventsourcing.dcb.postgres_tt import _LOCK_SQL, PostgresDCBRecorderTT
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import Environment

skip_module_unless_postgres()

HERE = Path(__file__).parent


def _factory(env: dict[str, str]) -> DCBInfrastructureFactory:
    env = dict(env, PERSISTENCE_MODULE="eventsourcing.dcb.postgres_tt")
    factory = DCBInfrastructureFactory.construct(Environment("", env))
    assert isinstance(factory, DCBInfrastructureFactory)
    return factory


@pytest.fixture
def recorder(postgres_env: dict[str, str]) -> Iterator[PostgresDCBRecorderTT]:
    factory = _factory(dict(postgres_env, POSTGRES_POOL_SIZE="12"))
    try:
        recorder = factory.dcb_recorder()
        assert isinstance(recorder, PostgresDCBRecorderTT)
        yield recorder
    finally:
        factory.close()


def _connect(recorder: PostgresDCBRecorderTT) -> psycopg.Connection[Any]:
    return psycopg.connect(**dict(recorder.datastore.connect_kwargs(), autocommit=False))


def _append_without_committing(
    conn: psycopg.Connection[Any], recorder: PostgresDCBRecorderTT, event: DCBEvent
) -> int:
    """What the recorder's append does on ``conn``, but the commit: its locks, then its
    statement, which draws a position and inserts the event (an unconditional append)."""
    keys, exclusive = recorder._lock_keys([event], None)
    conn.execute(_LOCK_SQL, [keys, exclusive])
    layout = read_layout(conn, recorder._events.as_string(None), "position")
    assert layout.parallel
    statement = recorder._append_statement(None, layout.sequence)
    params = [[event.type], [event.data], [json.dumps(event.tags)]]
    row = conn.execute(statement, params).fetchone()
    assert row is not None
    return int(row[0])


class _InThread(threading.Thread):
    def __init__(self, target: Any) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.target()
        except BaseException as error:  # reported by the test
            self.error = error

    def outcome(self) -> Any:
        self.join(timeout=60)
        assert not self.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.result


def _joined(course: str, student: str) -> DCBEvent:
    return DCBEvent("Joined", f"{student} {course}".encode(), [course, student])


def test_a_head_stops_before_an_append_in_progress_and_a_condition_after_it_fails(
    recorder: PostgresDCBRecorderTT,
) -> None:
    """Writer W has drawn position 4 and not committed; another append commits 5. A
    reader whose query matches W's event gets a head of 3 (not 5, which would hide 4),
    and neither 4 nor 5; its append after that head waits for W, and fails once W
    commits."""
    for student in ("s1", "s2", "s3"):
        recorder.append([_joined("other-course", student)])
    course = DCBQuery([DCBQueryItem(types=["Joined"], tags=["course-1"])])
    with _connect(recorder) as w:
        assert _append_without_committing(w, recorder, _joined("course-1", "s1")) == 4
        # Disjoint from W: not held back by it (it let the write lock go).
        assert _InThread(lambda: recorder.append([_joined("other-course", "s4")])).outcome() == 5

        response = recorder.read(course)
        assert list(response) == []
        assert response.head == 3
        everything = recorder.read()
        assert [e.position for e in everything] == [1, 2, 3]
        assert everything.head == 3
        assert recorder.read(after=3).head == 3
        assert list(recorder.read(after=3, limit=10)) == []

        decided = _InThread(
            lambda: recorder.append(
                [_joined("course-1", "s2")], DCBAppendCondition(course, after=response.head)
            )
        )
        decided.join(timeout=1.0)
        assert decided.is_alive(), "the conditional append did not wait for W"
        w.commit()
    with pytest.raises(IntegrityError):
        decided.outcome()
    response = recorder.read(course)
    assert [e.position for e in response] == [4]
    assert response.head == 5
    assert [e.position for e in recorder.read()] == [1, 2, 3, 4, 5]


def test_a_subscription_waits_for_an_append_in_progress(
    recorder: PostgresDCBRecorderTT,
) -> None:
    """Position 2 is committed while 1 is in progress: a subscriber gets neither until
    1 commits, then both in order."""
    with _connect(recorder) as w, recorder.subscribe() as subscription:
        assert _append_without_committing(w, recorder, _joined("c", "s1")) == 1
        assert recorder.append([_joined("c", "s2")]) == 2
        assert list(recorder.read()) == []
        first = _InThread(lambda: next(subscription).position)
        first.join(timeout=1.5)  # (past the subscription's poll interval)
        assert first.is_alive(), "the subscription passed a position in progress"
        w.commit()
        assert first.outcome() == 1
        assert next(subscription).position == 2


def test_a_rolled_back_append_leaves_a_gap_that_reads_pass(
    recorder: PostgresDCBRecorderTT,
) -> None:
    with _connect(recorder) as w:
        assert _append_without_committing(w, recorder, _joined("c", "s1")) == 1
        assert recorder.append([_joined("c", "s2")]) == 2
        assert recorder.read().head is None
        w.rollback()
    # Passed once every transaction older than the writer of 2 has ended (on a server
    # shared with other work, that may take a moment).
    for _ in range(600):
        if recorder.read().head == 2:
            break
        threading.Event().wait(0.1)
    response = recorder.read()
    assert [e.position for e in response] == [2]
    assert response.head == 2


def test_a_transaction_elsewhere_does_not_hold_back_positions_that_follow_on(
    recorder: PostgresDCBRecorderTT,
) -> None:
    """Another transaction with an id (any table, any database of the server) holds
    back no position without a gap before it: a writer reads its appends."""
    with _connect(recorder) as other:
        other.execute("SELECT pg_current_xact_id()")  # an id, so it is "in progress"
        for i in range(1, 4):
            assert recorder.append([_joined("c", f"s{i}")]) == i
            response = recorder.read()
            assert [e.position for e in response] == list(range(1, i + 1))
            assert response.head == i
        # (So does a recorder that has read nothing yet.)
        fresh = PostgresDCBRecorderTT(recorder.datastore)
        assert fresh.read().head == 3
        other.rollback()


def test_a_table_made_again_is_read_as_new(recorder: PostgresDCBRecorderTT) -> None:
    """A recorder looks on from the last settled position it read only while that
    event is still there as it was: not in a table dropped and made again."""
    for i in range(1, 4):
        recorder.append([_joined("c", f"s{i}")])
    assert recorder.read().head == 3
    with _connect(recorder) as conn:
        conn.execute('DROP TABLE "dcb_events", "dcb_events_tags"')
        conn.commit()
    recorder.create_table()
    with _connect(recorder) as w:
        assert _append_without_committing(w, recorder, _joined("c", "t1")) == 1
        assert recorder.append([_joined("c", "t2")]) == 2
        assert recorder.read().head is None
        w.commit()
    assert recorder.read().head == 2


def test_a_failed_append_lets_the_write_lock_go(recorder: PostgresDCBRecorderTT) -> None:
    """An append that fails while it holds the write lock (a session lock, taken to draw
    positions) does not leave it held by its pooled connection."""
    recorder.append([_joined("c", "s1")])
    original = recorder._append_statement

    def failing(check: Any, sequence: str | None) -> bytes:
        # (Fails as the positions are drawn, under the lock.)
        statement = original(check, sequence)
        return statement.replace(
            b"SELECT id, row_number()", b"SELECT 1 / (id - id) AS id, row_number()"
        )

    recorder._append_statement = failing  # type: ignore[method-assign]
    try:
        with pytest.raises(Exception, match="division by zero"):
            recorder.append([_joined("c", "s2")])
    finally:
        del recorder._append_statement
    with _connect(recorder) as other:
        key = recorder._table_lock_key
        assert other.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone() == (
            True,
        ), "the write lock is still held"
    assert recorder.append([_joined("c", "s3")]) == 3  # (2 was drawn by the failed append)


def test_a_table_made_by_the_earlier_version_is_used_then_migrated(
    postgres_env: dict[str, str],
) -> None:
    """Tables without the stamp column are appended to and read as before (the write
    lock held until commit); create_table() adds the column in place, rows recorded
    before keep none; a recorder that read the layout before the migration reads as
    appends in parallel allow once it has been migrated."""
    with psycopg.connect(**_connect_kwargs(postgres_env), autocommit=True) as conn:
        for statement in (
            'CREATE TABLE "dcb_events" (position bigint GENERATED ALWAYS AS IDENTITY '
            "PRIMARY KEY, type text NOT NULL, data bytea NOT NULL, tags text[] NOT NULL)",
            'CREATE INDEX "dcb_events_type_position" ON "dcb_events" (type, position)',
            'CREATE TABLE "dcb_events_tags" (tag text NOT NULL, position bigint NOT NULL, '
            "type text NOT NULL, PRIMARY KEY (tag, position))",
        ):
            conn.execute(statement)
    factory = _factory(dict(postgres_env, CREATE_TABLE="false"))
    try:
        recorder = factory.dcb_recorder()
        assert isinstance(recorder, PostgresDCBRecorderTT)
        course = DCBQuery([DCBQueryItem(types=["Joined"], tags=["c"])])
        assert recorder.append([_joined("c", "s1")]) == 1
        head = recorder.read(course).head
        assert recorder.append([_joined("c", "s2")], DCBAppendCondition(course, head)) == 2
        with pytest.raises(IntegrityError):
            recorder.append([_joined("c", "s3")], DCBAppendCondition(course, head))
        # Another recorder (as of another process) reads the layout before the migration.
        other = PostgresDCBRecorderTT(recorder.datastore)
        assert other.read().head == 2

        recorder.create_table()
        with _connect(recorder) as conn:
            stamps = conn.execute('SELECT transaction_id FROM "dcb_events" ORDER BY position')
            assert stamps.fetchall() == [(None,), (None,)]
        assert recorder.append([_joined("c", "s3")], DCBAppendCondition(course, 2)) == 3
        with _connect(recorder) as conn:
            row = conn.execute('SELECT transaction_id FROM "dcb_events" WHERE position = 3')
            assert row.fetchone() != (None,)
        assert [e.position for e in recorder.read(course)] == [1, 2, 3]

        # Appends now commit in parallel: both recorders' heads stop before one in
        # progress.
        with _connect(recorder) as w:
            assert _append_without_committing(w, recorder, _joined("c", "s4")) == 4
            assert recorder.append([_joined("d", "s4")]) == 5
            assert recorder.read().head == 3
            assert other.read().head == 3
            w.commit()
        assert other.read().head == 5
        recorder.create_table()  # again: nothing to do
    finally:
        factory.close()


def _connect_kwargs(env: dict[str, str]) -> dict[str, Any]:
    return {
        "dbname": env["POSTGRES_DBNAME"],
        "host": env["POSTGRES_HOST"],
        "port": env["POSTGRES_PORT"],
        "user": env["POSTGRES_USER"],
        "password": env["POSTGRES_PASSWORD"],
    }


def _start_booking_process(env: dict[str, str], writer: str, attempts: int) -> Any:
    return subprocess.Popen(
        [sys.executable, str(HERE / "dcb_booking.py"), json.dumps(env), writer, str(attempts)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
    )


THREADS, PROCESSES, ATTEMPTS = 6, 2, 120


def test_booking_in_threads_and_processes_keeps_conditions_and_readers_skip_nothing(
    postgres_env: dict[str, str],
) -> None:
    """6 threads and 2 processes book courses (shared ones: overlapping conditions; one
    of each writer's own: disjoint ones) with durable commits, while a reader follows
    the whole log in small pages and another reads everything up to its head: no
    course over capacity, no student over the limit, and neither reader skipped a
    position that was committed later."""
    env = dict(postgres_env, POSTGRES_POOL_SIZE=str(THREADS + 4))
    factory = _factory(env)
    recorder = factory.dcb_recorder()
    assert isinstance(recorder, PostgresDCBRecorderTT)
    writing = threading.Event()
    followed: list[int] = []
    snapshots: list[tuple[int | None, list[int]]] = []

    def follow() -> None:
        last = 0
        while True:
            done = not writing.is_set()
            page = [e.position for e in recorder.read(after=last, limit=7)]
            assert page == sorted(page) and all(p > last for p in page)
            followed.extend(page)
            last = page[-1] if page else last
            if done and not page:
                return

    def read_to_head() -> None:
        while writing.is_set():
            response = recorder.read()
            snapshots.append((response.head, [e.position for e in response]))

    writing.set()
    readers = [_InThread(follow), _InThread(read_to_head)]
    processes = [
        _start_booking_process(
            dict(env, PERSISTENCE_MODULE="eventsourcing.dcb.postgres_tt"), f"p{i}", ATTEMPTS
        )
        for i in range(PROCESSES)
    ]
    writers = [
        _InThread(lambda i=i: book(recorder, f"t{i}", ATTEMPTS, seed=i)) for i in range(THREADS)
    ]
    outcomes: Counter[str] = Counter()
    try:
        for thread in writers:
            outcomes.update(thread.outcome())
        for process in processes:
            out, _ = process.communicate(timeout=300)
            assert process.returncode == 0
            outcomes.update(json.loads(out))
    finally:
        writing.clear()
        for reader in readers:
            reader.outcome()

    final = [e.position for e in recorder.read()]
    joins = [tuple(e.event.tags) for e in recorder.read()]
    factory.close()
    assert sum(outcomes.values()) == (THREADS + PROCESSES) * ATTEMPTS
    assert len(joins) == outcomes["joined"]
    per_course, per_student = check_invariants((c, s) for c, s in joins)  # type: ignore[misc]
    # Contended: the shared limits were reached, and conditions were refused.
    assert max(per_course.values()) == CAPACITY
    assert max(per_student.values()) == PER_STUDENT
    assert outcomes["conflict"] > 0
    # Nothing skipped: the follower saw every position, once, in order; each full read
    # held every position up to its head, and nothing past it.
    assert followed == final, sorted(set(final) - set(followed))[:10]
    assert len(snapshots) > 1
    for head, positions in snapshots:
        assert positions == [p for p in final if head is not None and p <= head]
