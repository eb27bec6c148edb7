"""PostgreSQL recorders: the shared contract, bad input, the factory.

Needs a server (see ``postgres_test_database`` in conftest.py): skipped without
one, failed without one when REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from conftest import postgres_datastore, skip_module_unless_postgres
from recorder_contract import DatabaseRecorders, event

from eventsourcing.persistence import (
    InfrastructureFactory,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    RecordConflictError,
    StoredEvent,
    Tracking,
    TrackingConflictError,
)
from eventsourcing.postgres import (
    Factory,
    PooledConnection,
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresProcessRecorder,
)
from eventsourcing.utils import Environment

skip_module_unless_postgres()


def make_datastore(settings: dict[str, Any], **kwargs: Any) -> PostgresDatastore:
    kwargs.setdefault("pool_size", 2)
    return postgres_datastore(settings, **kwargs)


def factory_env(settings: dict[str, Any], name: str, **extra: str) -> Environment:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(settings["dbname"]),
        "POSTGRES_HOST": str(settings["host"]),
        "POSTGRES_PORT": str(settings["port"]),
        "POSTGRES_USER": str(settings["user"]),
        "POSTGRES_PASSWORD": str(settings["password"]),
        "POSTGRES_POOL_SIZE": "2",
    }
    env.update(extra)
    return Environment(name, env)


class TestPostgresRecorders(DatabaseRecorders):
    supports_concurrency = True
    aggregate_recorder_class = PostgresAggregateRecorder
    application_recorder_class = PostgresApplicationRecorder
    process_recorder_class = PostgresProcessRecorder

    @pytest.fixture(autouse=True)
    def _datastore(self, postgres_test_database: dict[str, Any]) -> Iterator[None]:
        self.datastore = make_datastore(postgres_test_database, pool_size=3)
        yield
        self.datastore.close()


class TestPostgresRecordersInSchema(TestPostgresRecorders):
    @pytest.fixture(autouse=True)
    def _datastore(self, postgres_test_database: dict[str, Any]) -> Iterator[None]:
        self.datastore = make_datastore(postgres_test_database, schema='my "schema"; --')
        yield
        self.datastore.close()


def test_unreachable_port_fails_after_the_retry_timeout_with_one_line(
    postgres_test_database: dict[str, Any],
) -> None:
    datastore = make_datastore(
        {**postgres_test_database, "port": 1}, connect_timeout=2, retry_timeout=0.5
    )
    recorder = PostgresApplicationRecorder(datastore)
    started = time.monotonic()
    with pytest.raises(OperationalError) as info:
        recorder.max_notification_id()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "\n" not in message
    assert "127.0.0.1:1" in message and postgres_test_database["dbname"] in message
    assert "gave up after retrying" in message and "Connection refused" in message
    datastore.close()


def test_wrong_password_fails_with_one_line(postgres_test_database: dict[str, Any]) -> None:
    # Trust authentication accepts any password, so use a role that does not exist.
    datastore = make_datastore({**postgres_test_database, "user": "no_such_role_x"})
    started = time.monotonic()
    with pytest.raises(OperationalError) as info:
        PostgresApplicationRecorder(datastore).create_table()
    assert time.monotonic() - started < 5
    assert "\n" not in str(info.value)
    assert "no_such_role_x" in str(info.value)
    datastore.close()


def test_missing_table_is_a_programming_error(postgres_test_database: dict[str, Any]) -> None:
    datastore = make_datastore(postgres_test_database)
    with pytest.raises(ProgrammingError, match="absent_table"):
        PostgresApplicationRecorder(datastore, "absent_table").max_notification_id()
    datastore.close()


def test_too_long_table_name_is_refused(postgres_test_database: dict[str, Any]) -> None:
    datastore = make_datastore(postgres_test_database)
    with pytest.raises(ProgrammingError, match="63"):
        PostgresApplicationRecorder(datastore, "x" * 64)
    datastore.close()


def test_factory_requires_a_dbname_and_names_the_setting_with_its_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGDATABASE", raising=False)
    with pytest.raises(OSError) as info:
        Factory(Environment("Counters", {"POSTGRES_HOST": "h", "POSTGRES_USER": "u"}))
    assert str(info.value).startswith("COUNTERS_POSTGRES_DBNAME (or POSTGRES_DBNAME) is not set"), (
        info.value
    )
    # Host and user may be left to libpq (PGHOST, PGUSER, or its defaults).
    factory = Factory(Environment("app", {"POSTGRES_DBNAME": "d"}))
    assert "host" not in factory.datastore.connect_kwargs()
    assert "user" not in factory.datastore.connect_kwargs()


def test_factory_reads_every_setting() -> None:
    env = Environment(
        "Dogs",
        {
            "POSTGRES_DBNAME": "db",
            "POSTGRES_HOST": "h",
            "POSTGRES_PORT": "5433",
            "POSTGRES_USER": "u",
            "POSTGRES_PASSWORD": "p",
            "POSTGRES_SCHEMA": "s",
            "POSTGRES_CONNECT_TIMEOUT": "7",
            "POSTGRES_POOL_SIZE": "3",
            "POSTGRES_MAX_OVERFLOW": "4",
            "POSTGRES_CONN_MAX_AGE": "60",
            "POSTGRES_PRE_PING": "y",
            "POSTGRES_LOCK_TIMEOUT": "9",
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "11",
            "DOGS_POSTGRES_DBNAME": "dogs_db",
        },
    )
    datastore = Factory(env).datastore
    assert (datastore.dbname, datastore.host, datastore.port) == ("dogs_db", "h", 5433)
    assert (datastore.user, datastore.password, datastore.schema) == ("u", "p", "s")
    assert (datastore.connect_timeout, datastore.pool_size, datastore.max_overflow) == (7, 3, 4)
    assert (datastore.conn_max_age, datastore.pre_ping) == (60.0, True)
    assert (datastore.lock_timeout, datastore.idle_in_transaction_session_timeout) == (9, 11)
    assert "-c lock_timeout=9000" in datastore.connect_kwargs()["options"]


def test_synchronous_commit_off_is_an_option_and_bad_values_are_refused(
    postgres_test_database: dict[str, Any],
) -> None:
    def setting_in_use(factory: Factory) -> str:
        return factory.datastore.run(
            lambda conn: conn.execute("SHOW synchronous_commit").fetchone()[0],
            what="Reading synchronous_commit",
        )

    relaxed = Factory(factory_env(postgres_test_database, "app", POSTGRES_SYNCHRONOUS_COMMIT="OFF"))
    durable = Factory(factory_env(postgres_test_database, "app"))
    try:
        assert setting_in_use(relaxed) == "off"
        assert setting_in_use(durable) == "on"
    finally:
        relaxed.close()
        durable.close()
    with pytest.raises(OSError, match="POSTGRES_SYNCHRONOUS_COMMIT must be one of on, off"):
        Factory(factory_env(postgres_test_database, "app", POSTGRES_SYNCHRONOUS_COMMIT="never"))


def test_sessions_run_without_jit_and_keep_the_session_options_given_otherwise(
    postgres_test_database: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def settings_in_use(factory: Factory) -> tuple[str, ...]:
        return factory.datastore.run(
            lambda conn: tuple(
                conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("jit", "work_mem", "lock_timeout")
            ),
            what="Reading session settings",
        )

    # PGOPTIONS (libpq reads it only when no options are given) beside ours.
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=5MB")
    factory = Factory(factory_env(postgres_test_database, "app", POSTGRES_LOCK_TIMEOUT="3"))
    try:
        assert settings_in_use(factory) == ("off", "5MB", "3s")
    finally:
        factory.close()
    # The URI's options; a jit setting of the user's own wins over ours.
    monkeypatch.delenv("PGOPTIONS")
    uri = "postgresql:///?options=-c%20work_mem%3D6MB%20-c%20jit%3Don"
    factory = Factory(factory_env(postgres_test_database, "app", POSTGRES_URL=uri))
    try:
        assert settings_in_use(factory)[:2] == ("on", "6MB")
    finally:
        factory.close()


def test_factory_quotes_hostile_application_names(postgres_test_database: dict[str, Any]) -> None:
    hostile = 'x"; DROP TABLE y; --'
    factory = InfrastructureFactory.construct(factory_env(postgres_test_database, hostile))
    assert isinstance(factory, Factory)
    recorder = factory.process_recorder()
    snapshots = factory.aggregate_recorder("snapshots")
    a = uuid4()
    assert list(recorder.insert_events([event(a, 1)]) or []) == [1]
    snapshots.insert_events([event(a, 1)])
    assert snapshots.select_events(a) == [event(a, 1)]
    factory.close()
    with psycopg.connect(**postgres_test_database) as conn:
        names = {
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", ("x%",)
            )
        }
    assert names >= {f"{hostile.lower()}_events", f"{hostile.lower()}_snapshots"}
    assert f"{hostile.lower()}_tracking" in names


def test_factory_without_application_name(postgres_test_database: dict[str, Any]) -> None:
    factory = Factory(factory_env(postgres_test_database, ""))
    recorder = factory.application_recorder()
    assert recorder.events_table_name == "stored_events"  # type: ignore[attr-defined]
    factory.close()


def test_insert_sends_notify_on_commit(postgres_test_database: dict[str, Any]) -> None:
    datastore = make_datastore(postgres_test_database)
    recorder = PostgresApplicationRecorder(datastore, f"notify_{uuid4().hex[:8]}")
    recorder.create_table()
    with psycopg.connect(**postgres_test_database, autocommit=True) as listener:
        listener.execute(
            psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(recorder.channel))
        )
        for events in ([event(uuid4(), 1), event(uuid4(), 1)], [event(uuid4(), 1)]):
            recorder.insert_events(events)
            received = list(listener.notifies(timeout=10, stop_after=1))
            # A wake-up after each commit (the payload is empty: a listener reads
            # the log itself).
            assert [(n.channel, n.payload) for n in received] == [(recorder.channel, "")]
    datastore.close()


def test_lost_connections_are_replaced(postgres_test_database: dict[str, Any]) -> None:
    datastore = make_datastore(postgres_test_database, pool_size=2)
    recorder = PostgresApplicationRecorder(datastore, f"lost_{uuid4().hex[:8]}")
    recorder.create_table()
    recorder.insert_events([event(uuid4(), 1)])
    with psycopg.connect(**postgres_test_database, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (postgres_test_database["dbname"],),
        )
    time.sleep(0.2)
    assert list(recorder.insert_events([event(uuid4(), 1)]) or []) == [2]
    assert recorder.max_notification_id() == 2
    datastore.close()


def test_lock_timeout_is_an_operational_error(postgres_test_database: dict[str, Any]) -> None:
    datastore = make_datastore(postgres_test_database, lock_timeout=1)
    recorder = PostgresApplicationRecorder(datastore, f"locked_{uuid4().hex[:8]}")
    recorder.create_table()
    with psycopg.connect(**postgres_test_database) as blocker:
        _take_write_lock(blocker, psycopg.sql.Identifier(recorder.events_table_name))
        started = time.monotonic()
        with pytest.raises(OperationalError, match="lock timeout"):
            recorder.insert_events([event(uuid4(), 1)])
        assert time.monotonic() - started < 3  # not retried
        blocker.rollback()
    assert list(recorder.insert_events([event(uuid4(), 1)]) or []) == [1]
    datastore.close()


def test_closed_factory_refuses_work(postgres_test_database: dict[str, Any]) -> None:
    factory = Factory(factory_env(postgres_test_database, f"closed{uuid4().hex[:6]}"))
    recorder = factory.application_recorder()
    factory.close()
    with pytest.raises(InterfaceError, match="closed"):
        recorder.max_notification_id()


def test_datastores_and_factories_close_when_their_with_block_ends(
    postgres_test_database: dict[str, Any],
) -> None:
    # (With the 9.x settings this store takes and has no use for.)
    with make_datastore(
        postgres_test_database,
        pool_open_timeout=5.0,
        single_row_tracking=True,
        enable_db_functions=False,
    ) as datastore:
        recorder = PostgresApplicationRecorder(datastore, f"with_{uuid4().hex[:8]}")
        recorder.create_table()
        assert recorder.max_notification_id() in (None, 0)
    with pytest.raises(InterfaceError, match="closed"):
        recorder.max_notification_id()
    with Factory(factory_env(postgres_test_database, f"with{uuid4().hex[:6]}")) as factory:
        recorder = factory.application_recorder()
        assert recorder.max_notification_id() in (None, 0)
    with pytest.raises(InterfaceError, match="closed"):
        recorder.max_notification_id()


def test_listener_wakes_on_commit(postgres_test_database: dict[str, Any]) -> None:
    datastore = make_datastore(postgres_test_database)
    recorder = PostgresApplicationRecorder(datastore, f"listen_{uuid4().hex[:8]}")
    recorder.create_table()
    with recorder.open_listener() as listener:
        assert not listener.wait(0.05)
        recorder.insert_events([event(uuid4(), 1)])  # before waiting: not missed
        recorder.insert_events([event(uuid4(), 1)])
        started = time.monotonic()
        assert listener.wait(2)
        assert time.monotonic() - started < 1
        # Two commits wake it once, or twice if the second notice came late; no more.
        assert not (listener.wait(0.05) and listener.wait(0.05))
    datastore.close()


@pytest.mark.parametrize("tracked", [False, True], ids=["plain", "tracked"])
@pytest.mark.parametrize("held", ["write lock", "LOCK TABLE"])
def test_a_writer_waiting_for_the_write_lock_has_drawn_no_id_and_locked_no_row(
    postgres_test_database: dict[str, Any], tracked: bool, held: str
) -> None:
    """While another transaction holds the write lock, the waiting writer has not
    advanced the id sequence. A tracked writer has moved its tracking row first
    (writers cannot deadlock on it: the lock is held by a writer only while it draws
    ids, when it waits for nothing else). A writer holding ``LOCK TABLE ... IN
    EXCLUSIVE MODE`` (as earlier versions of this library took) is waited for too,
    before anything: an insert takes ROW EXCLUSIVE as it starts."""
    datastore, recorder = _recorder_at_position_1(postgres_test_database)
    events = psycopg.sql.Identifier(recorder.events_table_name)
    sequence = f"{recorder.events_table_name}_notification_id_seq"
    outcome: list[Any] = []

    def write() -> None:
        tracking = Tracking("up", 2, previous_notification_id=1) if tracked else None
        outcome.append(recorder.insert_events([event(uuid4(), 1)], tracking=tracking))

    with (
        psycopg.connect(**postgres_test_database) as blocker,
        psycopg.connect(**postgres_test_database, autocommit=True) as observer,
    ):
        if held == "write lock":
            _take_write_lock(blocker, events)
        else:
            blocker.execute(psycopg.sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(events))
        writer = threading.Thread(target=write)
        writer.start()
        _wait_until_locks_are_waited_for(observer, postgres_test_database["dbname"])
        last_value = observer.execute(f'SELECT last_value FROM "{sequence}"').fetchone()
        assert last_value == (1,)  # no id drawn while waiting
        select_row = psycopg.sql.SQL("SELECT notification_id FROM {} FOR UPDATE NOWAIT").format(
            psycopg.sql.Identifier(recorder.tracking_table_name)
        )  # NOWAIT: raises if the waiting writer holds the row
        if tracked and held == "write lock":
            with pytest.raises(psycopg.errors.LockNotAvailable):
                observer.execute(select_row)
        else:
            assert observer.execute(select_row).fetchall() == [(1,)]
        blocker.rollback()
        writer.join(5)
    assert outcome == [[2]]
    assert recorder.max_tracking_id("up") == (2 if tracked else 1)
    datastore.close()


def _recorder_at_position_1(
    settings: dict[str, Any],
) -> tuple[PostgresDatastore, PostgresProcessRecorder]:
    """A process recorder on fresh tables, with one event recorded at position 1 of "up"."""
    datastore = make_datastore(settings)
    recorder = PostgresProcessRecorder(
        datastore, f"locked_{uuid4().hex[:8]}", f"locked_tracking_{uuid4().hex[:8]}"
    )
    recorder.create_table()
    recorder.insert_events([event(uuid4(), 1)], tracking=Tracking("up", 1))
    return datastore, recorder


def _take_write_lock(conn: psycopg.Connection[Any], events: psycopg.sql.Identifier) -> None:
    """The events table's write lock (see the module docstring of eventsourcing.postgres)."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(%s::regclass::oid::bigint)", (events.as_string(None),)
    )


