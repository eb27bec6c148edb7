"""Subscriptions written the way persistence extensions write theirs run on ours.

Extensions (eventsourcing-sqlalchemy, eventsourcing-kurrentdb, ...) subclass
``ListenNotifySubscription`` or ``Subscription`` and use what 9.x offers its
subclasses: a listen thread loops ``while not self._has_been_stopped and not
self._thread_error``, sets ``self._has_been_notified`` when the database says
something was recorded, and on failure stores the error in ``self._thread_error``
and calls ``self.stop()``, after which the iterating caller gets that error.
Others override ``__next__`` and read ``_has_been_stopped``, ``_recorder``,
``_topics`` and ``_last_notification_id``, or set ``_select_limit``.

Here the "database channel" is a ``threading.Event`` the test sets after writing
past the subscribed recorder object (as another process would), and the
subscriptions poll seldom: only the listen thread can wake them in time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import uuid4

import pytest

from eventsourcing.persistence import (
    ApplicationRecorder,
    ListenNotifySubscription,
    Notification,
    StoredEvent,
    Subscription,
)
from eventsourcing.popo import POPOApplicationRecorder

SECONDS = 5.0


class Channel:
    """What a database's LISTEN connection would be: ``notify()`` by the writer,
    ``receive()`` by the listening thread (``False`` after a short timeout)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.failure: BaseException | None = None

    def notify(self) -> None:
        self._event.set()

    def receive(self, timeout: float) -> bool:
        if self.failure is not None:
            raise self.failure
        received = self._event.wait(timeout)
        self._event.clear()
        return received


