"""The subscription and tracking-recorder contract, on every store.

Subscriptions: position ``gt``, the topic filter, blocking when drained and
waking when events are recorded (in this process and in another one), ``stop()``
and the context manager. Tracking recorders: the position only moves forwards,
a refused record changes nothing, ``wait()`` returns when the position is
recorded, times out, or is interrupted.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    Notification,
    ProcessRecorder,
    ProgrammingError,
    Subscription,
    Tracking,
    TrackingRecorder,
    WaitInterruptedError,
)
from eventsourcing.popo import POPOSubscription, POPOTrackingRecorder
from eventsourcing.postgres import PostgresSubscription
from eventsourcing.sqlite import SQLiteSubscription
from eventsourcing.utils import Environment, get_topic

REPO = Path(__file__).resolve().parents[1]


class Note(Aggregate):
    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text

    @event("Edited")
    def edit(self, text: str) -> None:
        self.text = text


class Notes(Application):
    def write(self, text: str) -> int:
        note = Note(text)
        self.save(note)
        return self.recorder.max_notification_id() or 0


@pytest.fixture
def notes(persistence_env: dict[str, str]) -> Iterator[Notes]:
    with Notes(env=persistence_env) as app:
        yield app


@pytest.fixture
def view(persistence_env: dict[str, str]) -> Iterator[TrackingRecorder]:
    factory = InfrastructureFactory.construct(Environment("Notesview", persistence_env))
    recorder = factory.tracking_recorder()
    yield recorder
    close = getattr(recorder, "close", None)
    if close is not None:
        close()
    factory.close()


def stop_after(subscription: Subscription, seconds: float) -> threading.Timer:
    """A watchdog: a test that waits for a wake-up that never comes ends, and fails."""
    timer = threading.Timer(seconds, subscription.stop)
    timer.daemon = True
    timer.start()
    return timer


def take(subscription: Subscription, count: int, seconds: float = 10.0) -> list[Notification]:
    timer = stop_after(subscription, seconds)
    try:
        taken = []
        for notification in subscription:
            taken.append(notification)
            if len(taken) == count:
                break
        return taken
    finally:
        timer.cancel()


# -- subscriptions -----------------------------------------------------------


def test_subscription_yields_notifications_after_gt_in_order(notes: Notes) -> None:
    for i in range(5):
        notes.write(f"note {i}")
    with notes.recorder.subscribe(gt=2) as subscription:
        taken = take(subscription, 3)
    assert [n.id for n in taken] == [3, 4, 5]
    assert [notes.mapper.to_domain_event(n).text for n in taken] == ["note 2", "note 3", "note 4"]


def test_subscription_from_the_start_without_gt(notes: Notes) -> None:
    notes.write("first")
    with notes.recorder.subscribe() as subscription:
        assert [n.id for n in take(subscription, 1)] == [1]


def test_subscription_filters_by_topic(notes: Notes) -> None:
    note = Note("a")
    notes.save(note)
    note.edit("b")
    note.edit("c")
    notes.save(note)
    notes.save(Note("d"))
    edited = get_topic(Note.Edited)
    with notes.recorder.subscribe(topics=[edited]) as subscription:
        taken = take(subscription, 2)
        notes.save(Note("e"))  # not of the topic: no wake-up yields it
        note.edit("f")
        notes.save(note)
        taken += take(subscription, 1)
    assert [n.topic for n in taken] == [edited] * 3
    assert [n.id for n in taken] == [2, 3, 6]


def test_subscription_blocks_then_wakes_when_events_are_recorded(
    notes: Notes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No polling to fall back on: only the store's wake-up can deliver the event.
    for cls in (POPOSubscription, SQLiteSubscription, PostgresSubscription):
        monkeypatch.setattr(cls, "poll_interval", 60.0)
    notes.write("before")
    with notes.recorder.subscribe(gt=1) as subscription:
        threading.Timer(0.2, notes.write, args=("after",)).start()
        taken = take(subscription, 1)
    assert [n.id for n in taken] == [2]


def test_stop_from_another_thread_ends_a_blocked_iteration(notes: Notes) -> None:
    notes.write("only")
    subscription = notes.recorder.subscribe(gt=1)
    ended = threading.Event()

    def drain() -> None:
        for _ in subscription:
            pass
        ended.set()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    time.sleep(0.1)
    assert not ended.is_set()  # blocked: nothing after position 1
    subscription.stop()
    assert ended.wait(10)
    assert subscription.is_stopped


def test_context_manager_stops_and_cannot_be_entered_twice(notes: Notes) -> None:
    subscription = notes.recorder.subscribe()
    with subscription:
        with pytest.raises(ProgrammingError), subscription:
            pass
    assert subscription.is_stopped
    notes.write("after stop")
    assert list(subscription) == []


def test_next_batch_returns_what_is_available(notes: Notes) -> None:
    for i in range(4):
        notes.write(f"note {i}")
    with notes.recorder.subscribe(gt=1) as subscription:
        assert [n.id for n in subscription.next_batch(limit=2)] == [2, 3]
        assert [n.id for n in subscription.next_batch()] == [4]
        subscription.stop()
        assert subscription.next_batch() == []


WRITER = """
import sys
sys.path.insert(0, {repo!r})
from tests.test_subscriptions import Notes
env = {env!r}
with Notes(env=env) as app:
    for i in range({count}):
        app.write(f"from another process {{i}}")