def _wait_until_locks_are_waited_for(
    conn: psycopg.Connection[Any], dbname: str, count: int = 1
) -> None:
    """Until ``count`` writers (or more) wait for a lock in the database ``dbname``."""
    deadline = time.monotonic() + 5
    while True:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) "
            "WHERE NOT granted AND datname = %s",
            (dbname,),
        ).fetchone()
        if row and row[0] >= count:
            return
        assert time.monotonic() < deadline, f"{count} writer(s) never waited for the lock"
        time.sleep(0.01)


def test_an_event_recorded_while_a_tracked_writer_waited_fails_that_write(
    postgres_test_database: dict[str, Any],
) -> None:
    """The write's statement sees the table as it was when it began: an event that
    another writer committed meanwhile is found by the unique key, and nothing of
    the waiting write (events or position) is recorded."""
    datastore, recorder = _recorder_at_position_1(postgres_test_database)
    events = psycopg.sql.Identifier(recorder.events_table_name)
    originator = uuid4()
    outcome: list[BaseException] = []

    def write() -> None:
        try:
            recorder.insert_events(
                [event(uuid4(), 1), event(originator, 1)],
                tracking=Tracking("up", 2, previous_notification_id=1),
            )
        except BaseException as error:
            outcome.append(error)

    with psycopg.connect(**postgres_test_database, autocommit=True) as observer:
        with psycopg.connect(**postgres_test_database) as blocker:
            _take_write_lock(blocker, events)
            writer = threading.Thread(target=write)
            writer.start()
            _wait_until_locks_are_waited_for(observer, postgres_test_database["dbname"])
            blocker.execute(
                psycopg.sql.SQL(
                    "INSERT INTO {} (originator_id, originator_version, topic, state) "
                    "VALUES (%s, 1, 'other', '')"
                ).format(events),
                (originator,),
            )
            blocker.commit()
            writer.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], RecordConflictError), outcome
    assert str(originator) in str(outcome[0])  # names the event
    assert recorder.max_tracking_id("up") == 1
    assert [n.topic for n in recorder.select_notifications(1, 10)] == ["topic:A", "other"]
    datastore.close()


