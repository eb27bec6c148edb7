"""Base test cases for recorders (re-exported by ``eventsourcing.tests.persistence``).

Each case is an abstract ``unittest.TestCase``: a subclass implements
``create_recorder()`` to return a recorder with its tables created and empty, and
inherits tests that use only the recorder protocol (``insert_events``,
``select_events``, ``select_notifications``, ``max_notification_id``,
``subscribe``, ``insert_tracking``, ``max_tracking_id``, ``has_tracking_id``,
``wait``). Hooks a subclass may override: ``new_originator_id()`` (e.g. text ids),
``INITIAL_VERSION``, ``EXPECT_CONTIGUOUS_NOTIFICATION_IDS`` (False for stores whose
ids have gaps) and the workload sizes of the concurrency tests.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar
from unittest import TestCase
from uuid import UUID, uuid4

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    IntegrityError,
    Notification,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    TrackingRecorder,
    WaitInterruptedError,
)

TApplicationRecorder = TypeVar("TApplicationRecorder", bound=ApplicationRecorder)


def tmpfile_uris() -> Iterator[str]:
    """Endless fresh SQLite database URIs (``file:/tmp/..._eventsourcing_test.db``).

    Each names an empty file that exists until the next URI is taken or the iterator
    is closed (or garbage collected); the file and SQLite's companions (``-wal``,
    ``-shm``, ``-journal``) are then removed.
    """
    while True:
        handle, path = tempfile.mkstemp(suffix="_eventsourcing_test.db")
        os.close(handle)
        try:
            yield "file:" + path
        finally:
            _remove_database_files(path)


def _remove_database_files(path: str) -> None:
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            os.remove(name)
        except FileNotFoundError:
            pass


def _report_rate(case: TestCase, what: str, count: int, seconds: float) -> None:
    """Print a measurement (seen with ``pytest -s``); never fails a test."""
    per_second = count / seconds if seconds > 0 else float("inf")
    print(f"\n{case.id()}: {count} {what} in {seconds:.3f}s ({per_second:.0f}/s)")


class RecorderTestCase(TestCase, ABC):
    """What every recorder case shares: how ids and versions are made, comparisons."""

    # The version of an aggregate's first event in the sequences these tests write.
    INITIAL_VERSION = 1

    def new_originator_id(self) -> UUID | str:
        """A fresh originator id (override for stores keyed by text ids)."""
        return uuid4()

    def _new_id(self) -> Any:
        # Typed loosely: stores differ in the id types their recorders accept.
        return self.new_originator_id()

    def new_stored_event(
        self, originator_id: Any, version: int, topic: str = "topic", state: bytes = b""
    ) -> StoredEvent:
        return StoredEvent(
            originator_id=originator_id,
            originator_version=version,
            topic=topic,
            state=state or f"state-{version}".encode(),
        )

    def assert_event_eq(self, event1: StoredEvent, event2: StoredEvent) -> None:
        """Equal as stored events: id, version, topic and state (whatever the class)."""
        self.assertEqual(event1.originator_id, event2.originator_id)
        self.assertEqual(event1.originator_version, event2.originator_version)
        self.assertEqual(event1.topic, event2.topic)
        self.assertEqual(event1.state, event2.state)

    def assert_events_eq(
        self, events1: Sequence[StoredEvent], events2: Sequence[StoredEvent]
    ) -> None:
        self.assertEqual(len(events1), len(events2), "different numbers of events")
        for event1, event2 in zip(events1, events2):
            self.assert_event_eq(event1, event2)


class AggregateRecorderTestCase(RecorderTestCase, ABC):
    """Recording and selecting the events of aggregate sequences."""

    @abstractmethod
    def create_recorder(self) -> AggregateRecorder:
        """A recorder with its table created and empty."""

    def test_insert_and_select(self) -> None:
        recorder = self.create_recorder()
        v1 = self.INITIAL_VERSION
        id1 = self._new_id()

        # Nothing is recorded yet; recording nothing is allowed.
        self.assertIsNone(recorder.insert_events([]))
        self.assertEqual(recorder.select_events(id1), [])
        self.assertEqual(recorder.select_events(id1, desc=True, limit=1), [])

        first = self.new_stored_event(id1, v1, "topic1", b"state1")
        self.assertIsNone(recorder.insert_events([first]))
        selected = recorder.select_events(id1)
        self.assert_events_eq(selected, [first])
        self.assertIsInstance(selected[0].state, bytes)
        self.assertEqual(type(selected[0].originator_id), type(id1))

        # A version already recorded conflicts, alone or in a batch (which records
        # nothing), and so does a batch that repeats a version.
        second = self.new_stored_event(id1, v1 + 1, "topic2", b"state2")
        third = self.new_stored_event(id1, v1 + 2, "topic3", b"state3")
        for batch in ([first], [first, second], [second, first], [second, second]):
            with self.assertRaises(IntegrityError, msg=f"batch {batch}"):
                recorder.insert_events(batch)
            self.assert_events_eq(recorder.select_events(id1), [first])

        self.assertIsNone(recorder.insert_events([second, third]))
        self.assert_events_eq(recorder.select_events(id1), [first, second, third])

        # Selections: the last one, the last up to a version, a range, reversed.
        self.assert_events_eq(recorder.select_events(id1, desc=True, limit=1), [third])
        self.assert_events_eq(recorder.select_events(id1, lte=v1 + 1, desc=True, limit=1), [second])
        self.assert_events_eq(recorder.select_events(id1, gt=v1, lte=v1 + 1), [second])
        self.assert_events_eq(recorder.select_events(id1, gt=v1), [second, third])
        self.assert_events_eq(recorder.select_events(id1, limit=2), [first, second])
        self.assert_events_eq(recorder.select_events(id1, desc=True), [third, second, first])
        self.assert_events_eq(recorder.select_events(id1, gt=v1, desc=True), [third, second])
        self.assert_events_eq(recorder.select_events(id1, gt=v1 + 2), [])

        # Sequences are distinct: the same version of another originator is fine.
        id2 = self._new_id()
        self.assertEqual(recorder.select_events(id2), [])
        other = self.new_stored_event(id2, v1, "topic4", b"state4")
        recorder.insert_events([other])
        self.assert_events_eq(recorder.select_events(id2), [other])
        self.assert_events_eq(recorder.select_events(id1), [first, second, third])

    def test_performance(self) -> None:
        recorder = self.create_recorder()

        def insert_one() -> None:
            recorder.insert_events([self.new_stored_event(self._new_id(), self.INITIAL_VERSION)])

        _time_inserts(self, insert_one, number=100)


def _time_inserts(case: TestCase, insert: Callable[[], None], number: int) -> None:
    for _ in range(10):  # warm up (connections, prepared statements)
        insert()
    started = time.perf_counter()
    for _ in range(number):
        insert()
    _report_rate(case, "inserts", number, time.perf_counter() - started)


class ApplicationRecorderTestCase(RecorderTestCase, ABC, Generic[TApplicationRecorder]):
    """Recording events as notifications, numbered in order of recording."""

    # False for stores whose notification ids may have gaps (the tests then check
    # only that ids increase).
    EXPECT_CONTIGUOUS_NOTIFICATION_IDS = True

    # Workload of test_concurrent_no_conflicts: writers x batches x events.
    concurrent_writers = 10
    concurrent_batches_per_writer = 20
    concurrent_events_per_batch = 50

    # Workload of test_concurrent_throughput.
    throughput_workers = 4
    throughput_jobs = 10
    throughput_events_per_job = 50

    @abstractmethod
    def create_recorder(self) -> TApplicationRecorder:
        """A recorder with its table created and empty."""

    def test_insert_select(self) -> None:
        recorder = self.create_recorder()
        v1 = self.INITIAL_VERSION

        # An empty log.
        self.assertIsNone(recorder.max_notification_id())
        self.assertEqual(recorder.select_notifications(start=None, limit=3), [])
        self.assertEqual(recorder.select_notifications(None, 3, topics=["topic1"]), [])

        id1, id2 = self._new_id(), self._new_id()
        event1 = self.new_stored_event(id1, v1, "topic1", b"state1")
        event2 = self.new_stored_event(id1, v1 + 1, "topic2", b"state2")
        event3 = self.new_stored_event(id2, v1, "topic3", b"state3")

        self.assertEqual(list(recorder.insert_events([event1, event2]) or []), [1, 2])
        self.assertEqual(list(recorder.insert_events([event3]) or []), [3])
        with self.assertRaises(IntegrityError):
            recorder.insert_events([event3])
        self.assertEqual(recorder.max_notification_id(), 3)
        self.assert_events_eq(recorder.select_events(id1), [event1, event2])
        self.assert_events_eq(recorder.select_events(id2), [event3])

        # Each notification is its event with its id.
        expected = {1: event1, 2: event2, 3: event3}
        notifications = recorder.select_notifications(start=None, limit=10)
        self.assertEqual([n.id for n in notifications], [1, 2, 3])
        for notification in notifications:
            self.assertIsInstance(notification, Notification)
            self.assert_event_eq(notification, expected[notification.id])

        def ids(*args: Any, **kwargs: Any) -> list[int]:
            return [n.id for n in recorder.select_notifications(*args, **kwargs)]

        # start (inclusive by default), stop (inclusive), limit.
        self.assertEqual(ids(1, 10), [1, 2, 3])
        self.assertEqual(ids(None, 10, stop=2), [1, 2])
        self.assertEqual(ids(None, 1), [1])
        self.assertEqual(ids(2, 1), [2])
        self.assertEqual(ids(2, 2), [2, 3])
        self.assertEqual(ids(3, 1), [3])
        self.assertEqual(ids(4, 10), [])
        self.assertEqual(ids(start=2, limit=10, stop=2), [2])
        self.assertEqual(ids(start=1, limit=10, stop=2), [1, 2])
        # inclusive_of_start=False: strictly after start.
        self.assertEqual(ids(1, 10, inclusive_of_start=False), [2, 3])
        self.assertEqual(ids(2, 10, inclusive_of_start=False), [3])
        self.assertEqual(ids(1, 1, inclusive_of_start=False), [2])
        self.assertEqual(ids(3, 1, inclusive_of_start=False), [])
        self.assertEqual(ids(start=1, limit=10, stop=2, inclusive_of_start=False), [2])
        # topics: only the notifications of those topics.
        self.assertEqual(ids(None, 10, topics=["topic1", "topic2", "topic3"]), [1, 2, 3])
        self.assertEqual(ids(1, 10, topics=["topic1"]), [1])
        self.assertEqual(ids(1, 3, topics=["topic2"]), [2])
        self.assertEqual(ids(1, 3, topics=["topic3"]), [3])
        self.assertEqual(ids(1, 3, topics=["topic1", "topic3"]), [1, 3])
        self.assertEqual(ids(2, 3, topics=["topic1"]), [])

    def test_performance(self) -> None:
        recorder = self.create_recorder()

        def insert_one() -> None:
            recorder.insert_events([self.new_stored_event(self._new_id(), self.INITIAL_VERSION)])

        _time_inserts(self, insert_one, number=100)

    def test_concurrent_no_conflicts(self, initial_position: int = 0) -> None:
        """Many threads write while two read: no errors, each batch recorded whole,
        every notification id given once, readers' pages in id order.

        ``initial_position`` is the notification id the log already has (for
        subclasses whose store is not empty)."""
        recorder = self.create_recorder()
        errors: list[BaseException] = []
        stop_reading = threading.Event()
        written: list[Any] = []  # originator ids (list.append is thread-safe)

        def write_batch() -> Sequence[int]:
            originator_id = self._new_id()
            written.append(originator_id)
            batch = [
                self.new_stored_event(originator_id, self.INITIAL_VERSION + i)
                for i in range(self.concurrent_events_per_batch)
            ]
            return list(recorder.insert_events(batch) or [])

        def read_continuously() -> None:
            try:
                while not stop_reading.is_set():
                    page = recorder.select_notifications(
                        start=initial_position, limit=10, inclusive_of_start=False
                    )
                    page_ids = [n.id for n in page]
                    if page_ids != sorted(set(page_ids)):
                        raise AssertionError(f"ids out of order in a page: {page_ids}")
                    time.sleep(0.0001)
            except BaseException as error:  # reported by the test's thread
                errors.append(error)

        readers = [threading.Thread(target=read_continuously) for _ in range(2)]
        for reader in readers:
            reader.start()
        returned_ids: list[int] = []
        try:
            batches = self.concurrent_writers * self.concurrent_batches_per_writer
            with ThreadPoolExecutor(max_workers=self.concurrent_writers) as executor:
                for ids in executor.map(lambda _: write_batch(), range(batches)):
                    returned_ids.extend(ids)
        finally:
            stop_reading.set()
            for reader in readers:
                reader.join()
        if errors:
            raise errors[0]
        self._check_concurrent_writes(recorder, initial_position, written, returned_ids)

    def _check_concurrent_writes(
        self,
        recorder: ApplicationRecorder,
        initial_position: int,
        written: list[Any],
        returned_ids: list[int],
    ) -> None:
        """Every batch recorded whole, each id given once, in order (and without
        gaps, where ids are contiguous and the log had no other writers)."""
        after = _all_notifications_after(recorder, initial_position)
        originators = set(written)
        ours = [n for n in after if n.originator_id in originators]
        ids = [n.id for n in ours]
        expected_count = len(written) * self.concurrent_events_per_batch
        self.assertEqual(len(ids), expected_count)
        self.assertEqual(len(set(ids)), expected_count, "notification ids repeated")
        self.assertEqual(ids, sorted(ids))
        per_originator = Counter(n.originator_id for n in ours)
        self.assertEqual(set(per_originator.values()), {self.concurrent_events_per_batch})
        if returned_ids:  # an application recorder returns the ids it gave
            self.assertEqual(sorted(returned_ids), ids)
        if self.EXPECT_CONTIGUOUS_NOTIFICATION_IDS and len(ours) == len(after):
            first = initial_position + 1
            self.assertEqual(ids, list(range(first, first + expected_count)))

    def test_concurrent_throughput(self) -> None:
        recorder = self.create_recorder()
        written: list[Any] = []

        def insert_job() -> None:
            originator_id = self._new_id()
            written.append(originator_id)
            recorder.insert_events(
                [
                    self.new_stored_event(originator_id, self.INITIAL_VERSION + i)
                    for i in range(self.throughput_events_per_job)
                ]
            )

        def run_jobs(count: int) -> None:
            with ThreadPoolExecutor(max_workers=self.throughput_workers) as executor:
                for future in [executor.submit(insert_job) for _ in range(count)]:
                    future.result()  # raises a job's error here

        position = recorder.max_notification_id() or 0
        run_jobs(self.throughput_workers)  # warm up
        started = time.perf_counter()
        run_jobs(self.throughput_jobs)
        count = self.throughput_jobs * self.throughput_events_per_job
        _report_rate(self, "events inserted concurrently", count, time.perf_counter() - started)
        originators = set(written)
        recorded = _all_notifications_after(recorder, position)
        ours = [n for n in recorded if n.originator_id in originators]
        self.assertEqual(len(ours), len(written) * self.throughput_events_per_job)

    def optional_test_insert_subscribe(self, initial_position: int = 0) -> None:
        """Subscriptions (call from a ``test_...`` of a store that supports them):
        they return what was recorded after ``gt``, then what is recorded later,
        filter by topic, and end when stopped."""
        recorder = self.create_recorder()
        v1 = self.INITIAL_VERSION
        position_before = recorder.max_notification_id()
        id1, id2 = self._new_id(), self._new_id()
        event1 = self.new_stored_event(id1, v1, "topic1")
        event2 = self.new_stored_event(id1, v1 + 1, "topic2")
        event3 = self.new_stored_event(id2, v1, "topic3")

        ids = recorder.insert_events([event1, event2])
        if self.EXPECT_CONTIGUOUS_NOTIFICATION_IDS:
            self.assertEqual(list(ids or []), [initial_position + 1, initial_position + 2])
        position_after_two = recorder.max_notification_id()

        with recorder.subscribe(gt=position_before) as subscription:
            received = _take(subscription, 2)
            self.assert_events_eq(received, [event1, event2])
            if self.EXPECT_CONTIGUOUS_NOTIFICATION_IDS:
                self.assertEqual(
                    [n.id for n in received], [initial_position + 1, initial_position + 2]
                )
            # Recorded while subscribed: it arrives next.
            ids = recorder.insert_events([event3])
            if self.EXPECT_CONTIGUOUS_NOTIFICATION_IDS:
                self.assertEqual(list(ids or []), [initial_position + 3])
            self.assert_events_eq(_take(subscription, 1), [event3])

        with recorder.subscribe(gt=position_after_two) as subscription:
            self.assert_events_eq(_take(subscription, 1), [event3])

        # Stopped while iterating: the loop ends.
        with recorder.subscribe(gt=initial_position) as subscription:
            count = 0
            for _ in subscription:
                count += 1
                subscription.stop()
            self.assertEqual(count, 1)

        # Stopped before iterating, inside or before the context: nothing comes.
        subscription = recorder.subscribe(gt=None)
        with subscription:
            subscription.stop()
            self.assertEqual(list(subscription), [])
        subscription = recorder.subscribe(gt=None)
        subscription.stop()
        with subscription:
            self.assertEqual(list(subscription), [])

        # Topics: only notifications of those topics, up to ours (a shared store
        # may hold earlier ones of the same topic).
        with recorder.subscribe(gt=None, topics=["topic3"]) as subscription:
            for notification in subscription:
                self.assertEqual(notification.topic, "topic3")
                if (notification.originator_id, notification.originator_version) == (
                    event3.originator_id,
                    event3.originator_version,
                ):
                    self.assert_event_eq(notification, event3)
                    break

    def close_db_connection(self, *args: Any) -> None:
        """Hook for stores whose tests close a connection (nothing by default)."""


def _take(subscription: Any, count: int) -> list[Notification]:
    taken: list[Notification] = []
    for notification in subscription:
        taken.append(notification)
        if len(taken) == count:
            break
    return taken


def _all_notifications_after(recorder: ApplicationRecorder, position: int) -> list[Notification]:
    """Every notification after ``position``, read page by page."""
    found: list[Notification] = []
    while True:
        page = recorder.select_notifications(start=position, limit=1000, inclusive_of_start=False)
        if not page:
            return found
        found.extend(page)
        position = page[-1].id


class TrackingRecorderTestCase(TestCase, ABC):
    """Recording how far upstream applications' logs were processed."""

    @abstractmethod
    def create_recorder(self) -> TrackingRecorder:
        """A recorder with its table created and empty."""

    def test_insert_tracking(self) -> None:
        recorder = self.create_recorder()
        self.assertIsNone(recorder.max_tracking_id("upstream1"))

        recorder.insert_tracking(tracking=Tracking("upstream1", 21))
        recorder.insert_tracking(tracking=Tracking("upstream1", 22))
        recorder.insert_tracking(tracking=Tracking("upstream2", 21))

        # A position already recorded (or below it) conflicts, and changes nothing.
        for name, position in (("upstream1", 21), ("upstream1", 22), ("upstream2", 21)):
            with self.assertRaises(IntegrityError, msg=f"{name} {position}"):
                recorder.insert_tracking(tracking=Tracking(name, position))
        self.assertEqual(recorder.max_tracking_id("upstream1"), 22)
        self.assertEqual(recorder.max_tracking_id("upstream2"), 21)
        self.assertIsNone(recorder.max_tracking_id("upstream3"))

        # Processed: everything up to the position (and None, "nothing yet").
        upstream1: list[tuple[int | None, bool]] = [
            (None, True),
            (20, True),
            (22, True),
            (23, False),
        ]
        for notification_id, processed in upstream1:
            self.assertEqual(recorder.has_tracking_id("upstream1", notification_id), processed)
        upstream2: list[tuple[int | None, bool]] = [
            (None, True),
            (20, True),
            (21, True),
            (22, False),
        ]
        for notification_id, processed in upstream2:
            self.assertEqual(recorder.has_tracking_id("upstream2", notification_id), processed)
        self.assertTrue(recorder.has_tracking_id("upstream3", None))
        self.assertFalse(recorder.has_tracking_id("upstream3", 1))

        # A position may skip ahead; the gap cannot be filled in afterwards.
        recorder.insert_tracking(Tracking("upstream1", 24))
        with self.assertRaises(IntegrityError):
            recorder.insert_tracking(Tracking("upstream1", 23))
        self.assertEqual(recorder.max_tracking_id("upstream1"), 24)
        self.assertTrue(recorder.has_tracking_id("upstream1", 23))

    def test_wait(self) -> None:
        recorder = self.create_recorder()
        recorder.wait("upstream1", None)  # nothing to wait for
        with self.assertRaises(TimeoutError):
            recorder.wait("upstream1", 21, timeout=0.1)

        recorder.insert_tracking(Tracking(notification_id=21, application_name="upstream1"))
        for position in (None, 10, 21):
            recorder.wait("upstream1", position)
        with self.assertRaises(TimeoutError):
            recorder.wait("upstream1", 22, timeout=0.1)
        interrupt = threading.Event()
        interrupt.set()
        with self.assertRaises(WaitInterruptedError):
            recorder.wait("upstream1", 22, interrupt=interrupt)


