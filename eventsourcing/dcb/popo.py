"""DCB events in memory: ``InMemoryDCBRecorder`` and its factory.

Events are indexed by tag and by type, so that checking an append condition
costs a look-up per query item (and a look at the events recorded since the
condition's position), whatever the number of events recorded.
"""

from __future__ import annotations

import heapq
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

from eventsourcing.dcb._common import (
    DCBInfrastructureFactory,
    Listeners,
    LocalSubscription,
    SimpleDCBReadResponse,
    checked_condition,
    checked_events,
    checked_limit,
    checked_position,
    checked_query,
    item_matches,
    match_all,
    read_response,
)
from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBQueryItem,
    DCBReadResponse,
    DCBRecorder,
    DCBSequencedEvent,
)
from eventsourcing.persistence import IntegrityError
from eventsourcing.popo import POPOFactory

__all__ = [
    "Factory",
    "InMemoryDCBFactory",
    "InMemoryDCBRecorder",
    "InMemorySubscription",
    "SimpleDCBReadResponse",
]


class InMemoryDCBRecorder(DCBRecorder):
    """Keeps DCB events in memory (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[DCBSequencedEvent] = []  # the event at position p is at p - 1
        self._positions_by_tag: dict[str, list[int]] = {}
        self._positions_by_type: dict[str, list[int]] = {}
        self.listeners = Listeners()

    def read(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> DCBReadResponse:
        items = checked_query(query)
        after = checked_position(after, "DCB read after") or 0
        limit = checked_limit(limit)
        with self._lock:
            positions = self._matching_positions(items, after)
            if limit is not None:
                positions = _first(positions, limit)
            events = [_copy(self._events[position - 1]) for position in positions]
            last = len(self._events) or None
        return read_response(events, limit, last)

    def append(
        self, events: Sequence[DCBEvent], condition: DCBAppendCondition | None = None
    ) -> int:
        new_events = checked_events(events)
        condition = checked_condition(condition)
        with self._lock:
            if condition is not None and self._condition_fails(condition):
                raise IntegrityError(f"DCB append condition failed: {condition}")
            for event in new_events:
                self._record(event)
            position = len(self._events)
        self.listeners.notify()
        return position

    def subscribe(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
    ) -> InMemorySubscription:
        return InMemorySubscription(self, query=query, after=after)

    def _condition_fails(self, condition: DCBAppendCondition) -> bool:
        items = list(condition.fail_if_events_match.items)
        after = condition.after or 0
        return next(iter(self._matching_positions(items, after)), None) is not None

    def _record(self, event: DCBEvent) -> None:
        position = len(self._events) + 1
        tags = list(event.tags)
        self._events.append(DCBSequencedEvent(DCBEvent(event.type, event.data, tags), position))
        self._positions_by_type.setdefault(event.type, []).append(position)
        for tag in set(tags):
            self._positions_by_tag.setdefault(tag, []).append(position)

    def _matching_positions(self, items: Sequence[DCBQueryItem], after: int) -> Iterable[int]:
        """Positions after ``after`` of events matching any of ``items``, ascending."""
        if match_all(items):
            return range(after + 1, len(self._events) + 1)
        per_item = [self._item_positions(item, after) for item in items]
        return _unique(heapq.merge(*per_item)) if len(per_item) > 1 else per_item[0]

    def _item_positions(self, item: DCBQueryItem, after: int) -> Iterator[int]:
        if item.tags:
            # Events with all the tags are among those with the rarest one (after `after`).
            postings = [self._positions_by_tag.get(tag, []) for tag in item.tags]
            starts = [bisect_right(positions, after) for positions in postings]
            rarest = min(range(len(postings)), key=lambda i: len(postings[i]) - starts[i])
            candidates = islice(postings[rarest], starts[rarest], None)
            return (p for p in candidates if self._matches(item, p))
        by_type = [self._positions_by_type.get(t, []) for t in set(item.types)]
        return heapq.merge(*(islice(ps, bisect_right(ps, after), None) for ps in by_type))

    def _matches(self, item: DCBQueryItem, position: int) -> bool:
        event = self._events[position - 1].event
        return item_matches(item, event.type, event.tags)


class InMemorySubscription(LocalSubscription[InMemoryDCBRecorder]):
    """Events of an InMemoryDCBRecorder, woken by its appends."""


class InMemoryDCBFactory(POPOFactory, DCBInfrastructureFactory):
    """The in-memory factory, which builds an InMemoryDCBRecorder (``dcb_recorder()``)."""


Factory = InMemoryDCBFactory  # (the name PERSISTENCE_MODULE looks for first)


def _copy(sequenced: DCBSequencedEvent) -> DCBSequencedEvent:
    event = sequenced.event
    return DCBSequencedEvent(DCBEvent(event.type, event.data, list(event.tags)), sequenced.position)


def _first(positions: Iterable[int], limit: int) -> list[int]:
    result: list[int] = []
    if limit == 0:
        return result
    for position in positions:
        result.append(position)
        if len(result) == limit:
            break
    return result


def _unique(positions: Iterable[int]) -> Iterator[int]:
    previous = 0
    for position in positions:
        if position != previous:
            yield position
            previous = position
