"""Followers ride out transient store errors: they back off, resume by themselves, and
log one warning per outage and one line when it is over; counts stay exact."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from eventsourcing._resilience import Backoff, is_transient
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.system import MultiThreadedRunner, NotificationPullingError
from examples.dogschool import Counters, DogSchool, system

TRICKS = ["roll over", "fetch ball", "play dead"]


class FailingCalls:
    """Wraps a method: its next ``failures`` calls raise OperationalError (after doing
    the work, if ``after_work``: an acknowledgement lost after the commit)."""

    def __init__(self, method: Callable[..., Any], failures: int, after_work: bool = False):
        self.method = method
        self.failures = failures
        self.after_work = after_work
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.calls += 1
            fail = self.failures > 0
            self.failures -= 1 if fail else 0
        if fail and not self.after_work:
            raise OperationalError("connection refused (injected)")
        result = self.method(*args, **kwargs)
        if fail:
            raise OperationalError("server closed the connection (injected, after commit)")
        return result


def add_tricks(school: DogSchool, count: int) -> None:
    dog_id = school.register_dog("Fido")
    for i in range(count):
        school.add_trick(dog_id, TRICKS[i % len(TRICKS)])


def assert_counts(counters: Counters, total: int) -> None:
    counts = [counters.get_count(trick) for trick in TRICKS]
    assert sum(counts) == total, counts
    assert counts == [total // 3 + (1 if i < total % 3 else 0) for i in range(3)], counts


def outage_records(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    back = [r.getMessage() for r in caplog.records if "working again" in r.getMessage()]
    return warnings, back


@pytest.mark.parametrize("after_work", [False, True], ids=["before-commit", "after-commit"])
def test_follower_thread_resumes_after_failing_writes(
    persistence_env: dict[str, str], caplog: pytest.LogCaptureFixture, after_work: bool
) -> None:
    caplog.set_level(logging.INFO, logger="eventsourcing")
    with MultiThreadedRunner(system, env=persistence_env) as runner:
        counters = runner.get(Counters)
        failures = 1 if after_work else 4
        failing = FailingCalls(counters.recorder.insert_events, failures, after_work=after_work)
        counters.recorder.insert_events = failing  # type: ignore[method-assign]
        add_tricks(runner.get(DogSchool), 30)
        runner.wait(timeout=60)
        # More after the outage, so the follower must have come back to process them.
        add_tricks(runner.get(DogSchool), 30)
        runner.wait(timeout=60)
        assert failing.calls > failures
        assert_counts(counters, 60)
    warnings, back = outage_records(caplog)
    assert len(warnings) == 1 and "injected" in warnings[0], warnings
    assert len(back) == 1 and "Counters" in back[0], back


def test_follower_thread_resumes_after_failing_reads(
    persistence_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventsourcing")
    with MultiThreadedRunner(system, env=persistence_env) as runner:
        school = runner.get(DogSchool)
        runner.get(Counters)._handover.maxsize = 0  # read every event from the log
        failing = FailingCalls(school.recorder.select_notifications, 3)
        school.recorder.select_notifications = failing  # type: ignore[method-assign]
        add_tricks(school, 20)
        runner.wait(timeout=60)
        assert failing.calls > 3
        assert_counts(runner.get(Counters), 20)
    warnings, back = outage_records(caplog)
    assert len(warnings) == 1 and len(back) == 1, (warnings, back)


def test_follower_thread_rides_out_a_sqlite_lock_held_past_its_timeout(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventsourcing")
    db = tmp_path / "events.sqlite"
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(db),
        "SQLITE_LOCK_TIMEOUT": "0.2",
        "DOGSCHOOL_SQLITE_LOCK_TIMEOUT": "30",  # commands wait; the follower meets the lock
        "SQLITE_RETRY_TIMEOUT": "0",  # the store gives up at once: the follower rides it out
    }
    with MultiThreadedRunner(system, env=env) as runner:
        school = runner.get(DogSchool)
        add_tricks(school, 3)
        runner.wait(timeout=60)
        counters = runner.get(Counters)
        blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        try:
            with counters._processing_lock:  # the follower waits here once woken
                add_tricks(school, 6)
                blocker.execute("BEGIN EXCLUSIVE")
            # The follower now meets the lock, past its 0.2 s timeout, until released.
            time.sleep(1.5)
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
        runner.wait(timeout=60)
        assert_counts(runner.get(Counters), 9)
        assert not runner.has_errored.is_set()
    warnings, back = outage_records(caplog)
    assert len(warnings) == 1 and "lock" in warnings[0].lower(), warnings
    assert len(back) == 1, back


def test_a_non_transient_error_still_stops_the_follower(
    persistence_env: dict[str, str],
) -> None:
    runner = MultiThreadedRunner(system, env=persistence_env)
    runner.start()
    try:
        counters = runner.get(Counters)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ValueError("a bug, not an outage")

        counters.recorder.insert_events = broken  # type: ignore[method-assign]
        add_tricks(runner.get(DogSchool), 1)
        with pytest.raises(ValueError, match="a bug"):
            runner.wait(timeout=60)
    finally:
        with pytest.raises(ValueError):
            runner.stop()


def test_which_errors_are_transient() -> None:
    wrapped = NotificationPullingError("could not read")
    wrapped.__cause__ = OperationalError("connection refused")
    assert is_transient(wrapped)
    assert is_transient(OperationalError("locked"))
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(ConnectionResetError())
    assert not is_transient(InterfaceError("datastore is closed"))
    assert not is_transient(ValueError("bad"))
    closed = OperationalError("x")
    closed.__cause__ = InterfaceError("closed")
    assert is_transient(closed)  # the outer error says what it is


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(first=0.1, cap=1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert 0.075 <= delays[0] <= 0.1
    assert 0.15 <= delays[1] <= 0.2
    assert all(0.75 <= delay <= 1.0 for delay in delays[4:])
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_stopping_interrupts_the_backoff(persistence_env: dict[str, str]) -> None:
    runner = MultiThreadedRunner(system, env=persistence_env)
    runner.start()
    counters = runner.get(Counters)
    counters.recorder.insert_events = FailingCalls(  # type: ignore[method-assign]
        counters.recorder.insert_events, 10**9
    )
    add_tricks(runner.get(DogSchool), 1)
    time.sleep(0.5)  # failing, backing off
    started = time.monotonic()
    runner.stop()  # no error: the follower never stopped on its own
    assert time.monotonic() - started < 20


def test_batches_and_wake_ups_are_logged_at_debug_by_named_loggers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventsourcing")
    with MultiThreadedRunner(system) as runner:
        add_tricks(runner.get(DogSchool), 3)
        runner.wait(timeout=60)
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    names = {r.name for r in debug}
    assert {"eventsourcing.runner.activity", "eventsourcing.follower.activity"} <= names
    assert any("woken" in r.getMessage() for r in debug)
    assert any("processed" in r.getMessage() and "DogSchool" in r.getMessage() for r in debug)


def test_the_library_configures_no_logging() -> None:
    import subprocess
    import sys

    code = (
        "import logging, eventsourcing.system, eventsourcing.cli, eventsourcing.postgres\n"
        "from eventsourcing.system import SingleThreadedRunner\n"
        "from examples.dogschool import system\n"
        "with SingleThreadedRunner(system): pass\n"
        "loggers = [logging.getLogger(n) for n in logging.root.manager.loggerDict]\n"
        "assert not logging.root.handlers, logging.root.handlers\n"
        "assert not any(getattr(l, 'handlers', None) for l in loggers)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