class ProcessRecorderTestCase(RecorderTestCase, ABC):
    """Recording events together with the upstream position they came from."""

    @abstractmethod
    def create_recorder(self) -> ProcessRecorder:
        """A recorder with its tables created and empty."""

    def test_insert_select(self) -> None:
        recorder = self.create_recorder()
        v1 = self.INITIAL_VERSION
        self.assertIsNone(recorder.max_tracking_id("upstream_app"))
        id1, id2 = self._new_id(), self._new_id()
        event1 = self.new_stored_event(id1, v1, "topic1")
        event2 = self.new_stored_event(id1, v1 + 1, "topic2")
        event3 = self.new_stored_event(id2, v1, "topic3")
        event4 = self.new_stored_event(id2, v1 + 1, "topic4")
        tracking1 = Tracking(application_name="upstream_app", notification_id=1)
        tracking2 = Tracking(application_name="upstream_app", notification_id=2)

        recorder.insert_events([event1, event2], tracking=tracking1)
        self.assertEqual(recorder.max_tracking_id("upstream_app"), 1)

        # An event conflict records neither the events nor the tracking.
        with self.assertRaises(IntegrityError):
            recorder.insert_events([event2], tracking=tracking2)
        self.assertEqual(recorder.max_tracking_id("upstream_app"), 1)

        # A tracking conflict records neither the tracking nor the events.
        with self.assertRaises(IntegrityError):
            recorder.insert_events([event3], tracking=tracking1)
        self.assertEqual(recorder.max_tracking_id("upstream_app"), 1)
        self.assertEqual(recorder.select_events(id2), [])

        recorder.insert_events([event3], tracking=tracking2)
        self.assertEqual(recorder.max_tracking_id("upstream_app"), 2)
        # Events without tracking leave the position alone.
        recorder.insert_events([event4])
        self.assertEqual(recorder.max_tracking_id("upstream_app"), 2)
        self.assert_events_eq(recorder.select_events(id1), [event1, event2])
        self.assert_events_eq(recorder.select_events(id2), [event3, event4])
        self.assertIsNone(recorder.max_tracking_id("other_app"))

    def test_has_tracking_id(self) -> None:
        recorder = self.create_recorder()

        def processed() -> list[bool]:
            return [recorder.has_tracking_id("upstream_app", i) for i in (1, 2, 3, 4)]

        self.assertTrue(recorder.has_tracking_id("upstream_app", None))
        self.assertEqual(processed(), [False, False, False, False])
        recorder.insert_events(
            [], tracking=Tracking(application_name="upstream_app", notification_id=1)
        )
        self.assertEqual(processed(), [True, False, False, False])
        recorder.insert_events(
            [], tracking=Tracking(application_name="upstream_app", notification_id=3)
        )
        self.assertEqual(processed(), [True, True, True, False])

    def test_raises_when_lower_inserted_later(self) -> None:
        recorder = self.create_recorder()
        recorder.insert_events(
            [], tracking=Tracking(application_name="upstream_app", notification_id=2)
        )
        self.assertEqual(recorder.max_tracking_id("upstream_app"), 2)
        with self.assertRaises(IntegrityError):
            recorder.insert_events(
                [], tracking=Tracking(application_name="upstream_app", notification_id=1)
            )
        self.assertEqual(recorder.max_tracking_id("upstream_app"), 2)

    def test_performance(self) -> None:
        recorder = self.create_recorder()
        positions = iter(range(1, 1000))

        def insert_one() -> None:
            recorder.insert_events(
                [self.new_stored_event(self._new_id(), self.INITIAL_VERSION)],
                tracking=Tracking(application_name="upstream_app", notification_id=next(positions)),
            )

        _time_inserts(self, insert_one, number=100)


