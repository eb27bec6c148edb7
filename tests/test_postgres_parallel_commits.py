"""PostgreSQL writers that commit in parallel, and readers that never skip.

See eventsourcing/_postgres_commits.py for the design and why a reader never skips.
Needs a server: skipped without one (see conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from conftest import postgres_datastore, skip_module_unless_postgres
from recorder_contract import event, write_while_following

from eventsourcing.persistence import RecordConflictError
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

skip_module_unless_postgres()

HERE = Path(__file__).parent


def _datastore(settings: dict[str, Any], pool_size: int = 2) -> PostgresDatastore:
    return postgres_datastore(settings, pool_size=pool_size)


def _recorder(datastore: PostgresDatastore) -> PostgresApplicationRecorder:
    recorder = PostgresApplicationRecorder(datastore, f"parallel_{uuid4().hex[:10]}")
    recorder.create_table()
    return recorder


def _start_writer_process(settings: dict[str, Any], table: str, batches: int) -> Any:
    return subprocess.Popen(
        [
            sys.executable,
            str(HERE / "parallel_writer.py"),
            json.dumps(settings),
            table,
            str(batches),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
    )


def test_writers_in_threads_and_processes_and_a_follower_that_skips_nothing(
    postgres_test_database: dict[str, Any],
) -> None:
    """8 writer threads and 4 writer processes insert while a follower reads: it sees
    every id once, in increasing order, each page after the last."""
    datastore = _datastore(postgres_test_database, pool_size=10)
    recorder = _recorder(datastore)
    batches = 40

    def write_in_processes() -> list[int]:
        processes = [
            _start_writer_process(postgres_test_database, recorder.events_table_name, batches)
            for _ in range(4)
        ]
        written: list[int] = []
        for process in processes:
            out, _ = process.communicate(timeout=120)
            assert process.returncode == 0
            written.extend(json.loads(out))
        return written

    written, seen = write_while_following(
        recorder, writers=8, batches=batches, page_size=25, write_elsewhere=write_in_processes
    )
    datastore.close()
    assert len(written) == 12 * batches * 3
    assert seen == sorted(written)  # nothing skipped, nothing twice, increasing


def _draw_and_insert_without_committing(
    conn: psycopg.Connection[Any], recorder: PostgresApplicationRecorder
) -> int:
    """What a parallel writer does before its commit: under the write lock, take a
    transaction id and draw an id; let the lock go; insert the row stamped."""
    table = recorder.events_table_name
    key = "SELECT %s::regclass::oid::bigint"
    (lock_key,) = conn.execute(key, (f'"{table}"',)).fetchone()  # type: ignore[misc]
    conn.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
    (xid,) = conn.execute("SELECT pg_current_xact_id()").fetchone()  # type: ignore[misc]
    sequence = f'"{table}_notification_id_seq"'
    (nid,) = conn.execute("SELECT nextval(%s::regclass)", (sequence,)).fetchone()  # type: ignore[misc]
    conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
    conn.execute(
        f'INSERT INTO "{table}" (notification_id, originator_id, originator_version, topic, '
        "state, transaction_id) VALUES (%s, %s, 1, 'topic:late', '', %s)",
        (nid, uuid4(), xid),
    )
    return int(nid)


@pytest.mark.parametrize("topics", [(), ("topic:A", "topic:late")], ids=["all", "topics"])
def test_a_row_after_a_writer_in_progress_waits_for_its_commit(
    postgres_test_database: dict[str, Any], topics: tuple[str, ...]
) -> None:
    """A writer draws id 2 and has not committed; another commits id 3: readers get
    id 1 only, until the first commits; then 2 and 3 (and not 3 without 2)."""
    datastore = _datastore(postgres_test_database)
    recorder = _recorder(datastore)
    recorder.insert_events([event(uuid4(), 1)])
    with psycopg.connect(**postgres_test_database) as late:
        late_id = _draw_and_insert_without_committing(late, recorder)
        assert late_id == 2
        assert recorder.insert_events([event(uuid4(), 1)]) == [3]
        assert [n.id for n in recorder.select_notifications(None, 10, topics=topics)] == [1]
        assert recorder.select_notifications(2, 10, topics=topics) == []
        late.commit()
    assert [n.id for n in recorder.select_notifications(None, 10, topics=topics)] == [1, 2, 3]
    datastore.close()


def test_a_rolled_back_writer_leaves_a_gap_that_readers_pass(
    postgres_test_database: dict[str, Any],
) -> None:
    """While the writer of id 1 is in progress, id 2 is held back; once it rolls
    back, id 2 is returned."""
    datastore = _datastore(postgres_test_database)
    recorder = _recorder(datastore)
    with psycopg.connect(**postgres_test_database) as late:
        _draw_and_insert_without_committing(late, recorder)
        recorder.insert_events([event(uuid4(), 1)])
        assert recorder.select_notifications(None, 10) == []
        late.rollback()
    # Passed once every transaction older than the writer of id 2 has ended (on a
    # server shared with other work, that may take a moment).
    deadline = time.monotonic() + 60
    while not recorder.select_notifications(None, 10):
        assert time.monotonic() < deadline, "the gap of a rolled-back writer was never passed"
        time.sleep(0.05)
    assert [n.id for n in recorder.select_notifications(None, 10)] == [2]
    datastore.close()


def test_a_transaction_elsewhere_does_not_hold_back_rows_that_follow_on(
    postgres_test_database: dict[str, Any],
) -> None:
    """Another transaction that has an id (any table, any database of the server)
    does not hold back rows without a gap before them: a writer reads its writes."""
    datastore = _datastore(postgres_test_database)
    recorder = _recorder(datastore)
    with psycopg.connect(**postgres_test_database) as other:
        other.execute("SELECT pg_current_xact_id()")  # an id, so it is "in progress"
        recorder.insert_events([event(uuid4(), 1), event(uuid4(), 1)])
        recorder.insert_events([event(uuid4(), 1)])
        assert [n.id for n in recorder.select_notifications(None, 10)] == [1, 2, 3]
        assert [n.id for n in recorder.select_notifications(2, 10, topics=["topic:A"])] == [2, 3]
        other.rollback()
    datastore.close()


def test_a_conflicting_write_draws_no_id_and_lets_the_lock_go(
    postgres_test_database: dict[str, Any],
) -> None:
    datastore = _datastore(postgres_test_database)
    recorder = _recorder(datastore)
    originator = uuid4()
    recorder.insert_events([event(originator, 1)])
    with pytest.raises(RecordConflictError, match=str(originator)):
        recorder.insert_events([event(uuid4(), 1), event(originator, 1)])
    assert recorder.insert_events([event(uuid4(), 1)]) == [2]  # no gap: nothing drawn
    with psycopg.connect(**postgres_test_database, autocommit=True) as other:
        key = f'"{recorder.events_table_name}"'
        row = other.execute(
            "SELECT pg_try_advisory_lock(%s::regclass::oid::bigint)", (key,)
        ).fetchone()
        assert row == (True,)  # not held by the writer's session
    datastore.close()


def create_table_of_an_earlier_version(settings: dict[str, Any], table: str) -> None:
    """An events table as earlier versions made it (without the stamp column)."""
    with psycopg.connect(**settings, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{table}" (notification_id bigserial PRIMARY KEY, '
            "originator_id uuid NOT NULL, originator_version bigint NOT NULL, "
            "topic text NOT NULL, state bytea NOT NULL, "
            "UNIQUE (originator_id, originator_version))"
        )


def test_a_table_made_by_an_earlier_version_is_read_and_written_then_migrated(
    postgres_test_database: dict[str, Any],
) -> None:
    """A table without the stamp column keeps the lock held until commit; create_table()
    adds the column, and rows recorded before it are read as before."""
    datastore = _datastore(postgres_test_database)
    table = f"earlier_{uuid4().hex[:10]}"
    create_table_of_an_earlier_version(postgres_test_database, table)
    recorder = PostgresApplicationRecorder(datastore, table)
    assert recorder.insert_events([event(uuid4(), 1)]) == [1]
    assert [n.id for n in recorder.select_notifications(None, 10)] == [1]
    recorder.create_table()
    with psycopg.connect(**postgres_test_database, autocommit=True) as conn:
        stamps = conn.execute(f'SELECT transaction_id FROM "{table}"').fetchall()
        assert stamps == [(None,)]
    assert recorder.insert_events([event(uuid4(), 1)]) == [2]
    assert [n.id for n in recorder.select_notifications(None, 10)] == [1, 2]
    with psycopg.connect(**postgres_test_database, autocommit=True) as conn:
        stamped = conn.execute(
            f'SELECT transaction_id IS NOT NULL FROM "{table}" WHERE notification_id = 2'
        ).fetchone()
        assert stamped == (True,)
    recorder.create_table()  # again: nothing to do
    datastore.close()
