"""The behaviour every store's recorders must share (the popo store is the reference).

A test module subclasses ``RecorderContract`` and implements the three
``create_*_recorder`` methods (each returns a recorder with its tables created and
empty). Set ``supports_concurrency`` to run the many-writers test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    IntegrityError,
    ProcessRecorder,
    RecordConflictError,
    StoredEvent,
    Tracking,
    TrackingConflictError,
)


def event(originator_id: UUID, version: int, topic: str = "topic:A") -> StoredEvent:
    return StoredEvent(
        originator_id=originator_id,
        originator_version=version,
        topic=topic,
        state=f"state-{originator_id.hex[:6]}-{version}".encode(),
    )


class RecorderContract:
    supports_concurrency = False
    concurrent_writers = 8
    batches_per_writer = 50

    def create_aggregate_recorder(self) -> AggregateRecorder:
        raise NotImplementedError

    def create_application_recorder(self) -> ApplicationRecorder:
        raise NotImplementedError

    def create_process_recorder(self) -> ProcessRecorder:
        raise NotImplementedError

    @pytest.fixture(params=["aggregate", "application", "process"])
    def any_recorder(self, request: pytest.FixtureRequest) -> AggregateRecorder:
        return getattr(self, f"create_{request.param}_recorder")()  # type: ignore[no-any-return]

    @pytest.fixture(params=["application", "process"])
    def app_recorder(self, request: pytest.FixtureRequest) -> ApplicationRecorder:
        return getattr(self, f"create_{request.param}_recorder")()  # type: ignore[no-any-return]

    # -- aggregate events ----------------------------------------------------

    def test_insert_and_select_events(self, any_recorder: AggregateRecorder) -> None:
        a, b = uuid4(), uuid4()
        assert any_recorder.select_events(a) == []
        any_recorder.insert_events([event(a, 1), event(b, 1)])
        any_recorder.insert_events([event(a, 2), event(a, 3)])
        selected = any_recorder.select_events(a)
        assert selected == [event(a, 1), event(a, 2), event(a, 3)]
        assert all(isinstance(s.originator_id, UUID) for s in selected)
        assert all(isinstance(s.state, bytes) for s in selected)
        assert any_recorder.select_events(b) == [event(b, 1)]

    def test_insert_nothing(self, any_recorder: AggregateRecorder) -> None:
        result = any_recorder.insert_events([])
        assert not result

    def test_select_events_gt_lte_desc_limit(self, any_recorder: AggregateRecorder) -> None:
        a = uuid4()
        any_recorder.insert_events([event(a, v) for v in range(1, 6)])

        def versions(**kwargs: object) -> list[int]:
            return [s.originator_version for s in any_recorder.select_events(a, **kwargs)]  # type: ignore[arg-type]

        assert versions() == [1, 2, 3, 4, 5]
        assert versions(gt=2) == [3, 4, 5]
        assert versions(lte=3) == [1, 2, 3]
        assert versions(gt=1, lte=4) == [2, 3, 4]
        assert versions(desc=True) == [5, 4, 3, 2, 1]
        assert versions(limit=2) == [1, 2]
        assert versions(desc=True, limit=2) == [5, 4]
        assert versions(gt=1, lte=4, desc=True, limit=2) == [4, 3]
        assert versions(gt=5) == []
        assert versions(limit=0) == []

    def test_conflict_with_recorded_event_records_nothing(
        self, any_recorder: AggregateRecorder
    ) -> None:
        a, b = uuid4(), uuid4()
        any_recorder.insert_events([event(a, 1)])
        with pytest.raises(RecordConflictError) as info:
            any_recorder.insert_events([event(b, 1), event(a, 2), event(a, 1)])
        assert isinstance(info.value, IntegrityError)
        assert str(a) in str(info.value)
        assert any_recorder.select_events(a) == [event(a, 1)]
        assert any_recorder.select_events(b) == []

    def test_conflict_within_one_batch_records_nothing(
        self, any_recorder: AggregateRecorder
    ) -> None:
        a = uuid4()
        with pytest.raises(RecordConflictError):
            any_recorder.insert_events([event(a, 1), event(a, 2), event(a, 2)])
        assert any_recorder.select_events(a) == []
        any_recorder.insert_events([event(a, 1)])  # the recorder still works
        assert any_recorder.select_events(a) == [event(a, 1)]

    def test_one_event_at_a_time_out_of_order(self, any_recorder: AggregateRecorder) -> None:
        # (Stores may record a lone event in a way of their own: it is covered here.)
        a = uuid4()
        any_recorder.insert_events([event(a, 1)])
        any_recorder.insert_events([event(a, 3)])
        any_recorder.insert_events([event(a, 2)])  # a gap filled later
        for taken in (1, 2, 3):
            with pytest.raises(RecordConflictError):
                any_recorder.insert_events([event(a, taken)])
        assert any_recorder.select_events(a) == [event(a, 1), event(a, 2), event(a, 3)]

    def test_an_equal_id_made_apart_is_the_same_originator(
        self, any_recorder: AggregateRecorder
    ) -> None:
        a = uuid4()
        same = UUID(a.hex)  # equal, another object
        any_recorder.insert_events([event(a, 1)])
        assert any_recorder.select_events(same) == [event(a, 1)]
        with pytest.raises(RecordConflictError):
            any_recorder.insert_events([event(same, 1)])
        any_recorder.insert_events([event(same, 2)])
        assert any_recorder.select_events(a, gt=1) == [event(a, 2)]

    def test_a_uuids_string_form_selects_its_events(self, any_recorder: AggregateRecorder) -> None:
        # (As the 9.x stores let it: an id that came as text finds the UUID's events.)
        a = uuid4()
        any_recorder.insert_events([event(a, 1), event(a, 2)])
        for form in (str(a), a.hex):
            assert any_recorder.select_events(form) == [event(a, 1), event(a, 2)]  # type: ignore[arg-type]
            assert any_recorder.select_events(form, gt=1) == [event(a, 2)]  # type: ignore[arg-type]
            assert any_recorder.select_events(form, desc=True, limit=1) == [event(a, 2)]  # type: ignore[arg-type]
        assert any_recorder.select_events(str(uuid4())) == []  # type: ignore[arg-type]

    # -- notification log ----------------------------------------------------

    def test_notification_ids_increase_without_gaps(
        self, app_recorder: ApplicationRecorder
    ) -> None:
        a, b = uuid4(), uuid4()
        assert app_recorder.max_notification_id() is None
        assert list(app_recorder.insert_events([event(a, 1)]) or []) == [1]
        assert list(app_recorder.insert_events([event(a, 2), event(b, 1), event(b, 2)]) or []) == [
            2,
            3,
            4,
        ]
        assert app_recorder.max_notification_id() == 4
        notifications = app_recorder.select_notifications(None, 10)
        assert [n.id for n in notifications] == [1, 2, 3, 4]
        assert notifications[1].originator_id == a
        assert isinstance(notifications[1].originator_id, UUID)
        assert notifications[1].originator_version == 2
        assert notifications[1].state == event(a, 2).state
        assert notifications[2].topic == "topic:A"

    def test_failed_insert_leaves_log_unchanged(self, app_recorder: ApplicationRecorder) -> None:
        a = uuid4()
        app_recorder.insert_events([event(a, 1)])
        with pytest.raises(RecordConflictError):
            app_recorder.insert_events([event(a, 2), event(a, 1)])
        assert app_recorder.max_notification_id() == 1
        assert [n.id for n in app_recorder.select_notifications(None, 10)] == [1]

    def test_select_notifications_arguments(self, app_recorder: ApplicationRecorder) -> None:
        a = uuid4()
        topics = ["topic:A", "topic:B", "topic:A", "topic:C", "topic:B", "topic:A"]
        app_recorder.insert_events([event(a, v + 1, t) for v, t in enumerate(topics)])

        def ids(*args: object, **kwargs: object) -> list[int]:
            return [n.id for n in app_recorder.select_notifications(*args, **kwargs)]  # type: ignore[arg-type]

        assert ids(None, 10) == [1, 2, 3, 4, 5, 6]
        assert ids(1, 10) == [1, 2, 3, 4, 5, 6]
        assert ids(3, 10) == [3, 4, 5, 6]
        assert ids(3, 10, inclusive_of_start=False) == [4, 5, 6]
        assert ids(None, 2) == [1, 2]
        assert ids(2, 2) == [2, 3]
        assert ids(2, 10, stop=4) == [2, 3, 4]
        assert ids(2, 10, 4, inclusive_of_start=False) == [3, 4]
        assert ids(None, 10, topics=["topic:A"]) == [1, 3, 6]
        assert ids(None, 10, topics=["topic:B", "topic:C"]) == [2, 4, 5]
        assert ids(None, 2, topics=["topic:A"]) == [1, 3]
        assert ids(2, 10, 5, ["topic:A", "topic:B"]) == [2, 3, 5]
        assert ids(None, 10, topics=["topic:Z"]) == []
        assert ids(7, 10) == []
        assert ids(6, 10, inclusive_of_start=False) == []
        assert ids(None, 0) == []
        assert ids(4, 10, stop=3) == []

    # -- tracking ------------------------------------------------------------

    def test_tracking_moves_forward_only(self) -> None:
        recorder = self.create_process_recorder()
        assert recorder.max_tracking_id("up") is None
        assert not recorder.has_tracking_id("up", 1)
        assert recorder.has_tracking_id("up", None)
        recorder.insert_events([], tracking=Tracking("up", 5))
        assert recorder.max_tracking_id("up") == 5
        assert recorder.has_tracking_id("up", 5)
        assert recorder.has_tracking_id("up", 4)
        assert not recorder.has_tracking_id("up", 6)
        for stale in (5, 3):
            with pytest.raises(TrackingConflictError) as info:
                recorder.insert_events([], tracking=Tracking("up", stale))
            assert isinstance(info.value, IntegrityError)
        assert recorder.max_tracking_id("up") == 5
        recorder.insert_events([], tracking=Tracking("up", 9))
        assert recorder.max_tracking_id("up") == 9
        # Positions of different upstream applications are independent.
        assert recorder.max_tracking_id("other") is None
        recorder.insert_events([], tracking=Tracking("other", 1))
        assert recorder.max_tracking_id("other") == 1
        assert recorder.max_tracking_id("up") == 9
        assert recorder.tracking_positions() == {"up": 9, "other": 1}

    def test_tracking_compares_the_position_it_started_from(self) -> None:
        recorder = self.create_process_recorder()
        # previous 0: only if nothing was recorded yet.
        recorder.insert_events([], tracking=Tracking("up", 5, previous_notification_id=0))
        with pytest.raises(TrackingConflictError):
            recorder.insert_events([], tracking=Tracking("up", 9, previous_notification_id=0))
        # Another process processed (5, 7] first: a batch (5, 9] must not be recorded too.
        recorder.insert_events([], tracking=Tracking("up", 7, previous_notification_id=5))
        a = uuid4()
        with pytest.raises(TrackingConflictError) as info:
            recorder.insert_events(
                [event(a, 1)], tracking=Tracking("up", 9, previous_notification_id=5)
            )
        assert "'up'" in str(info.value)
        assert recorder.select_events(a) == []
        assert recorder.max_tracking_id("up") == 7
        recorder.insert_events([], tracking=Tracking("up", 9, previous_notification_id=7))
        assert recorder.max_tracking_id("up") == 9

    def test_tracking_is_atomic_with_events(self) -> None:
        recorder = self.create_process_recorder()
        a = uuid4()
        ids = recorder.insert_events([event(a, 1), event(a, 2)], tracking=Tracking("up", 3))
        assert list(ids or []) == [1, 2]
        assert recorder.max_tracking_id("up") == 3
        # A stale position records none of the events.
        with pytest.raises(TrackingConflictError):
            recorder.insert_events([event(a, 3)], tracking=Tracking("up", 3))
        assert recorder.select_events(a) == [event(a, 1), event(a, 2)]
        assert recorder.max_notification_id() == 2
        # A conflicting event records no position.
        with pytest.raises(RecordConflictError):
            recorder.insert_events([event(a, 3), event(a, 2)], tracking=Tracking("up", 4))
        assert recorder.max_tracking_id("up") == 3
        assert recorder.select_events(a) == [event(a, 1), event(a, 2)]
        # When both conflict, the event conflict is reported (as the reference store does).
        with pytest.raises(RecordConflictError):
            recorder.insert_events([event(a, 2)], tracking=Tracking("up", 2))
        with pytest.raises(RecordConflictError):
            recorder.insert_events([event(a, 1)], tracking=Tracking("up", 2))
        assert recorder.max_tracking_id("up") == 3
        # Without tracking, events alone are recorded as usual.
        assert list(recorder.insert_events([event(a, 3)]) or []) == [3]
        assert recorder.max_tracking_id("up") == 3

    def test_tracked_batches_small_and_large_keep_their_order(self) -> None:
        # (Stores may pass a few events differently from many: both are covered.)
        recorder = self.create_process_recorder()
        position = 0
        for size in (3, 40):
            a = uuid4()
            batch = [event(a, v) for v in range(1, size + 1)]
            tracking = Tracking("up", position + size, previous_notification_id=position)
            ids = list(recorder.insert_events(batch, tracking=tracking) or [])
            assert ids == list(range(position + 1, position + size + 1))
            assert recorder.select_events(a) == batch
            assert [
                n.originator_version for n in recorder.select_notifications(position + 1, size)
            ] == list(range(1, size + 1))
            position += size
            # Refused for a stale start, or for one recorded event: nothing recorded.
            b = uuid4()
            more = [event(b, v) for v in range(1, size + 1)]
            with pytest.raises(TrackingConflictError):
                recorder.insert_events(
                    more, tracking=Tracking("up", position + size, previous_notification_id=0)
                )
            with pytest.raises(RecordConflictError):
                recorder.insert_events(
                    [*more[:-1], event(a, size)],
                    tracking=Tracking("up", position + size, previous_notification_id=position),
                )
            assert recorder.select_events(b) == []
            assert recorder.max_tracking_id("up") == position
            assert recorder.max_notification_id() == position

    # -- concurrency ---------------------------------------------------------

    def test_concurrent_writers_and_a_following_reader(self) -> None:
        if not self.supports_concurrency:
            pytest.skip("store not tested with concurrent writers")
        recorder = self.create_application_recorder()
        written, seen = write_while_following(
            recorder, self.concurrent_writers, self.batches_per_writer, page_size=50
        )
        total = self.concurrent_writers * self.batches_per_writer * 3
        assert len(written) == total
        assert seen == sorted(written)  # every id once, in increasing order
        assert len(set(seen)) == total
        assert recorder.max_notification_id() == max(written)


def write_while_following(
    recorder: ApplicationRecorder,
    writers: int,
    batches: int,
    page_size: int,
    write_elsewhere: Callable[[], list[int]] | None = None,
) -> tuple[list[int], list[int]]:
    """``writers`` threads each insert ``batches`` batches of three events (and
    ``write_elsewhere``, if given, runs in a thread of its own and returns the ids
    it wrote) while a follower pages through the notifications, ``page_size`` at a
    time, until writing is over. Returns the ids written and the ids it saw."""
    written: list[int] = []
    seen: list[int] = []
    errors: list[BaseException] = []
    written_lock = threading.Lock()
    writers_done = threading.Event()

    def reporting(target: Callable[[], list[int] | None]) -> Callable[[], None]:
        # A thread's error fails the test; the ids a writer returns count as written.
        def run() -> None:
            try:
                ids = target()
                with written_lock:
                    written.extend(ids or [])
            except BaseException as error:  # pragma: no cover (reported below)
                errors.append(error)

        return run

    def write() -> list[int]:
        ids: list[int] = []
        for _ in range(batches):
            ids.extend(recorder.insert_events([event(uuid4(), v) for v in (1, 2, 3)]) or [])
        return ids

    def follow() -> None:
        last: int | None = None
        while True:
            finished = writers_done.is_set()
            page = recorder.select_notifications(last, page_size, inclusive_of_start=last is None)
            seen.extend(n.id for n in page)
            if page:
                last = page[-1].id
            elif finished:
                return

    follower = threading.Thread(target=reporting(follow))
    targets = [write_elsewhere] if write_elsewhere is not None else []
    threads = [threading.Thread(target=reporting(t)) for t in [*targets, *[write] * writers]]
    follower.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writers_done.set()
    follower.join(timeout=120)
    assert errors == [], errors
    assert not follower.is_alive(), "the follower did not catch up within 120 s"
    return written, seen


class DatabaseRecorders(RecorderContract):
    """Recorders of a database store, each on fresh tables of ``self.datastore``."""

    datastore: Any
    aggregate_recorder_class: Any
    application_recorder_class: Any
    process_recorder_class: Any

    def create_aggregate_recorder(self) -> AggregateRecorder:
        return self._created(self.aggregate_recorder_class(self.datastore, _table("agg")))

    def create_application_recorder(self) -> ApplicationRecorder:
        return self._created(self.application_recorder_class(self.datastore, _table("app")))

    def create_process_recorder(self) -> ProcessRecorder:
        suffix = uuid4().hex[:8]
        recorder = self.process_recorder_class(self.datastore, f"proc_{suffix}", f"track_{suffix}")
        return self._created(recorder)

    @staticmethod
    def _created(recorder: Any) -> Any:
        recorder.create_table()
        return recorder


def _table(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:8]}"
