"""What the DCB stores share: checks of arguments, matching, the read response, the
subscription that reads in batches and waits for wake-ups, and the factory base.

(``eventsourcing.dcb.persistence`` presents the factory base and the subscription
under their documented names.)
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBQueryItem,
    DCBReadResponse,
    DCBRecorder,
    DCBSequencedEvent,
    DCBSubscription,
    TDCBRecorder_co,
)
from eventsourcing.persistence import (
    Environment,
    InfrastructureFactory,
    IntegrityError,
    ProgrammingError,
    TopicError,
)

# ---------------------------------------------------------------- argument checks


def checked_events(events: Sequence[DCBEvent]) -> list[DCBEvent]:
    """``events`` as a list, each with a str type, bytes data and a list of str tags;
    ProgrammingError or TypeError naming what is wrong, before anything is recorded.

    Data given as str (a mapper that returns ``json.dumps(...)``, as in the 9.x guide) is
    recorded as its UTF-8 bytes, in a new DCBEvent: the caller's object is not changed."""
    if isinstance(events, (str, bytes)) or not isinstance(events, Iterable):
        raise TypeError(f"DCB append: events must be a sequence of DCBEvent, not {events!r}")
    events = list(events)
    if not events:
        raise ProgrammingError("DCB append: there must be at least one event to append")
    for index, event in enumerate(events):
        type_ = getattr(event, "type", None)
        data = getattr(event, "data", None)
        tags = getattr(event, "tags", None)
        if not isinstance(type_, str) or not type_:
            raise TypeError(f"DCB append: event {index} needs a non-empty str type, not {type_!r}")
        if isinstance(data, str):
            str_tags = checked_strs(tags, f"DCB append: event {index} tags")
            events[index] = DCBEvent(type=type_, data=data.encode("utf-8"), tags=str_tags)
            continue
        if not isinstance(data, bytes):
            raise TypeError(
                f"DCB append: event {index} data must be bytes, not {type(data).__name__}"
            )
        checked_strs(tags, f"DCB append: event {index} tags")
    return events


def checked_strs(values: Any, what: str) -> list[str]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{what} must be a list of str, not {values!r}")
    values = list(values)
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"{what} must be a list of str, found {value!r}")
    return values


def checked_query(query: DCBQuery | None, what: str = "DCB query") -> list[DCBQueryItem]:
    """The items of ``query`` (none if None), their types and tags checked."""
    if query is None:
        return []
    items = getattr(query, "items", None)
    if items is None or isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"{what} must be a DCBQuery with a list of items, not {query!r}")
    items = list(items)
    for index, item in enumerate(items):
        checked_strs(getattr(item, "types", None), f"{what} item {index} types")
        checked_strs(getattr(item, "tags", None), f"{what} item {index} tags")
    return items