def test_pooled_connections_reuse_one_cursor_and_replace_it_when_closed(
    postgres_test_database: dict[str, Any],
) -> None:
    datastore = make_datastore(postgres_test_database, pool_size=1)

    def statements(conn: PooledConnection) -> list[Any]:
        first = conn.execute("SELECT 1")
        assert first.fetchall() == [(1,)]
        second = conn.execute("SELECT %s::int", (2,), prepare=True)
        assert second is first  # one cursor, made once
        assert second.fetchall() == [(2,)]
        with conn.execute("SELECT 'x'::bytea", binary=True) as third:  # closes it
            assert third.fetchall() == [(b"x",)]
        fourth = conn.execute("SELECT 'x'::text")
        assert fourth is not first and fourth.fetchall() == [("x",)]
        return [type(conn).__name__]

    assert datastore.run(statements, what="statements") == ["PooledConnection"]
    datastore.close()


# ---------------------------------------------------------------------------
# A tracking table of a row per processed position (as 9.3 made them), made here by
# hand: kept in its layout, a row added per batch, the position read as the highest.

ROW_PER_POSITION_TRACKING_DDL = (
    "CREATE TABLE {} (application_name text, notification_id bigint, "
    "PRIMARY KEY (application_name, notification_id))"
)


class ExtendedProcessRecorder(PostgresProcessRecorder):
    """Writes through ``_insert_events``, as an extension that adds rows of its own."""

    def _insert_events(
        self, cursor: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return super()._insert_events(cursor, stored_events, **kwargs)


def _row_per_position_recorder(
    settings: dict[str, Any],
    rows: Sequence[tuple[str, int]] = (),
    recorder_class: type[PostgresProcessRecorder] = PostgresProcessRecorder,
) -> tuple[PostgresDatastore, PostgresProcessRecorder]:
    """A process recorder on a tracking table of a row per position, holding ``rows``."""
    tracking = f"rows_tracking_{uuid4().hex[:8]}"
    with psycopg.connect(**settings) as conn:
        conn.execute(
            psycopg.sql.SQL(ROW_PER_POSITION_TRACKING_DDL).format(psycopg.sql.Identifier(tracking))
        )
        for row in rows:
            conn.execute(
                psycopg.sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(
                    psycopg.sql.Identifier(tracking)
                ),
                row,
            )
    datastore = make_datastore(settings)
    recorder = recorder_class(datastore, f"rows_{uuid4().hex[:8]}", tracking)
    recorder.create_table()
    return datastore, recorder


def _tracking_rows(settings: dict[str, Any], table: str) -> list[tuple[str, int]]:
    with psycopg.connect(**settings) as conn:
        statement = psycopg.sql.SQL(
            "SELECT application_name, notification_id FROM {} "
            "ORDER BY application_name, notification_id"
        ).format(psycopg.sql.Identifier(table))
        return [(str(name), int(position)) for name, position in conn.execute(statement)]


@pytest.mark.parametrize(
    "recorder_class", [PostgresProcessRecorder, ExtendedProcessRecorder], ids=["ours", "extended"]
)
def test_a_tracking_table_of_a_row_per_position_gets_a_row_per_batch(
    postgres_test_database: dict[str, Any], recorder_class: type[PostgresProcessRecorder]
) -> None:
    datastore, recorder = _row_per_position_recorder(
        postgres_test_database,
        [("DogSchool", 1), ("DogSchool", 2), ("DogSchool", 3)],  # the lowest comes first
        recorder_class,
    )
    assert recorder.max_tracking_id("DogSchool") == 3
    assert recorder.insert_events([event(uuid4(), 1)], tracking=Tracking("DogSchool", 5, 3)) == [1]
    assert recorder.insert_events([], tracking=Tracking("DogSchool", 6, 5)) == []
    recorder.insert_events([], tracking=Tracking("Other", 2))
    refused = {
        r"is already processed \(position 6\)": Tracking("DogSchool", 5),
        "moved to 6 while a batch from 5": Tracking("DogSchool", 7, 5),
    }
    for message, tracking in refused.items():
        for events in ([], [event(uuid4(), 1)]):
            with pytest.raises(TrackingConflictError, match=message):
                recorder.insert_events(events, tracking=tracking)
    assert recorder.max_notification_id() == 1  # the refused events were not recorded
    assert recorder.max_tracking_id("DogSchool") == 6
    assert recorder.tracking_positions() == {"DogSchool": 6, "Other": 2}
    assert _tracking_rows(postgres_test_database, recorder.tracking_table_name) == [
        ("DogSchool", 1),
        ("DogSchool", 2),
        ("DogSchool", 3),
        ("DogSchool", 5),
        ("DogSchool", 6),
        ("Other", 2),
    ]
    datastore.close()


def test_our_tracking_table_keeps_one_row_per_application(
    postgres_test_database: dict[str, Any],
) -> None:
    datastore, recorder = _recorder_at_position_1(postgres_test_database)
    recorder.insert_events([event(uuid4(), 1)], tracking=Tracking("up", 3, 1))
    recorder.insert_events([], tracking=Tracking("up", 4, 3))
    assert _tracking_rows(postgres_test_database, recorder.tracking_table_name) == [("up", 4)]
    datastore.close()


@pytest.mark.parametrize("with_events", [True, False], ids=["events", "no events"])
def test_of_two_overlapping_batches_into_a_row_per_position_only_one_is_recorded(
    postgres_test_database: dict[str, Any], with_events: bool
) -> None:
    """Two writers that processed overlapping batches from position 3 wait for the
    write lock together; the first to get it records its batch, the second finds
    the first's row and is refused."""
    datastore, recorder = _row_per_position_recorder(postgres_test_database, [("up", 3)])
    events = psycopg.sql.Identifier(recorder.events_table_name)
    outcomes: list[Any] = []

    def write(position: int) -> None:
        batch = [event(uuid4(), 1)] if with_events else []
        try:
            recorder.insert_events(batch, tracking=Tracking("up", position, 3))
            outcomes.append(position)
        except TrackingConflictError as error:
            outcomes.append(error)

    with (
        psycopg.connect(**postgres_test_database) as blocker,
        psycopg.connect(**postgres_test_database, autocommit=True) as observer,
    ):
        _take_write_lock(blocker, events)
        writers = [threading.Thread(target=write, args=(position,)) for position in (4, 5)]
        for writer in writers:
            writer.start()
        _wait_until_locks_are_waited_for(observer, postgres_test_database["dbname"], 2)
        blocker.rollback()
        for writer in writers:
            writer.join(5)
    recorded = [outcome for outcome in outcomes if isinstance(outcome, int)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, TrackingConflictError)]
    assert len(recorded) == 1 and len(refused) == 1, outcomes
    # Which of the two gets the lock first is up to the server: the other finds
    # either its position already passed (4 after 5) or moved away from 3 (5 after 4).
    expected = "already processed" if recorded[0] == 5 else "while a batch from 3"
    assert expected in str(refused[0])
    assert _tracking_rows(postgres_test_database, recorder.tracking_table_name) == [
        ("up", 3),
        ("up", recorded[0]),
    ]
    assert recorder.max_notification_id() == (1 if with_events else None)
    datastore.close()