class ChannelRecorder(POPOApplicationRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.channel = Channel()

    def write_elsewhere(self, count: int = 1) -> None:
        """Record events as another process would (unseen by this object's
        subscribers), then notify the channel."""
        stored = [StoredEvent(uuid4(), 1, "topic", b"{}") for _ in range(count)]
        POPOApplicationRecorder.insert_events(self, stored)
        self.channel.notify()


class ExtensionStyleSubscription(ListenNotifySubscription):
    """Written as eventsourcing-sqlalchemy's and 9.x's Postgres subscription are."""

    # Without the listen thread, a write elsewhere would be seen only this late.
    poll_interval = 60.0

    def __init__(
        self, recorder: ChannelRecorder, gt: int | None = None, topics: Sequence[str] = ()
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._listen_thread = threading.Thread(target=self._listen, daemon=True)
        self._listen_thread.start()

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        super().__exit__(*args, **kwargs)
        self._listen_thread.join()

    def _listen(self) -> None:
        channel = self._channel_recorder().channel
        try:
            while not self._has_been_stopped and not self._thread_error:
                if channel.receive(timeout=0.01):
                    self._has_been_notified.set()
        except BaseException as e:
            if self._thread_error is None:
                self._thread_error = e
            self.stop()

    def _channel_recorder(self) -> ChannelRecorder:
        recorder = self._recorder
        assert isinstance(recorder, ChannelRecorder)
        return recorder


@pytest.fixture
def recorder() -> ChannelRecorder:
    return ChannelRecorder()


def next_within(subscription: Iterator[Notification], seconds: float = SECONDS) -> Any:
    """``next(subscription)`` in another thread: the notification, or the exception
    it raised (``TimeoutError`` if it was not back in time)."""
    results: queue.Queue[Any] = queue.Queue()

    def take() -> None:
        try:
            results.put(next(subscription))
        except BaseException as e:
            results.put(e)

    threading.Thread(target=take, daemon=True).start()
    try:
        return results.get(timeout=seconds)
    except queue.Empty:
        return TimeoutError(f"no notification within {seconds}s")


def test_listen_thread_setting_has_been_notified_wakes_the_subscription(
    recorder: ChannelRecorder,
) -> None:
    with ExtensionStyleSubscription(recorder) as subscription:
        recorder.write_elsewhere()
        first = next_within(subscription)
        assert isinstance(first, Notification), first
        recorder.write_elsewhere()  # while the subscription waits
        second = next_within(subscription)
        assert isinstance(second, Notification), second
        assert second.id > first.id
        assert subscription._thread_error is None
    assert not subscription._listen_thread.is_alive()


def test_has_been_stopped_is_false_until_stopped_then_true(recorder: ChannelRecorder) -> None:
    subscription = ExtensionStyleSubscription(recorder)
    assert subscription._has_been_stopped is False
    assert subscription._has_been_entered is False
    with subscription:
        assert subscription._has_been_entered is True
        assert subscription._has_been_stopped is False
    assert subscription._has_been_stopped is True


def test_stop_ends_the_listen_thread_and_a_waiting_iteration(recorder: ChannelRecorder) -> None:
    subscription = ExtensionStyleSubscription(recorder)
    waiting = threading.Thread(target=lambda: list(subscription), daemon=True)
    waiting.start()
    subscription.stop()
    waiting.join(SECONDS)
    subscription._listen_thread.join(SECONDS)
    assert not waiting.is_alive()
    assert not subscription._listen_thread.is_alive()


def test_error_in_listen_thread_is_raised_to_the_iterating_caller(
    recorder: ChannelRecorder,
) -> None:
    with ExtensionStyleSubscription(recorder) as subscription:
        recorder.write_elsewhere()
        assert isinstance(next_within(subscription), Notification)
        recorder.channel.failure = ConnectionError("listen connection lost")
        raised = next_within(subscription)
        assert isinstance(raised, ConnectionError), raised
        assert subscription._thread_error is raised
        assert subscription._has_been_stopped is True
        with pytest.raises(ConnectionError):  # again, not a silent end of iteration
            next(subscription)
        with pytest.raises(ConnectionError):
            subscription.next_batch()


def test_thread_error_is_raised_to_a_caller_already_waiting(recorder: ChannelRecorder) -> None:
    with ExtensionStyleSubscription(recorder) as subscription:
        results: queue.Queue[BaseException | None] = queue.Queue()

        def iterate() -> None:
            try:
                list(subscription)
            except BaseException as e:
                results.put(e)
            else:
                results.put(None)

        threading.Thread(target=iterate, daemon=True).start()
        recorder.channel.failure = ConnectionError("listen connection lost")
        assert isinstance(results.get(timeout=SECONDS), ConnectionError)


class OwnNextSubscription(Subscription):
    """As eventsourcing-kurrentdb's: ``__next__`` of its own, on the base class."""

    def __init__(
        self, recorder: ApplicationRecorder, gt: int | None = None, topics: Sequence[str] = ()
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self.seen_topics = self._topics
        self.started_after = self._last_notification_id
        self._stopped_by_own_stop = threading.Event()

    def __next__(self) -> Notification:
        while not self._has_been_stopped:
            notifications = self._recorder.select_notifications(
                start=self._last_notification_id,
                limit=1,
                topics=self._topics,
                inclusive_of_start=False,
            )
            if notifications:
                self._last_notification_id = notifications[0].id
                return notifications[0]
            self._stopped_by_own_stop.wait(0.01)
        raise StopIteration

    def stop(self) -> None:
        super().stop()
        self._stopped_by_own_stop.set()


def test_subclass_with_its_own_next_reads_the_protected_attributes(
    recorder: ChannelRecorder,
) -> None:
    recorder.write_elsewhere(count=3)
    with OwnNextSubscription(recorder, gt=1, topics=["topic"]) as subscription:
        assert list(subscription.seen_topics) == ["topic"]
        assert subscription.started_after == 1
        assert next(subscription).id == 2
        assert next(subscription).id == 3
        threading.Timer(0.05, subscription.stop).start()
        assert isinstance(next_within(subscription), StopIteration)


class SmallBatchSubscription(ListenNotifySubscription):
    def __init__(
        self, recorder: ApplicationRecorder, gt: int | None = None, topics: Sequence[str] = ()
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._select_limit = 2


def test_select_limit_set_by_a_subclass_limits_each_read(recorder: ChannelRecorder) -> None:
    limits: list[int] = []
    select = recorder.select_notifications

    def spy(*args: Any, **kwargs: Any) -> Sequence[Notification]:
        limits.append(kwargs["limit"])
        return select(*args, **kwargs)

    recorder.select_notifications = spy  # type: ignore[method-assign]
    recorder.write_elsewhere(count=5)
    with SmallBatchSubscription(recorder) as subscription:
        assert [next(subscription).id for _ in range(5)] == [1, 2, 3, 4, 5]
    assert limits and set(limits) == {2}