"""


def test_subscription_wakes_for_events_recorded_by_another_process(
    notes: Notes, persistence_env: dict[str, str]
) -> None:
    if persistence_env["PERSISTENCE_MODULE"] == "eventsourcing.popo":
        pytest.skip("memory is not shared between processes")
    notes.write("here")
    with notes.recorder.subscribe(gt=1) as subscription:
        script = WRITER.format(repo=str(REPO), env=persistence_env, count=3)
        writer = subprocess.Popen([sys.executable, "-c", script])
        try:
            taken = take(subscription, 3, seconds=30)
        finally:
            writer.wait(30)
    assert writer.returncode == 0
    assert [n.id for n in taken] == [2, 3, 4]


# -- tracking recorders ------------------------------------------------------


def test_tracking_position_only_moves_forwards(view: TrackingRecorder) -> None:
    assert view.max_tracking_id("Upstream") is None
    assert view.has_tracking_id("Upstream", None)
    assert not view.has_tracking_id("Upstream", 1)
    view.insert_tracking(Tracking("Upstream", 3))
    assert view.max_tracking_id("Upstream") == 3
    assert view.has_tracking_id("Upstream", 2)
    assert view.has_tracking_id("Upstream", 3)
    assert not view.has_tracking_id("Upstream", 4)
    with pytest.raises(IntegrityError):
        view.insert_tracking(Tracking("Upstream", 3))
    with pytest.raises(IntegrityError):
        view.insert_tracking(Tracking("Upstream", 2))
    assert view.max_tracking_id("Upstream") == 3
    view.insert_tracking(Tracking("Other", 1))
    view.insert_tracking(Tracking("Upstream", 7))
    assert view.max_tracking_id("Upstream") == 7
    assert view.max_tracking_id("Other") == 1


def test_tracking_from_a_stale_start_is_refused(view: TrackingRecorder) -> None:
    view.insert_tracking(Tracking("Upstream", 5, previous_notification_id=0))
    with pytest.raises(IntegrityError):
        view.insert_tracking(Tracking("Upstream", 9, previous_notification_id=3))
    view.insert_tracking(Tracking("Upstream", 9, previous_notification_id=5))
    assert view.max_tracking_id("Upstream") == 9


def test_wait_returns_when_the_position_is_recorded_by_another_thread(
    view: TrackingRecorder,
) -> None:
    view.wait("Upstream", None)  # nothing to wait for
    threading.Timer(0.1, view.insert_tracking, args=(Tracking("Upstream", 2),)).start()
    view.wait("Upstream", 2, timeout=10)
    assert view.max_tracking_id("Upstream") == 2


def test_wait_times_out(view: TrackingRecorder) -> None:
    view.insert_tracking(Tracking("Upstream", 1))
    with pytest.raises(TimeoutError, match="Notification 2 of 'Upstream'"):
        view.wait("Upstream", 2, timeout=0.1)


def test_wait_is_interrupted(view: TrackingRecorder) -> None:
    interrupt = threading.Event()
    threading.Timer(0.1, interrupt.set).start()
    with pytest.raises(WaitInterruptedError):
        view.wait("Upstream", 1, timeout=10, interrupt=interrupt)


def test_wait_sees_a_position_recorded_by_another_recorder_object(
    view: TrackingRecorder, persistence_env: dict[str, str]
) -> None:
    if persistence_env["PERSISTENCE_MODULE"] == "eventsourcing.popo":
        pytest.skip("in memory, each recorder object is a store of its own")
    factory = InfrastructureFactory.construct(Environment("Notesview", persistence_env))
    writer = factory.tracking_recorder()
    threading.Timer(0.1, writer.insert_tracking, args=(Tracking("Upstream", 4),)).start()
    view.wait("Upstream", 4, timeout=10)
    factory.close()


def test_process_recorder_is_a_tracking_recorder(persistence_env: dict[str, str]) -> None:
    factory = InfrastructureFactory.construct(Environment("Proc", persistence_env))
    recorder = factory.process_recorder()
    assert isinstance(recorder, ProcessRecorder)
    assert isinstance(recorder, TrackingRecorder)
    recorder.insert_tracking(Tracking("Upstream", 2))
    with pytest.raises(IntegrityError):
        recorder.insert_tracking(Tracking("Upstream", 2))
    recorder.wait("Upstream", 2)
    assert recorder.max_tracking_id("Upstream") == 2
    factory.close()


def test_factory_refuses_a_view_class_of_another_store(persistence_env: dict[str, str]) -> None:
    factory = InfrastructureFactory.construct(Environment("V", persistence_env))
    if persistence_env["PERSISTENCE_MODULE"] == "eventsourcing.popo":
        other: type[Any] = TrackingRecorder
        with pytest.raises(TypeError, match="not a POPOTrackingRecorder"):
            factory.tracking_recorder(other)
    else:
        with pytest.raises(TypeError, match="TrackingRecorder class"):
            factory.tracking_recorder(POPOTrackingRecorder)
    factory.close()
