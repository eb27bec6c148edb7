"""Subscriptions to a notification log, and what readers wait on between reads.

``persistence`` shows these under its own names; the stores subclass them.
A subscription reads through its recorder's ``select_notifications`` (so it
inherits the store's never-skip guarantee and its topic filter), and when it has
read everything, sleeps on a ``Waker`` until something may have been recorded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from types import TracebackType

    from eventsourcing.persistence import ApplicationRecorder, Notification

# The kind of recorder a subscription reads (``Subscription[PostgresApplicationRecorder]``).
TRecorder_co = TypeVar("TRecorder_co", bound="ApplicationRecorder", covariant=True)

class Waker:
    """What a reader sleeps on between reads: ``arm()`` before reading, then
    ``wait(timeout)`` returns early if something was recorded since ``arm()``."""

    def arm(self) -> None:
        """Mark now: a commit after this makes the next ``wait`` return at once."""

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, or less when something may have changed."""
        time.sleep(max(timeout, 0.0))

    def close(self) -> None:
        """Release what the waker holds."""


class BackoffWaker(Waker):
    """For stores that cannot tell when something commits: sleep 1 ms, then twice
    as long each time, up to ``longest`` (a reader that waits long polls seldom)."""

    def __init__(self, longest: float = 0.05):
        self._delay = 0.001
        self._longest = longest

    def wait(self, timeout: float) -> None:
        time.sleep(max(min(timeout, self._delay), 0.0))
        self._delay = min(self._delay * 2, self._longest)


