"""PostgreSQL outages ridden out: faults injected by a TCP proxy between the datastore
and the server (refused connections, dropped connections, an answer lost after the
commit), the listener's return, and the connection settings operators rely on.

Needs a server (see ``postgres_test_database`` in conftest.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from conftest import postgres_datastore, skip_module_unless_postgres
from recorder_contract import event
from tcp_proxy import TCPProxy, tcp_proxy

from eventsourcing.persistence import (
    OperationalError,
    RecordConflictError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import (
    Factory,
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresProcessRecorder,
)
from eventsourcing.utils import Environment

skip_module_unless_postgres()

LOGGER = "eventsourcing.postgres"


@pytest.fixture
def proxy(postgres_test_database: dict[str, Any]) -> Iterator[TCPProxy]:
    with tcp_proxy(str(postgres_test_database["host"]), int(postgres_test_database["port"])) as p:
        yield p
        # Closed while the proxy still forwards: a notice still to send (its thread
        # retries) would otherwise fail after the test and log to a closed stream.
        close_opened()


_opened: list[PostgresDatastore] = []


def close_opened() -> None:
    while _opened:
        _opened.pop().close()


@pytest.fixture(autouse=True)
def close_datastores() -> Iterator[None]:
    """Every datastore a test opens with ``direct`` is closed after it, even if it fails."""
    yield
    close_opened()


def direct(settings: dict[str, Any], **kwargs: Any) -> PostgresDatastore:
    """A datastore of the test database (``kwargs`` as PostgresDatastore takes them),
    closed after the test."""
    kwargs.setdefault("pool_size", 1)
    datastore = postgres_datastore(settings, **kwargs)
    _opened.append(datastore)
    return datastore


def through(proxy: TCPProxy, settings: dict[str, Any], **kwargs: Any) -> PostgresDatastore:
    """A datastore whose connections go through the proxy."""
    kwargs.setdefault("pool_size", 2)
    kwargs.setdefault("connect_timeout", 2)
    return direct(dict(settings, host="127.0.0.1", port=proxy.port), **kwargs)


def on_new_table(
    datastore: PostgresDatastore,
    prefix: str,
    recorder_class: type[PostgresAggregateRecorder] = PostgresApplicationRecorder,
) -> Any:
    """A recorder on a table of its own (``prefix`` and a random suffix), created."""
    recorder = recorder_class(datastore, f"{prefix}_{uuid4().hex[:8]}")
    recorder.create_table()
    return recorder


def rows_of(settings: dict[str, Any], table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(**settings) as conn:
        statement = psycopg.sql.SQL("SELECT * FROM {} ORDER BY 1").format(
            psycopg.sql.Identifier(table)
        )
        return list(conn.execute(statement).fetchall())


def back_after(proxy: TCPProxy, seconds: float) -> threading.Thread:
    """Refuse connections now, accept them again after ``seconds``."""
    proxy.refuse()

    def come_back() -> None:
        time.sleep(seconds)
        proxy.accept_again()

    thread = threading.Thread(target=come_back)
    thread.start()
    return thread


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


# ---------------------------------------------------------------------------
# Lost acknowledgements: the server committed, the answer never came.


def test_a_save_whose_answer_is_lost_after_commit_succeeds_once(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    recorder = on_new_table(through(proxy, postgres_test_database), "lostack")
    first = event(uuid4(), 1)
    recorder.insert_events([first])
    saved = [event(uuid4(), 1), event(uuid4(), 1)]
    # (The statement is prepared first, in a round trip of its own: cut when it is run,
    # at the message that carries the values.)
    proxy.cut_after(saved[1].state)
    ids = recorder.insert_events(saved)
    assert proxy.cuts == 1  # the answer was lost, and the write retried
    assert list(ids or []) == [2, 3]
    assert recorder.select_notifications(1, 10)[1:] == recorder.select_notifications(2, 2)
    assert [n.originator_id for n in recorder.select_notifications(2, 10)] == [
        s.originator_id for s in saved
    ]
    assert len(rows_of(postgres_test_database, recorder.events_table_name)) == 3


def test_a_tracked_write_whose_answer_is_lost_succeeds_once(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    datastore = through(proxy, postgres_test_database)
    suffix = uuid4().hex[:8]
    recorder = PostgresProcessRecorder(datastore, f"lostack_{suffix}", f"lostack_t_{suffix}")
    recorder.create_table()
    tracked = event(uuid4(), 1)
    proxy.cut_after(tracked.state)
    ids = recorder.insert_events([tracked], tracking=Tracking("Up", 5))
    assert proxy.cuts == 1
    assert list(ids or []) == [1]
    assert recorder.max_tracking_id("Up") == 5
    # Tracking alone (no events), its answer lost: recorded once, no error.
    proxy.cut_after(b"UPDATE")
    recorder.insert_events([], tracking=Tracking("Up", 6, previous_notification_id=5))
    assert proxy.cuts == 2
    assert recorder.max_tracking_id("Up") == 6


def test_an_aggregate_recorders_write_whose_answer_is_lost_succeeds_once(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    recorder = on_new_table(
        through(proxy, postgres_test_database), "lostack_snap", PostgresAggregateRecorder
    )
    snapshot = event(uuid4(), 3)
    proxy.cut_after(b"COMMIT")  # (this write is an explicit transaction)
    recorder.insert_events([snapshot])
    assert proxy.cuts == 1
    assert recorder.select_events(snapshot.originator_id) == [snapshot]


class IndexingRecorder(PostgresApplicationRecorder):
    """Writes a row of its own in each save's transaction (an extension)."""

    def construct_create_table_statements(self) -> list[Any]:
        return [
            *super().construct_create_table_statements(),
            psycopg.sql.SQL("CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY)").format(
                psycopg.sql.Identifier(self.events_table_name + "_index")
            ),
        ]

    def _insert_events(self, cursor: Any, stored_events: Any, **kwargs: Any) -> Any:
        ids = super()._insert_events(cursor, stored_events, **kwargs)
        statement = psycopg.sql.SQL("INSERT INTO {} VALUES (%s)").format(
            psycopg.sql.Identifier(self.events_table_name + "_index")
        )
        for stored in stored_events:
            cursor.execute(statement, (stored.originator_id,))
        return ids


