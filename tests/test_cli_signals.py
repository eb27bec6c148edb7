"""A worker told to stop (SIGTERM, SIGINT) while it is still starting stops cleanly:
the entry point listens before the heavy imports, and `run` keeps what it heard."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

import keel_eventsourcing_cli
from eventsourcing import _signals
from eventsourcing.cli import main


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    _signals.STOP_REQUESTED.clear()
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        _signals.STOP_REQUESTED.clear()


def test_the_entry_point_listens_for_a_stop_before_a_worker_starts(signal_handlers) -> None:
    keel_eventsourcing_cli._listen_for_stop_early(["--log-level", "info", "run", "x:system"])
    os.kill(os.getpid(), signal.SIGTERM)  # (would end this process without the listener)
    assert _signals.STOP_REQUESTED.wait(5)


def test_other_commands_keep_the_default_signal_handling(signal_handlers) -> None:
    before = signal.getsignal(signal.SIGTERM)
    keel_eventsourcing_cli._listen_for_stop_early(["status", "x:system"])
    assert signal.getsignal(signal.SIGTERM) is before


def test_run_stops_at_once_when_a_stop_was_asked_while_starting(
    signal_handlers, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.sqlite")
    monkeypatch.setenv("SQLITE_DBNAME", str(tmp_path / "dogs.db"))
    _signals.STOP_REQUESTED.set()  # as the entry point's listener does
    status: list[int] = []
    worker = threading.Thread(
        target=lambda: status.append(main(["run", "examples.dogschool:system"])), daemon=True
    )
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "run did not stop: the stop asked while starting was lost"
    assert status == [0]
