"""The notices that follow parallel writes on PostgreSQL: sent by a thread of each
recorder, on a connection of its own (not the pool's), replaced when it is lost,
closed with the datastore, and a child process's own after a fork.

Needs a server (see ``postgres_test_database`` in conftest.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from conftest import postgres_datastore, skip_module_unless_postgres
from recorder_contract import event

from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

skip_module_unless_postgres()


def _datastore(settings: dict[str, Any], **kwargs: Any) -> PostgresDatastore:
    # A name of its own: its connections are found by it in pg_stat_activity.
    return postgres_datastore(settings, application_name=f"nt_{uuid4().hex[:10]}", **kwargs)


def _recorder(datastore: PostgresDatastore) -> PostgresApplicationRecorder:
    recorder = PostgresApplicationRecorder(datastore, f"nt_{uuid4().hex[:8]}")
    recorder.create_table()
    return recorder


@contextmanager
def _listening(settings: dict[str, Any], channel: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(**settings, autocommit=True) as listener:
        listener.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
        yield listener


def _notices(listener: psycopg.Connection[Any], timeout: float = 5.0) -> list[psycopg.Notify]:
    return list(listener.notifies(timeout=timeout, stop_after=1))


def _backends(settings: dict[str, Any], application_name: str) -> list[tuple[int, str]]:
    """The pids and last statements of the sessions named ``application_name``."""
    with psycopg.connect(**settings, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s ORDER BY pid",
            (application_name,),
        ).fetchall()
    return [(int(pid), str(query)) for pid, query in rows]


def _notifying_pid(settings: dict[str, Any], datastore: PostgresDatastore) -> int:
    pids = [
        pid for pid, query in _backends(settings, datastore.application_name) if "NOTIFY" in query
    ]
    assert len(pids) == 1, pids
    return pids[0]


def test_a_notice_needs_no_connection_of_the_pool(postgres_test_database: dict[str, Any]) -> None:
    """While every pooled connection is taken (a long transaction), a commit's notice
    still goes out: the notifier has a connection of its own."""
    datastore = _datastore(postgres_test_database, pool_size=1, max_overflow=0, pool_timeout=10)
    recorder = _recorder(datastore)
    with _listening(postgres_test_database, recorder.channel) as listener:
        recorder.insert_events([event(uuid4(), 1)])
        assert len(_notices(listener)) == 1
        with datastore.transaction():  # the pool's only connection
            recorder._notify_after_commit(None)  # as a writer does after its commit
            assert len(_notices(listener, timeout=3)) == 1, "the notice waited for the pool"
    datastore.close()


def test_the_notifier_connects_again_after_its_connection_is_killed(
    postgres_test_database: dict[str, Any],
) -> None:
    """A notifier's connection lost while idle (here killed) is replaced at the next
    notice, which is not lost."""
    datastore = _datastore(postgres_test_database)
    recorder = _recorder(datastore)
    with _listening(postgres_test_database, recorder.channel) as listener:
        recorder.insert_events([event(uuid4(), 1)])
        assert len(_notices(listener)) == 1
        killed = _notifying_pid(postgres_test_database, datastore)
        with psycopg.connect(**postgres_test_database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (killed,))
        time.sleep(0.2)
        for version in (2, 3):  # every commit is still followed by a notice
            recorder.insert_events([event(uuid4(), version)])
            received = _notices(listener)
            assert len(received) == 1, "no notice after the notifier's connection was killed"
            assert received[0].pid != killed
    datastore.close()


def test_closing_the_datastore_closes_the_notifiers_connection(
    postgres_test_database: dict[str, Any],
) -> None:
    datastore = _datastore(postgres_test_database)
    recorder = _recorder(datastore)
    with _listening(postgres_test_database, recorder.channel) as listener:
        recorder.insert_events([event(uuid4(), 1)])
        assert len(_notices(listener)) == 1
        assert _notifying_pid(postgres_test_database, datastore)
    datastore.close()
    deadline = time.monotonic() + 5
    while _backends(postgres_test_database, datastore.application_name):
        assert time.monotonic() < deadline, "a connection is left open after close()"
        time.sleep(0.05)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # (fork of a threaded process)
def test_a_forked_child_notifies_on_a_connection_of_its_own(
    postgres_test_database: dict[str, Any],
) -> None:
    """A child process inherits its parent's notifier: it opens its own connection,
    and leaves its parent's alone."""
    datastore = _datastore(postgres_test_database)
    recorder = _recorder(datastore)
    with _listening(postgres_test_database, recorder.channel) as listener:
        recorder.insert_events([event(uuid4(), 1)])
        parents = _notices(listener)
        assert len(parents) == 1
        notifier = recorder._notifier
        assert notifier is not None
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            code = 1
            try:
                notifier.signal()
                notifier.close()  # sends the notice, if the thread has not yet
                code = 0
            finally:
                sys.stdout.flush()
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        childs = _notices(listener)
        assert len(childs) == 1, "no notice from the child"
        assert childs[0].pid != parents[0].pid, "the child used its parent's connection"
        recorder.insert_events([event(uuid4(), 2)])  # the parent's connection still serves
        again = _notices(listener)
        assert [n.pid for n in again] == [parents[0].pid]
    datastore.close()


def test_subscriptions_and_listeners_stop_at_once(postgres_test_database: dict[str, Any]) -> None:
    """Stopping interrupts the wait for a notice under way: a subscription's exit, or
    a listener's stop, does not wait out the listening thread's timeout (0.5 s)."""
    from eventsourcing.dcb.api import DCBEvent
    from eventsourcing.dcb.postgres_tt import PostgresDCBRecorderTT
    from eventsourcing.postgres import PostgresListener

    datastore = _datastore(postgres_test_database)
    recorder = _recorder(datastore)
    recorder.insert_events([event(uuid4(), 1)])
    dcb = PostgresDCBRecorderTT(datastore, events_table_name=f"nt_{uuid4().hex[:8]}")
    dcb.create_table()
    dcb.append([DCBEvent(type="T", data=b"", tags=[])])
    for subscription in (recorder.subscribe(gt=0), dcb.subscribe()):
        with subscription:
            next(subscription)
            time.sleep(0.1)  # (the listening thread is waiting by now)
            started = time.monotonic()
        assert time.monotonic() - started < 0.25, type(subscription).__name__
    stop = recorder.listen(lambda: None)
    assert stop is not None
    time.sleep(0.1)
    started = time.monotonic()
    stop()
    assert time.monotonic() - started < 0.25
    listener = PostgresListener(datastore, recorder.channel)
    listener.interrupt()
    started = time.monotonic()
    assert listener.wait(timeout=5.0) is False
    assert time.monotonic() - started < 0.25
    listener.close()
    datastore.close()


def test_a_listener_waits_on_a_descriptor_above_1023(
    postgres_test_database: dict[str, Any],
) -> None:
    """A process holding many files (a busy server) gives the listener's connection a
    descriptor number that select() refuses."""
    resource = pytest.importorskip("resource")
    from eventsourcing.postgres import PostgresListener

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"at most {hard} open files here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    fillers: list[int] = []
    datastore = _datastore(postgres_test_database)
    try:
        while not fillers or fillers[-1] < 1030:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        recorder = _recorder(datastore)
        listener = PostgresListener(datastore, recorder.channel)
        try:
            assert listener._conn is not None and listener._conn.pgconn.socket > 1023
            recorder.insert_events([event(uuid4(), 1)])  # (notified after its commit)
            assert listener.wait(timeout=5.0) is True
        finally:
            listener.close()
    finally:
        datastore.close()
        for descriptor in fillers:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