def test_a_row_per_position_added_meanwhile_by_a_writer_without_the_lock_refuses_the_write(
    postgres_test_database: dict[str, Any],
) -> None:
    """A writer that adds its tracking row before taking any lock (as the library that
    made such tables did) is found by the primary key: the waiting write is refused
    as a tracking conflict, and records nothing."""
    datastore, recorder = _row_per_position_recorder(postgres_test_database, [("up", 3)])
    outcome: list[BaseException] = []

    def write() -> None:
        try:
            recorder.insert_events([event(uuid4(), 1)], tracking=Tracking("up", 4, 3))
        except BaseException as error:
            outcome.append(error)

    with (
        psycopg.connect(**postgres_test_database) as other,
        psycopg.connect(**postgres_test_database, autocommit=True) as observer,
    ):
        other.execute(
            psycopg.sql.SQL("INSERT INTO {} VALUES ('up', 4)").format(
                psycopg.sql.Identifier(recorder.tracking_table_name)
            )
        )
        writer = threading.Thread(target=write)
        writer.start()
        _wait_until_locks_are_waited_for(observer, postgres_test_database["dbname"])
        other.commit()
        writer.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], TrackingConflictError), outcome
    assert "Notification 4 of 'up' is already processed" in str(outcome[0])
    assert recorder.max_notification_id() is None
    assert recorder.max_tracking_id("up") == 4
    datastore.close()
