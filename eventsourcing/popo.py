"""In-memory recorders ("plain old Python objects"): the default store.

Thread-safe: one lock serialises writes, so notification ids are assigned and
become visible in order, and a reader can never skip one.

Ids: a recorder made with ``originator_id_type`` (UUID or str; the factory gives
the one ``ORIGINATOR_ID_TYPE`` selects, if set) refuses ids of another type. One
made without keeps either; then a UUID and its string form name different
originators, and a read that finds nothing under one, but events under the
other, says so instead of returning nothing.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing._deadletters import POPODeadLetters
from eventsourcing.persistence import (
    ORIGINATOR_ID_TYPE,
    AggregateRecorder,
    ApplicationRecorder,
    Beacon,
    BeaconWaker,
    InfrastructureFactory,
    ListenNotifySubscription,
    Notification,
    ProcessRecorder,
    RecordConflictError,
    StoredEvent,
    Tracking,
    TrackingConflictError,
    TrackingRecorder,
    Waker,
    first_definer,
    notification_of,
    originator_id_type,
    other_form_of_id,
    selected_id,
    tracking_conflict,
    wrong_id_type,
)

if TYPE_CHECKING:
    from eventsourcing.dcb.popo import InMemoryDCBRecorder


class POPOAggregateRecorder(AggregateRecorder):
    def __init__(self, originator_id_type: type | None = None) -> None:
        self._lock = threading.RLock()
        # Keyed by the UUID's number: hashing a UUID is a call of Python code.
        self._events_by_originator: dict[Any, list[StoredEvent]] = {}
        # The type of ids kept (UUID or str), or None for either.
        self.originator_id_type = originator_id_type
        # Whether a subclass keeps more with each insert (see _insert_extended).
        self._extended = first_definer(type(self), "_insert_events") not in _OUR_RECORDERS

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if self._extended:
            return self._insert_extended(stored_events, kwargs)
        with self._lock:
            self._check_conflicts(stored_events)
            self._append(stored_events)
        return None

    def _insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Record the events, with the lock held (the extension point: a subclass may
        keep more, with ``insert_events``'s keyword arguments, and call this)."""
        self._check_conflicts(stored_events)
        self._append(stored_events)
        return None

    def _insert_extended(
        self, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]
    ) -> Sequence[int] | None:
        """Insert through a subclass's ``_insert_events``; if it raises, undo what was
        recorded, so that nothing is (as a database's transaction would)."""
        with self._lock:
            undo = self._undo_point()
            try:
                return self._insert_events(stored_events, **kwargs)
            except BaseException:
                self._roll_back(stored_events, undo)
                raise

    def _undo_point(self) -> Any:
        return None

    def _roll_back(self, stored_events: Sequence[StoredEvent], undo: Any) -> None:
        """Take out those of ``stored_events`` (the very objects) that were recorded."""
        for stored in stored_events:
            key = _key(stored.originator_id)
            events = self._events_by_originator.get(key)
            if not events:
                continue
            kept = [e for e in events if e is not stored]
            if not kept:
                del self._events_by_originator[key]
            elif len(kept) < len(events):
                events[:] = kept

    def _check_id(self, originator_id: Any) -> None:
        """Refuse an id of another type than the one kept (if one is)."""
        id_type = self.originator_id_type
        if (
            id_type is not None
            and type(originator_id) is not id_type
            and not isinstance(originator_id, id_type)
        ):
            raise wrong_id_type(originator_id, id_type, "this in-memory recorder")

    def _check_conflicts(self, stored_events: Sequence[StoredEvent]) -> None:
        if not stored_events:  # a follower's batch that only moves its position
            return
        checks_ids = self.originator_id_type is not None
        if len(stored_events) == 1:  # the usual save: no duplicates within it to look for
            if checks_ids:
                self._check_id(stored_events[0].originator_id)
            if self._is_recorded(stored_events[0]):
                raise _conflict(stored_events[0])
            return
        next_versions: dict[UUID, set[int]] = {}
        for stored in stored_events:
            if checks_ids:
                self._check_id(stored.originator_id)
            taken = next_versions.setdefault(stored.originator_id, set())
            if stored.originator_version in taken or self._is_recorded(stored):
                raise _conflict(stored)
            taken.add(stored.originator_version)

    def _is_recorded(self, stored: StoredEvent) -> bool:
        events = self._events_by_originator.get(_key(stored.originator_id))
        return _holds_version(events, stored.originator_version)

    def _append(self, stored_events: Sequence[StoredEvent]) -> None:
        for stored in stored_events:
            self._append_one(stored)

    def _append_one(self, stored: StoredEvent) -> None:
        key = _key(stored.originator_id)
        self._place(key, self._events_by_originator.get(key), stored)

    def _place(self, key: Any, events: list[StoredEvent] | None, stored: StoredEvent) -> None:
        """Put ``stored`` in version order among ``events``, its originator's (under ``key``)."""
        if events is None:
            self._events_by_originator[key] = [stored]
        elif events[-1].originator_version < stored.originator_version:
            events.append(stored)  # the usual: the next version
        else:
            events.insert(_index_of_version(events, stored.originator_version), stored)

    def select_events(
        self,
        originator_id: UUID | str,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        with self._lock:
            events = self._events_by_originator.get(_key(originator_id))
            if not events:
                kept_as = self._other_form_kept(originator_id)
                if kept_as is None:
                    return []
                events = self._events_by_originator.get(_key(kept_as))
                if not events:
                    return []
            if gt is not None and gt >= events[-1].originator_version:
                return []  # (a cached aggregate asking for news, usually none)
            lo = 0 if gt is None else _index_after_version(events, gt)
            hi = len(events) if lte is None else _index_after_version(events, lte)
            selected = events[lo:hi]
        if desc:
            selected.reverse()
        if limit is not None:
            selected = selected[:limit]
        return selected

    def _other_form_kept(self, originator_id: Any) -> Any:
        """The other form of ``originator_id`` under which its events may be kept (a
        UUID for its string form, the string form for a UUID), or None. A UUID and
        its string form select the same events, as in the 9.x in-memory store. Where
        ids of one type are kept, an id of the other type that is no form of one is
        refused."""
        id_type = self.originator_id_type
        if id_type is None:
            return other_form_of_id(originator_id)
        if isinstance(originator_id, id_type):
            return None
        return selected_id(originator_id, id_type, "this in-memory recorder")


def _key(originator_id: Any) -> Any:
    return originator_id.int if isinstance(originator_id, UUID) else originator_id


def _holds_version(events: list[StoredEvent] | None, version: int) -> bool:
    """Whether ``events`` (one originator's, in order) include ``version``."""
    return bool(
        events
        # Usually the next version: past the last one recorded, no search needed.
        and events[-1].originator_version >= version
        and _has_version(events, version)
    )


def _conflict(stored: StoredEvent) -> RecordConflictError:
    return RecordConflictError(
        f"Event of originator {stored.originator_id} at version "
        f"{stored.originator_version} is already recorded"
    )


def _has_version(events: list[StoredEvent], version: int) -> bool:
    i = _index_of_version(events, version)
    return i < len(events) and events[i].originator_version == version


def _index_of_version(events: list[StoredEvent], version: int) -> int:
    return bisect_left(events, version, key=lambda e: e.originator_version)


def _index_after_version(events: list[StoredEvent], version: int) -> int:
    return bisect_right(events, version, key=lambda e: e.originator_version)


class POPOApplicationRecorder(POPOAggregateRecorder, ApplicationRecorder):
    def __init__(self, originator_id_type: type | None = None) -> None:
        super().__init__(originator_id_type)
        self._notifications: list[Notification] = []

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if self._extended:
            return self._insert_extended(stored_events, kwargs)
        with self._lock:
            if len(stored_events) == 1:  # the usual save
                return self._record_one(stored_events[0])
            self._check_conflicts(stored_events)
            return self._append_with_ids(stored_events)

    def _insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if len(stored_events) == 1:
            return self._record_one(stored_events[0])
        self._check_conflicts(stored_events)
        return self._append_with_ids(stored_events)

    def _undo_point(self) -> Any:
        return len(self._notifications)

    def _roll_back(self, stored_events: Sequence[StoredEvent], undo: Any) -> None:
        super()._roll_back(stored_events, None)
        del self._notifications[undo:]

    def _record_one(self, stored: StoredEvent, tracking: Tracking | None = None) -> list[int]:
        """Check and record one event (the usual save), looking its originator up once."""
        if self.originator_id_type is not None:
            self._check_id(stored.originator_id)
        key = _key(stored.originator_id)
        events = self._events_by_originator.get(key)
        if _holds_version(events, stored.originator_version):
            raise _conflict(stored)  # (before any tracking conflict, as on the databases)
        if tracking is not None:
            self._track(tracking)
        self._place(key, events, stored)
        notifications = self._notifications
        notification_id = len(notifications) + 1
        notifications.append(notification_of(stored, notification_id))
        return [notification_id]

    def _track(self, tracking: Tracking) -> None:
        raise NotImplementedError("an application recorder records no tracking")

    def _append_with_ids(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        if not stored_events:  # a follower's batch that only moves its position
            return []
        notifications = self._notifications
        self._append(stored_events)
        first = len(notifications) + 1
        ids = list(range(first, first + len(stored_events)))
        notifications.extend(notification_of(s, nid) for nid, s in zip(ids, stored_events))
        return ids

    def notifications_of(
        self, stored_events: Sequence[StoredEvent], ids: Sequence[int]
    ) -> list[Notification]:
        # The log's own records: ids are consecutive, and the log only grows.
        return self._notifications[ids[0] - 1 : ids[-1]]

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        # Ids are 1, 2, 3, ...: notification n is at index n - 1.
        first_id = 1 if start is None else (start if inclusive_of_start else start + 1)
        index = max(first_id, 1) - 1
        topic_set = set(topics)
        selected: list[Notification] = []
        with self._lock:
            notifications = self._notifications
            end = len(notifications) if stop is None else min(len(notifications), stop)
            while index < end and len(selected) < limit:
                notification = notifications[index]
                if not topic_set or notification.topic in topic_set:
                    selected.append(notification)
                index += 1
        return selected

    def max_notification_id(self) -> int | None:
        with self._lock:
            return len(self._notifications) or None


class POPOProcessRecorder(POPODeadLetters, POPOApplicationRecorder, ProcessRecorder):
    def __init__(self, originator_id_type: type | None = None) -> None:
        super().__init__(originator_id_type)
        self._positions: dict[str, int] = {}

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        tracking: Tracking | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        if self._extended:
            return self._insert_extended(stored_events, dict(kwargs, tracking=tracking))
        with self._lock:
            if len(stored_events) == 1:  # the usual processed event
                return self._record_one(stored_events[0], tracking)
            self._check_conflicts(stored_events)
            if tracking is not None:
                self._track(tracking)
            return self._append_with_ids(stored_events)

    def _insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        if len(stored_events) == 1:
            return self._record_one(stored_events[0], tracking)
        self._check_conflicts(stored_events)
        if tracking is not None:
            self._track(tracking)
        return self._append_with_ids(stored_events)

    def _undo_point(self) -> Any:
        return (super()._undo_point(), dict(self._positions))

    def _roll_back(self, stored_events: Sequence[StoredEvent], undo: Any) -> None:
        notifications_undo, positions = undo
        super()._roll_back(stored_events, notifications_undo)
        self._positions = positions

    def _track(self, tracking: Tracking) -> None:
        """Check the tracking record against the position, and move the position."""
        name = tracking.application_name
        position = self._positions.get(name)
        previous = tracking.previous_notification_id
        # The usual: the batch began at the recorded position (tracking_conflict says why not).
        if position is None or previous != position or tracking.notification_id <= position:
            conflict = tracking_conflict(tracking, position)
            if conflict is not None:
                raise TrackingConflictError(conflict)
        self._positions[name] = tracking.notification_id

    def max_tracking_id(self, application_name: str) -> int | None:
        with self._lock:
            return self._positions.get(application_name)

    def tracking_positions(self) -> dict[str, int]:
        with self._lock:
            return dict(self._positions)


# The recorders of this module: a subclass whose _insert_events is one of theirs is
# not extended, and records on the quick paths.
_OUR_RECORDERS: tuple[type, ...] = (
    POPOAggregateRecorder,
    POPOApplicationRecorder,
    POPOProcessRecorder,
)


class POPOFactory(InfrastructureFactory):
    """Builds in-memory recorders; nothing survives the process.

    ``ORIGINATOR_ID_TYPE`` (uuid or text), if set, makes the recorders refuse ids
    of the other type; unset, they keep either.
    """

    ORIGINATOR_ID_TYPE = ORIGINATOR_ID_TYPE

    def _id_type(self) -> type | None:
        value = self.env.get(ORIGINATOR_ID_TYPE)
        return originator_id_type(value) if value else None

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        return POPOAggregateRecorder(self._id_type())

    def application_recorder(self) -> ApplicationRecorder:
        return POPOApplicationRecorder(self._id_type())

    def process_recorder(self) -> ProcessRecorder:
        return POPOProcessRecorder(self._id_type())

    def dcb_recorder(self) -> InMemoryDCBRecorder:
        from eventsourcing.dcb.popo import InMemoryDCBRecorder  # (imports this module)

        return InMemoryDCBRecorder()


Factory = POPOFactory  # (the name PERSISTENCE_MODULE looks for first)


# ---------------------------------------------------------------------------
# Subscriptions and tracking recorders (materialised views).


class POPOSubscription(ListenNotifySubscription):
    """Woken at once by the recorder's inserts (nothing else writes to it)."""


POPOApplicationRecorder.subscription_class = POPOSubscription


class POPOTrackingRecorder(TrackingRecorder):
    """Tracking positions in memory: the base of an in-memory view.

    A view keeps its rows in attributes of its own; a command changes them and
    records the tracking position holding ``_database_lock``, after
    ``_assert_tracking_uniqueness(tracking)`` (which raises before anything changes)::

        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            ... change the view's rows ...
            self._insert_tracking(tracking)
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._database_lock = threading.RLock()
        self._max_tracking_ids: dict[str, int] = {}
        self._tracked = Beacon()

    def _assert_tracking_uniqueness(self, tracking: Tracking) -> None:
        position = self._max_tracking_ids.get(tracking.application_name)
        conflict = tracking_conflict(tracking, position)
        if conflict is not None:
            raise TrackingConflictError(conflict)

    def insert_tracking(self, tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            self._insert_tracking(tracking)

    def _insert_tracking(self, tracking: Tracking) -> None:
        self._max_tracking_ids[tracking.application_name] = tracking.notification_id
        # (A waiter woken now reads the position under the lock: after this command.)
        self._tracked.signal()

    def max_tracking_id(self, application_name: str) -> int | None:
        with self._database_lock:
            return self._max_tracking_ids.get(application_name)

    def tracking_positions(self) -> dict[str, int]:
        with self._database_lock:
            return dict(self._max_tracking_ids)

    def _tracking_waker(self) -> Waker:
        return BeaconWaker(self._tracked, interval=1.0)


POPOFactory.tracking_recorder_class = POPOTrackingRecorder