def test_an_extended_recorders_write_whose_answer_is_lost_succeeds_once(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    recorder = on_new_table(through(proxy, postgres_test_database), "lostack_ext", IndexingRecorder)
    proxy.cut_after(b"COMMIT")
    assert recorder.insert_events([event(uuid4(), 1)]) == [1]
    assert proxy.cuts == 1
    assert len(rows_of(postgres_test_database, recorder.events_table_name + "_index")) == 1


def test_a_genuine_conflict_met_on_a_retry_still_raises(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    recorder = on_new_table(through(proxy, postgres_test_database), "conflict")
    originator_id = uuid4()
    other = StoredEvent(originator_id, 1, "topic:A", b"another writer's state")
    other_writer = direct(postgres_test_database)
    PostgresApplicationRecorder(other_writer, recorder.events_table_name).insert_events([other])
    other_writer.close()
    # The first try is cut before the server sees it; the retry meets the other row.
    proxy.cut_after(b"INSERT INTO", forward=False)
    with pytest.raises(RecordConflictError, match="already recorded"):
        recorder.insert_events([event(originator_id, 1)])
    assert proxy.cuts == 1
    assert recorder.select_events(originator_id) == [other]


# ---------------------------------------------------------------------------
# Outages: refused, dropped, too long.


def test_a_save_during_a_short_outage_succeeds_after_it(
    proxy: TCPProxy, postgres_test_database: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    recorder = on_new_table(through(proxy, postgres_test_database), "outage")
    recorder.insert_events([event(uuid4(), 1)])
    returned = back_after(proxy, 1.5)
    started = time.monotonic()
    results: list[Any] = []

    def save() -> None:
        results.append(recorder.insert_events([event(uuid4(), 1)]))

    savers = [threading.Thread(target=save) for _ in range(3)]
    for saver in savers:
        saver.start()
    for saver in savers:
        saver.join(timeout=30)
    returned.join()
    assert time.monotonic() - started >= 1.0  # they waited for the server
    assert sorted(ids[0] for ids in results) == [2, 3, 4]
    # One warning for the outage (three savers met it), one line when it was over.
    assert len(messages(caplog, logging.WARNING)) == 1, messages(caplog, logging.WARNING)
    assert "retrying for up to 30 s" in messages(caplog, logging.WARNING)[0]
    assert len(messages(caplog, logging.INFO)) == 1 and "back" in caplog.text


def test_connections_dropped_between_operations_are_replaced(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    recorder = on_new_table(through(proxy, postgres_test_database), "dropped")
    for version in range(1, 4):
        proxy.drop_all()  # the pooled connection is broken under the datastore's feet
        recorder.insert_events([event(uuid4(), version)])
    assert recorder.max_notification_id() == 3


def test_a_connection_dropped_during_a_read_is_retried(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    recorder = on_new_table(through(proxy, postgres_test_database), "dropread")
    recorder.insert_events([event(uuid4(), 1)])
    proxy.cut_after(b"SELECT", forward=False)
    assert len(recorder.select_notifications(1, 10)) == 1
    assert proxy.cuts == 1


def test_an_outage_longer_than_the_retry_timeout_is_one_clear_error(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    recorder = on_new_table(through(proxy, postgres_test_database, retry_timeout=1.0), "toolong")
    proxy.refuse()
    started = time.monotonic()
    with pytest.raises(OperationalError) as info:
        recorder.insert_events([event(uuid4(), 1)])
    waited = time.monotonic() - started
    assert 0.9 <= waited < 10
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("Inserting 1 event")
    assert f"127.0.0.1:{proxy.port}" in message and "gave up after retrying" in message
    assert "retry timeout 1 s" in message and "Connection refused" in message
    proxy.accept_again()
    assert recorder.insert_events([event(uuid4(), 1)]) == [1]


def test_errors_that_are_not_transient_are_not_retried(
    postgres_test_database: dict[str, Any],
) -> None:
    settings = dict(postgres_test_database, dbname=f"no_such_db_{uuid4().hex[:6]}")
    datastore = direct(settings)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="does not exist"):
        PostgresApplicationRecorder(datastore).max_notification_id()
    assert time.monotonic() - started < 10  # (the retry timeout is 30 s)


def test_a_multithreaded_system_rides_out_a_short_outage(
    proxy: TCPProxy, postgres_env: dict[str, str]
) -> None:
    from eventsourcing.system import MultiThreadedRunner
    from examples.dogschool import Counters, DogSchool, system

    env = dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres")
    env["POSTGRES_HOST"], env["POSTGRES_PORT"] = "127.0.0.1", str(proxy.port)
    with MultiThreadedRunner(system, env=env) as runner:
        school, counters = runner.get(DogSchool), runner.get(Counters)
        dog_id = school.register_dog("Rex")
        school.add_trick(dog_id, "sit")
        runner.wait(timeout=20)
        returned = back_after(proxy, 1.5)
        for _ in range(3):  # commands given during the outage wait for the server
            school.add_trick(dog_id, "sit")
        returned.join()
        runner.wait(timeout=30)  # (raises a follower's error, had one stopped)
        assert counters.get_count("sit") == 4
        assert school.get_dog(dog_id)["tricks"] == ("sit",) * 4


# ---------------------------------------------------------------------------
# The listener comes back.


def test_listening_resumes_after_the_connection_is_lost(
    proxy: TCPProxy, postgres_test_database: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    table = f"relisten_{uuid4().hex[:8]}"
    writer_store = direct(postgres_test_database)
    writer = PostgresApplicationRecorder(writer_store, table)
    writer.create_table()
    listener_store = through(proxy, postgres_test_database)
    woken = threading.Event()
    stop = PostgresApplicationRecorder(listener_store, table).listen(woken.set)
    assert stop is not None
    try:
        writer.insert_events([event(uuid4(), 1)])
        assert woken.wait(5)
        back_after(proxy, 0.5).join()  # the listening connection is dropped, then refused
        # Once listening again, the callback is called (commits may have been missed).
        assert woken.wait(10)
        time.sleep(0.2)
        woken.clear()
        started = time.monotonic()
        writer.insert_events([event(uuid4(), 1)])
        assert woken.wait(5), "no wake-up after the listener's connection came back"
        assert time.monotonic() - started < 2.5
    finally:
        stop()
    assert "listening on" in caplog.text and "Stopped listening" not in caplog.text
    writer_store.close()
    listener_store.close()


# ---------------------------------------------------------------------------
# Connections: lazily opened, named, configured as libpq users expect.


def _connections(settings: dict[str, Any]) -> list[tuple[str, str]]:
    with psycopg.connect(**settings) as conn:
        rows = conn.execute(
            "SELECT application_name, state FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (settings["dbname"],),
        ).fetchall()
    return [(str(name), str(state)) for name, state in rows]


def _names_once_settled(settings: dict[str, Any], expected: list[str]) -> list[str]:
    """The names of the database's connections, once they are ``expected`` (a closed
    connection's server process may take a moment to go), or after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        names = sorted(name for name, _ in _connections(settings))
        if names == expected or time.monotonic() > deadline:
            return names
        time.sleep(0.05)


def test_connections_are_opened_when_needed_and_named(
    postgres_env: dict[str, str],
) -> None:
    settings = {
        "dbname": postgres_env["POSTGRES_DBNAME"],
        "host": postgres_env["POSTGRES_HOST"],
        "port": postgres_env["POSTGRES_PORT"],
        "user": postgres_env["POSTGRES_USER"],
    }
    env = dict(postgres_env, POSTGRES_APPLICATION_NAME="Counters worker 0/2")
    factory = Factory(Environment("Counters", env))
    recorder = factory.application_recorder()
    recorder.insert_events([event(uuid4(), 1)])
    recorder.insert_events([event(uuid4(), 1)])
    names = _names_once_settled(settings, ["Counters worker 0/2"])
    # Writes and the notifier's wake-ups (sent from a thread of its own) may overlap: at
    # most two connections are kept, both named.
    assert names in (["Counters worker 0/2"], ["Counters worker 0/2"] * 2), names
    factory.close()
    assert _names_once_settled(settings, []) == []
    # Without the setting, the application's name.
    factory = Factory(Environment("Counters", postgres_env))
    factory.application_recorder().max_notification_id()
    assert _names_once_settled(settings, ["Counters"]) == ["Counters"]
    factory.close()


def test_libpq_environment_and_url_settings(
    postgres_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the database named: host, port and user come from libpq's environment.
    monkeypatch.setenv("PGHOST", postgres_env["POSTGRES_HOST"])
    monkeypatch.setenv("PGPORT", postgres_env["POSTGRES_PORT"])
    monkeypatch.setenv("PGUSER", postgres_env["POSTGRES_USER"])
    factory = Factory(Environment("Dogs", {"POSTGRES_DBNAME": postgres_env["POSTGRES_DBNAME"]}))
    assert factory.application_recorder().insert_events([event(uuid4(), 1)]) == [1]
    # Nothing unset is passed (an empty password would hide PGPASSWORD and PGPASSFILE).
    assert {"host", "port", "user", "password"}.isdisjoint(factory.datastore.connect_kwargs())
    assert f"{postgres_env['POSTGRES_HOST']}:{postgres_env['POSTGRES_PORT']}" in (
        factory.datastore.describe()
    )
    factory.close()
    for name in ("PGHOST", "PGPORT", "PGUSER"):
        monkeypatch.delenv(name)
    # A libpq URI, alone.
    url = (
        f"postgresql://{postgres_env['POSTGRES_USER']}@{postgres_env['POSTGRES_HOST']}:"
        f"{postgres_env['POSTGRES_PORT']}/{postgres_env['POSTGRES_DBNAME']}"
    )
    factory = Factory(Environment("Dogs", {"POSTGRES_URL": url}))
    assert factory.application_recorder().insert_events([event(uuid4(), 1)]) == [2]
    factory.close()
    with pytest.raises(OSError, match="^DOGS_POSTGRES_URL is not a libpq"):
        Factory(Environment("Dogs", {"DOGS_POSTGRES_URL": "postgresql://[bad"}))


PASSWORDS_GIVEN: list[str] = []


def fresh_password() -> str:
    PASSWORDS_GIVEN.append(f"token-{len(PASSWORDS_GIVEN)}")
    return PASSWORDS_GIVEN[-1]


def test_a_password_function_is_asked_for_each_new_connection(
    postgres_env: dict[str, str],
) -> None:
    env = dict(postgres_env, POSTGRES_GET_PASSWORD_TOPIC=f"{__name__}:fresh_password")
    PASSWORDS_GIVEN.clear()
    factory = Factory(Environment("Dogs", env))
    factory.application_recorder().insert_events([event(uuid4(), 1)])
    assert len(PASSWORDS_GIVEN) >= 2  # (the first connection, and the pool's)
    factory.close()
    bad = dict(postgres_env, POSTGRES_GET_PASSWORD_TOPIC=f"{__name__}:PASSWORDS_GIVEN")
    with pytest.raises(OSError, match="POSTGRES_GET_PASSWORD_TOPIC .* names no function"):
        Factory(Environment("Dogs", bad))


def test_settings_accepted_for_compatibility_and_checked(postgres_env: dict[str, str]) -> None:
    env = dict(
        postgres_env,
        SINGLE_ROW_TRACKING="t",
        POSTGRES_ENABLE_DB_FUNCTIONS="no",
        POSTGRES_MAX_WAITING="7",
        RETRY_TIMEOUT="12",
    )
    factory = Factory(Environment("Dogs", env))
    assert factory.datastore.max_waiting == 7
    assert factory.datastore.retry_timeout == 12.0
    factory.close()
    factory = Factory(Environment("Dogs", dict(env, POSTGRES_RETRY_TIMEOUT="3")))
    assert factory.datastore.retry_timeout == 3.0  # the store's own setting first
    factory.close()
    with pytest.raises(OSError, match="^DOGS_SINGLE_ROW_TRACKING must be a boolean"):
        Factory(Environment("Dogs", dict(env, DOGS_SINGLE_ROW_TRACKING="perhaps")))
    with pytest.raises(OSError, match="^RETRY_TIMEOUT must be"):
        Factory(Environment("Dogs", dict(env, RETRY_TIMEOUT="-1")))


# ---------------------------------------------------------------------------
# Which failures are retried.


@pytest.mark.parametrize(
    "error, transient",
    [
        (psycopg.OperationalError("connection failed: ... failed: Connection refused"), True),
        (psycopg.OperationalError("consuming input failed: server closed the connection"), True),
        (psycopg.OperationalError("... FATAL: the database system is starting up"), True),
        (psycopg.OperationalError("... FATAL: the database system is shutting down"), True),
        (psycopg.OperationalError("... FATAL: sorry, too many clients already"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
        (psycopg.errors.DeadlockDetected("deadlock detected"), True),
        (psycopg.OperationalError('... FATAL: database "x" does not exist'), False),
        (psycopg.OperationalError('... FATAL: password authentication failed for "u"'), False),
        (psycopg.OperationalError("failed to resolve host 'nosuch': Name not known"), False),
        (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), False),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), False),
        (psycopg.errors.SyntaxError("syntax error"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_which_failures_are_transient(error: psycopg.Error, transient: bool) -> None:
    from eventsourcing._postgres_connections import is_transient

    assert is_transient(error) is transient


def test_a_deadlock_is_retried_without_announcing_an_outage(
    postgres_test_database: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    datastore = direct(postgres_test_database)
    tries: list[int] = []

    def deadlocked_once(conn: Any) -> str:
        tries.append(1)
        if len(tries) == 1:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$")
        return "done"

    assert datastore.run(deadlocked_once, what="Deadlocking") == "done"
    assert len(tries) == 2
    assert messages(caplog, logging.WARNING) == [] and messages(caplog, logging.INFO) == []


def test_closing_the_datastore_stops_a_retry_in_progress(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    recorder = on_new_table(through(proxy, postgres_test_database), "closing")
    proxy.refuse()
    outcome: list[BaseException] = []

    def save() -> None:
        try:
            recorder.insert_events([event(uuid4(), 1)])
        except BaseException as error:
            outcome.append(error)

    saver = threading.Thread(target=save)
    saver.start()
    time.sleep(0.5)  # retrying now
    started = time.monotonic()
    recorder.datastore.close()
    saver.join(timeout=30)
    assert time.monotonic() - started < 5  # not the 30 s of the retry timeout
    assert len(outcome) == 1 and "closed" in str(outcome[0])


def test_closing_the_datastore_ends_a_notifier_retrying_a_notice(
    proxy: TCPProxy,
    postgres_test_database: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A recorder's notifier thread still retrying a notice when its datastore closes
    (the server unreachable) gives it up: close() ends the thread, which then makes no
    more connection attempts and logs nothing (not after the 30 s of the retry timeout).
    A notice due meanwhile is tried once by close(), which says it could not be sent."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    datastore = through(proxy, postgres_test_database)
    recorder = on_new_table(datastore, "notifier")
    refused: list[int] = []
    retrying = threading.Event()
    connect = datastore.connect

    def counted_connect() -> psycopg.Connection[Any]:  # (the notifier's new connections)
        try:
            return connect()
        except psycopg.OperationalError:
            refused.append(1)
            if len(refused) > 1:
                retrying.set()
            raise

    monkeypatch.setattr(datastore, "connect", counted_connect)
    recorder.insert_events([event(uuid4(), 1)])
    proxy.refuse()
    recorder._notify_after_commit(None)  # as a writer does after its commit
    assert retrying.wait(timeout=20), "the notifier did not retry"
    notifier = recorder._notifier
    assert notifier is not None and notifier._thread is not None
    recorder._notify_after_commit(None)  # another, due while the thread retries
    before = len(caplog.records)
    datastore.close()
    # Ended: it connects and logs no more (without the fix it retried for 30 s more,
    # then logged that it could not notify).
    assert not notifier._thread.is_alive(), "the notifier's thread outlived close()"
    closing = [r.getMessage() for r in caplog.records[before:] if r.name == LOGGER]
    assert len(closing) == 1 and closing[0].startswith("Closing"), closing
    assert f"Notifying listeners of {recorder.channel!r}: cannot use" in closing[0]


def test_an_exhausted_pool_is_reported_not_retried(
    postgres_test_database: dict[str, Any],
) -> None:
    settings = postgres_test_database
    recorder = on_new_table(direct(settings, max_overflow=0, pool_timeout=0.5), "exhausted")
    with recorder.datastore.transaction(commit=False):  # holds the only connection
        started = time.monotonic()
        with pytest.raises(OperationalError, match="no connection to .* free within 0.5s"):
            recorder.max_notification_id()
        assert time.monotonic() - started < 5  # (not the 30 s of the retry timeout)
    assert recorder.max_notification_id() is None
