"""The quick way of the hot statements (a save, a read of an aggregate's events, a
follower's read): prepared once per pooled connection and run by one libpq call,
with psycopg's way kept for what the quick way does not take.

Needs a server (see ``postgres_test_database`` in conftest.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from decimal import Decimal
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from conftest import postgres_datastore, skip_module_unless_postgres
from recorder_contract import event

from eventsourcing.persistence import PersistenceError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

skip_module_unless_postgres()


def _one_connection(settings: dict[str, Any]) -> PostgresDatastore:
    # One pooled connection: every statement of a test runs on it.
    return postgres_datastore(settings, pool_size=1, max_overflow=0)


def _recorder(datastore: PostgresDatastore) -> PostgresApplicationRecorder:
    recorder = PostgresApplicationRecorder(datastore, f"quick_{uuid4().hex[:8]}")
    recorder.create_table()
    return recorder


def _prepared_names(datastore: PostgresDatastore) -> list[str]:
    return datastore.run(
        lambda conn: [
            str(row[0]) for row in conn.execute("SELECT name FROM pg_prepared_statements")
        ],
        what="Listing prepared statements",
        transaction=False,
    )


def test_saves_and_reads_are_prepared_once_and_run_the_quick_way(
    postgres_test_database: dict[str, Any],
) -> None:
    datastore = _one_connection(postgres_test_database)
    recorder = _recorder(datastore)
    originator_id = uuid4()
    for version in (1, 2):
        recorder.insert_events([StoredEvent(originator_id, version, "topic:é", b"\x00\xff")])
        events = recorder.select_events(originator_id)
    assert events == [
        StoredEvent(originator_id, 1, "topic:é", b"\x00\xff"),
        StoredEvent(originator_id, 2, "topic:é", b"\x00\xff"),
    ]
    notifications = recorder.select_notifications(1, 10)
    assert [(n.id, n.originator_id, n.originator_version) for n in notifications] == [
        (1, originator_id, 1),
        (2, originator_id, 2),
    ]
    # The insert, the read of the events and the read of the notifications: once each.
    quick = sorted(name for name in _prepared_names(datastore) if name.startswith("_es_quick"))
    assert quick == ["_es_quick_0", "_es_quick_1", "_es_quick_2"]
    datastore.close()


def test_statements_deallocated_by_discard_all_are_prepared_again(
    postgres_test_database: dict[str, Any],
) -> None:
    datastore = _one_connection(postgres_test_database)
    recorder = _recorder(datastore)
    originator_id = uuid4()
    recorder.insert_events([event(originator_id, 1)])
    assert len(recorder.select_events(originator_id)) == 1
    datastore.run(lambda conn: conn.execute("DISCARD ALL"), what="Discarding", transaction=False)
    recorder.insert_events([event(originator_id, 2)])
    assert [e.originator_version for e in recorder.select_events(originator_id)] == [1, 2]
    datastore.close()


def test_a_topic_with_a_nul_is_refused_not_cut(postgres_test_database: dict[str, Any]) -> None:
    """libpq takes text parameters up to their first NUL: such a topic goes psycopg's
    way, which refuses it, rather than recording a topic cut short."""
    datastore = _one_connection(postgres_test_database)
    recorder = _recorder(datastore)
    originator_id = uuid4()
    with pytest.raises(PersistenceError):
        recorder.insert_events([StoredEvent(originator_id, 1, "topic:\x00cut", b"{}")])
    assert recorder.select_events(originator_id) == []
    datastore.close()


def test_results_of_other_column_types_are_loaded_as_psycopg_loads_them(
    postgres_test_database: dict[str, Any],
) -> None:
    datastore = _one_connection(postgres_test_database)
    query = b"SELECT %s::numeric / 2, %s::bigint, %s::text, %s::bytea, NULL::uuid"
    params = ["3", 7, "é", b"\x00"]
    for _ in range(2):  # the first result loaded by psycopg, then psycopg's way
        rows = datastore.run(
            lambda conn: conn.fetch_all(query, params), what="Selecting", transaction=False
        )
        assert rows == [(Decimal("1.5"), 7, "é", b"\x00", None)]
    datastore.close()


def test_ctrl_c_cancels_a_quick_statement_waiting_on_a_lock(
    postgres_test_database: dict[str, Any],
) -> None:
    datastore = _one_connection(postgres_test_database)
    recorder = _recorder(datastore)
    originator_id = uuid4()
    recorder.insert_events([StoredEvent(originator_id, 1, "topic", b"state")])
    assert len(recorder.select_events(originator_id)) == 1  # (prepared)
    settings = {k: postgres_test_database[k] for k in ("dbname", "host", "port", "user")}
    with psycopg.connect(**settings, password=postgres_test_database["password"]) as blocker:
        blocker.execute(f"LOCK TABLE {recorder.events_table_name} IN ACCESS EXCLUSIVE MODE")
        # Ctrl-C after 0.3 s; the lock let go after 10 s whatever happens (so that a
        # statement deaf to Ctrl-C fails the test instead of hanging it).
        interrupt = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        release = threading.Timer(10.0, blocker.rollback)
        started = time.monotonic()
        interrupt.start()
        release.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                recorder.select_events(originator_id)
            waited = time.monotonic() - started
        finally:
            interrupt.cancel()
            release.cancel()
        assert waited < 5.0, f"Ctrl-C was heard only after {waited:.1f} s"
        # The statement was cancelled in the server: the lock is still only the blocker's.
        waiting = blocker.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        ).fetchone()
        assert waiting == (0,)
        blocker.rollback()
    # The connection serves the next statement.
    assert [e.originator_version for e in recorder.select_events(originator_id)] == [1]
    datastore.close()