class NonInterleavingNotificationIDsBaseCase(RecorderTestCase, ABC):
    """Two batches written at once get two runs of ids: one wholly before the other."""

    # Events in each of the two batches.
    insert_num = 1000

    @abstractmethod
    def create_recorder(self) -> ApplicationRecorder:
        """A recorder with its table created."""

    def create_stack(self, originator_id: Any) -> Sequence[StoredEvent]:
        """One batch: ``insert_num`` events of one originator."""
        return [
            StoredEvent(
                originator_id=originator_id,
                originator_version=version,
                topic="non-interleaving-test-event",
                state=b"{}",
            )
            for version in range(self.insert_num)
        ]

    def test(self) -> None:
        recorder = self.create_recorder()
        position = recorder.max_notification_id()
        id1, id2 = self._new_id(), self._new_id()
        stacks = [self.create_stack(id1), self.create_stack(id2)]
        start_together = threading.Barrier(len(stacks))
        errors: list[BaseException] = []

        def insert(stack: Sequence[StoredEvent]) -> None:
            try:
                start_together.wait()
                recorder.insert_events(stack)
            except BaseException as error:  # reported by the test's thread
                errors.append(error)

        threads = [threading.Thread(target=insert, args=(s,), daemon=True) for s in stacks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

        notifications = recorder.select_notifications(
            start=position, limit=2 * self.insert_num, inclusive_of_start=False
        )
        ids1 = [n.id for n in notifications if n.originator_id == id1]
        ids2 = [n.id for n in notifications if n.originator_id == id2]
        self.assertEqual(len(ids1), self.insert_num)
        self.assertEqual(len(ids2), self.insert_num)
        one_before_other = max(ids1) < min(ids2) or max(ids2) < min(ids1)
        self.assertTrue(one_before_other, "the two batches' notification ids interleave")