class Beacon:
    """Signalled, in this process, each time something commits; wakes its wakers."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.generation = 0

    def signal(self) -> None:
        with self._condition:
            self.generation += 1
            self._condition.notify_all()

    def wait_past(self, generation: int, timeout: float) -> bool:
        """Whether the beacon was signalled after ``generation`` (waiting up to ``timeout``)."""
        with self._condition:
            return self._condition.wait_for(lambda: self.generation != generation, timeout)


class BeaconWaker(Waker):
    """Woken at once by a beacon; every ``interval`` seconds it also asks ``changed``
    (a cheap check of writes the beacon does not hear of, such as other processes')."""

    def __init__(
        self,
        beacon: Beacon,
        interval: float,
        changed: Callable[[], bool] | None = None,
        on_close: Callable[[], None] | None = None,
    ):
        self.beacon = beacon
        self.interval = interval
        self._changed = changed
        self._on_close = on_close
        self._armed = beacon.generation

    def arm(self) -> None:
        self._armed = self.beacon.generation

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.beacon.wait_past(self._armed, min(remaining, self.interval)):
                return
            if self._changed is None or self._changed():
                return

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()


# ---------------------------------------------------------------------------
# Writes in this process: a recorder's inserts signal its listeners.

_hook_lock = threading.Lock()


def listen_in_process(recorder: Any, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` after each ``insert_events`` on ``recorder`` (this object,
    in this process), and return a function that stops it.

    The recorder's ``insert_events`` is wrapped the first time: recorders nobody
    listens to pay nothing on their inserts.
    """
    with _hook_lock:
        callbacks: list[Callable[[], None]] | None = recorder.__dict__.get("_insert_listeners")
        if callbacks is None:
            callbacks = []
            _wrap_inserts(recorder, callbacks)
        callbacks.append(callback)

    def stop() -> None:
        with _hook_lock:
            if callback in callbacks:
                callbacks.remove(callback)

    return stop


def _wrap_inserts(recorder: Any, callbacks: list[Callable[[], None]]) -> None:
    insert = recorder.insert_events

    def insert_and_signal(*args: Any, **kwargs: Any) -> Any:
        try:
            return insert(*args, **kwargs)
        finally:
            for callback in tuple(callbacks):
                callback()

    recorder.__dict__["_insert_listeners"] = callbacks
    recorder.insert_events = insert_and_signal


# ---------------------------------------------------------------------------
# Subscriptions.


class WakeUpEvent(threading.Event):
    """A subscription's ``_has_been_notified``: setting it (from any thread, as a
    subclass's listen thread does when the store says something was recorded)
    also wakes the subscription's waker at once."""

    def __init__(self, beacon: Beacon) -> None:
        super().__init__()
        self._beacon = beacon

    def set(self) -> None:
        super().set()
        self._beacon.signal()


class Subscription(Iterator["Notification"], Generic[TRecorder_co]):
    """The notifications of a recorder after ``gt`` (of ``topics``, if any), in order,
    read in batches; blocks when it has returned all there is, and goes on when more
    is recorded. A context manager; ``stop()`` (from any thread) ends the iteration.

    This one checks for new notifications every few ms; stores that can tell when
    events commit use a subclass woken at once.
    """

    batch_size = 500
    # Seconds between reads when nothing wakes the subscription.
    poll_interval = 0.005

    def __init__(
        self, recorder: TRecorder_co, gt: int | None = None, topics: Sequence[str] = ()
    ):
        self._recorder = recorder
        self._last_notification_id = gt
        self._topics = tuple(topics)
        self._buffer: deque[Notification] = deque()
        self._beacon = Beacon()
        self._has_been_stopped = False
        self._has_been_entered = False
        self._has_been_notified = WakeUpEvent(self._beacon)
        self._thread_error: BaseException | None = None
        self._stop_listening: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._start_listening(self._has_been_notified.set)
        self._waker = self._make_waker()

    @property
    def recorder(self) -> TRecorder_co:
        return self._recorder

    @property
    def last_notification_id(self) -> int | None:
        """The id of the last notification read from the recorder (not yet all returned)."""
        return self._last_notification_id

    @property
    def _select_limit(self) -> int:
        """How many notifications one read asks for (9.x's name for ``batch_size``)."""
        return self.batch_size

    @_select_limit.setter
    def _select_limit(self, limit: int) -> None:
        self.batch_size = limit

    def _start_listening(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called when events are recorded (where the store can tell)."""

    def _make_waker(self) -> Waker:
        return BeaconWaker(self._beacon, self.poll_interval)

    # -- iteration -----------------------------------------------------------

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Notification:
        while True:
            if self._has_been_stopped_or_failed():
                raise StopIteration
            if self._buffer:
                return self._buffer.popleft()
            self._fill_or_wait()

    def next_batch(self, limit: int | None = None) -> list[Notification]:
        """The next notifications available (at least one; at most ``limit``), waiting
        for one if there are none; ``[]`` once stopped."""
        while not self._has_been_stopped_or_failed():
            if self._buffer:
                count = len(self._buffer) if limit is None else min(limit, len(self._buffer))
                return [self._buffer.popleft() for _ in range(count)]
            self._fill_or_wait()
        return []

    def _has_been_stopped_or_failed(self) -> bool:
        """Whether the iteration is over; raises the error of a listening thread."""
        if self._thread_error is not None:
            raise self._thread_error
        return self._has_been_stopped

    def _fill_or_wait(self) -> None:
        self._waker.arm()
        # Cleared before the read: a wake-up for what is recorded after it is kept.
        self._has_been_notified.clear()
        notifications = self._recorder.select_notifications(
            start=self._last_notification_id,
            limit=self._select_limit,
            topics=self._topics,
            inclusive_of_start=False,
        )
        if notifications:
            self._last_notification_id = notifications[-1].id
            self._buffer.extend(notifications)
        elif not self._has_been_stopped:
            # (The waker returns at a wake-up, or when its own poll says to read again.)
            self._waker.wait(3600.0)

    # -- stopping ------------------------------------------------------------

    def stop(self) -> None:
        """End the iteration (a blocked ``next()`` returns at once) and stop listening."""
        with self._lock:
            if self._has_been_stopped:
                return
            self._has_been_stopped = True
            stop_listening, self._stop_listening = self._stop_listening, []
        self._has_been_notified.set()
        for stop in stop_listening:
            stop()
        self._waker.close()

    @property
    def is_stopped(self) -> bool:
        return self._has_been_stopped

    def __enter__(self) -> Subscription:
        if self._has_been_entered:
            from eventsourcing.persistence import ProgrammingError

            raise ProgrammingError("This subscription's context was already entered")
        self._has_been_entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if not self._has_been_entered:
            from eventsourcing.persistence import ProgrammingError

            raise ProgrammingError("This subscription's context was never entered")
        self.stop()

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:  # noqa: S110 (nothing to report to at collection time)
            pass


class ListenNotifySubscription(Subscription[TRecorder_co]):
    """Woken by the store as soon as events are recorded, by any process (the
    recorder's ``listen``), and by inserts through this very recorder object."""

    # A safety net only: the store wakes the subscription.
    poll_interval = 1.0

    @property
    def _select_limit(self) -> int:
        """How many notifications one read asks for (9.x's name for ``batch_size``)."""
        return self.batch_size

    @_select_limit.setter
    def _select_limit(self, limit: int) -> None:
        self.batch_size = limit

    def _start_listening(self, callback: Callable[[], None]) -> None:
        stop = self._recorder.listen(callback)
        if stop is not None:
            self._stop_listening.append(stop)
        self._stop_listening.append(listen_in_process(self._recorder, callback))