def checked_position(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int or None, not {value!r}")
    return value


def checked_limit(limit: Any) -> int | None:
    limit = checked_position(limit, "DCB read limit")
    if limit is not None and limit < 0:
        raise ValueError(f"DCB read limit must not be negative, not {limit}")
    return limit


def checked_condition(condition: DCBAppendCondition | None) -> DCBAppendCondition | None:
    if condition is None:
        return None
    if not hasattr(condition, "fail_if_events_match") or not hasattr(condition, "after"):
        raise TypeError(f"DCB append condition must be a DCBAppendCondition, not {condition!r}")
    checked_query(condition.fail_if_events_match, "DCB append condition query")
    checked_position(condition.after, "DCB append condition after")
    return condition


def checked_read_args(
    query: DCBQuery | None, after: Any, limit: Any
) -> tuple[list[DCBQueryItem], int, int | None]:
    """The arguments of a read, checked (every store's ``read`` takes the same):
    the query's items, the position to read after (0 for None) and the limit."""
    items = checked_query(query)
    start = checked_position(after, "DCB read after") or 0
    return items, start, checked_limit(limit)


def condition_failed(condition: DCBAppendCondition | None) -> IntegrityError:
    """The error of an append refused because an event matching ``condition`` is recorded."""
    return IntegrityError(f"DCB append condition failed: {condition}")


# ---------------------------------------------------------------- matching


def item_matches(item: DCBQueryItem, event_type: str, event_tags: Iterable[str]) -> bool:
    """Whether an event of this type with these tags matches the query item."""
    if item.types and event_type not in item.types:
        return False
    return set(item.tags).issubset(event_tags)


def match_all(items: Sequence[DCBQueryItem]) -> bool:
    """Whether some item (or the lack of any) matches every event."""
    return not items or any(not item.types and not item.tags for item in items)


# ---------------------------------------------------------------- reading


class SimpleDCBReadResponse(DCBReadResponse):
    """A read response over events already read. Without ``head``, the head is the
    position of the last event returned so far."""

    def __init__(self, events: Iterable[DCBSequencedEvent], head: int | None = None) -> None:
        self._events = iter(events)
        self._head_given = head is not None
        self._head = head

    @property
    def head(self) -> int | None:
        return self._head

    def __next__(self) -> DCBSequencedEvent:
        event = next(self._events)
        if not self._head_given:
            self._head = event.position
        return event


def read_response(
    events: list[DCBSequencedEvent], limit: int | None, last_position: int | None
) -> SimpleDCBReadResponse:
    """Without a limit, the head is the store's last position; with one, the last
    position read (so that reading on from it misses nothing)."""
    if limit is None:
        return SimpleDCBReadResponse(events, last_position)
    return SimpleDCBReadResponse(events, events[-1].position if events else None)


# ---------------------------------------------------------------- subscriptions


class DCBListenNotifySubscription(DCBSubscription[TDCBRecorder_co]):
    """Reads matching events in batches; once it has read them all, waits until woken
    (``_has_been_notified`` is set when events are recorded) or ``poll_interval``
    passes, then reads again. Subclasses arrange the wake-ups (``_start_wake_ups``)."""

    batch_size = 500
    # Seconds between reads when no wake-up comes (records made elsewhere).
    poll_interval: float = 1.0

    def __init__(
        self,
        recorder: TDCBRecorder_co,
        query: DCBQuery | None = None,
        after: int | None = None,
    ) -> None:
        checked_query(query, "DCB subscription query")
        checked_position(after, "DCB subscription after")
        super().__init__(recorder=recorder, query=query, after=after)
        self._has_been_notified = threading.Event()
        self._buffer: deque[DCBSequencedEvent] = deque()
        self._thread_error: BaseException | None = None
        # Before the first read: nothing recorded in between is missed.
        self._start_wake_ups()

    def _start_wake_ups(self) -> None:
        """Arrange for ``_has_been_notified`` to be set when events are recorded
        (without it, new events are found by polling)."""

    def stop(self) -> None:
        super().stop()
        self._has_been_notified.set()  # wakes a waiting __next__

    def __next__(self) -> DCBSequencedEvent:
        while not self._buffer:
            self._raise_if_stopped()
            # Cleared before reading: a wake-up for events recorded after the read
            # is then not lost.
            self._has_been_notified.clear()
            events = list(
                self._recorder.read(self._query, after=self._last_position, limit=self.batch_size)
            )
            if events:
                self._buffer.extend(events)
                self._last_position = events[-1].position
            else:
                self._has_been_notified.wait(self.poll_interval)
        self._raise_if_stopped()
        return self._buffer.popleft()

    def next_batch(self, limit: int | None = None) -> list[DCBSequencedEvent]:
        """The next event, waiting for one, and those read with it (at most ``limit``
        in all); ``[]`` once stopped. (A projection takes them in one transaction.)"""
        try:
            batch = [next(self)]
        except StopIteration:
            return []
        while self._buffer and (limit is None or len(batch) < limit):
            batch.append(self._buffer.popleft())
        return batch

    def _raise_if_stopped(self) -> None:
        if self._thread_error is not None:
            raise self._thread_error
        if self._has_been_stopped:
            raise StopIteration


class Listeners:
    """Wake-up events of the subscriptions of one recorder (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: set[threading.Event] = set()

    def add(self, event: threading.Event) -> None:
        with self._lock:
            self._events.add(event)

    def discard(self, event: threading.Event) -> None:
        with self._lock:
            self._events.discard(event)

    def notify(self) -> None:
        with self._lock:
            for event in self._events:
                event.set()


class LocalSubscription(DCBListenNotifySubscription[TDCBRecorder_co]):
    """A subscription woken by its recorder's ``listeners`` (appends in this process)."""

    def _start_wake_ups(self) -> None:
        self._listeners: Listeners = getattr(self._recorder, "listeners")  # noqa: B009
        self._listeners.add(self._has_been_notified)

    def stop(self) -> None:
        self._listeners.discard(self._has_been_notified)
        super().stop()


# ---------------------------------------------------------------- factories


class DCBInfrastructureFactory(InfrastructureFactory):
    """A factory that also builds a DCB recorder (``dcb_recorder()``).

    ``construct()`` returns the factory ``PERSISTENCE_MODULE`` names, as
    InfrastructureFactory does (in memory by default), after checking that it can
    build a DCB recorder: the factories of ``eventsourcing.popo``, ``.sqlite`` and
    ``.postgres`` can, as can those of ``eventsourcing.dcb.popo``, ``.sqlite`` and
    ``.postgres_tt``.
    """

    @abstractmethod
    def dcb_recorder(self) -> DCBRecorder:
        """A new DCB recorder of this factory's store."""

    @classmethod
    def construct(
        cls, env: Mapping[str, str] | None = None, *, application_name: str = ""
    ) -> InfrastructureFactory:
        if env is not None and not isinstance(env, Environment):
            env = Environment(application_name, env)
        factory = InfrastructureFactory.construct(env, application_name=application_name)
        if not has_dcb_recorder(factory):
            raise TopicError(
                f"{type(factory).__name__} (PERSISTENCE_MODULE) cannot build a DCB recorder"
            )
        return factory


def has_dcb_recorder(factory: InfrastructureFactory) -> bool:
    method = getattr(type(factory), "dcb_recorder", None)
    return callable(method) and method is not InfrastructureFactory.dcb_recorder


def dcb_table_name(application_name: str) -> str:
    """The events table of an application's DCB store: ``<name>_dcb_events``
    (lower-cased), or ``dcb_events`` without a name."""
    prefix = application_name.lower()
    return f"{prefix}_dcb_events" if prefix else "dcb_events"


def sequenced(rows: Iterable[tuple[int, str, bytes, list[str]]]) -> Iterator[DCBSequencedEvent]:
    """Events from (position, type, data, tags) rows."""
    for position, type_, data, tags in rows:
        yield DCBSequencedEvent(DCBEvent(type=type_, data=bytes(data), tags=list(tags)), position)
