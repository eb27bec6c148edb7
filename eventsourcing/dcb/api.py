"""The DCB recorder interface (compatible with the eventsourcing 9.5 API).

An event has a type, bytes of data and a list of tags. A query is a list of
items; an event matches an item if its type is one of the item's types (or the
item has no types) and it has every one of the item's tags. An event matches a
query if the query has no items or the event matches one of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from eventsourcing.persistence import ProgrammingError

__all__ = [
    "DCBAppendCondition",
    "DCBEvent",
    "DCBQuery",
    "DCBQueryItem",
    "DCBReadResponse",
    "DCBRecorder",
    "DCBSequencedEvent",
    "DCBSubscription",
    "TDCBRecorder_co",
]


@dataclass
class DCBQueryItem:
    """Matches events of one of ``types`` (any type if empty) that have all ``tags``."""

    types: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


@dataclass
class DCBQuery:
    """Matches events that match any of ``items`` (every event if there are none)."""

    items: list[DCBQueryItem] = field(default_factory=list)


@dataclass
class DCBAppendCondition:
    """Refuse an append if an event after position ``after`` (or any event, if
    ``after`` is None) matches ``fail_if_events_match``."""

    fail_if_events_match: DCBQuery = field(default_factory=DCBQuery)
    after: int | None = None


@dataclass
class DCBEvent:
    type: str
    data: bytes
    tags: list[str] = field(default_factory=list)


@dataclass
class DCBSequencedEvent:
    """A recorded event and its position (1, 2, 3... in the order of recording)."""

    event: DCBEvent
    position: int


class DCBReadResponse(Iterator[DCBSequencedEvent], ABC):
    """The events a read found, in order of position, and ``head``: the last position
    in the store when read without a limit, else the last position returned."""

    @property
    @abstractmethod
    def head(self) -> int | None:
        """The position described above (None if there is none)."""

    @abstractmethod
    def __next__(self) -> DCBSequencedEvent:
        """The next event found."""


class DCBRecorder(ABC):
    """Records DCB events; appends are conditional on a query over recorded events."""

    @abstractmethod
    def read(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> DCBReadResponse:
        """The events that match ``query`` with positions after ``after``, at most
        ``limit`` of them, in order of position."""

    @abstractmethod
    def append(
        self, events: Sequence[DCBEvent], condition: DCBAppendCondition | None = None
    ) -> int:
        """Record ``events`` and return the position of the last one, unless an event
        matching ``condition`` is recorded: then raise IntegrityError and record none."""

    @abstractmethod
    def subscribe(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
    ) -> DCBSubscription[Any]:
        """An iterator over the events that ``read`` would return, which then waits
        for new ones (until stopped)."""


TDCBRecorder_co = TypeVar("TDCBRecorder_co", bound=DCBRecorder, covariant=True)


class DCBSubscription(Iterator[DCBSequencedEvent], Generic[TDCBRecorder_co]):
    """Iterates over the events of a recorder that match a query, waiting for new
    ones when it has reached the last; a context manager that stops it on exit."""

    def __init__(
        self,
        recorder: TDCBRecorder_co,
        query: DCBQuery | None = None,
        after: int | None = None,
    ) -> None:
        self._recorder = recorder
        self._query = query
        self._has_been_entered = False
        self._has_been_stopped = False
        self._last_position: int = after or 0

    def __enter__(self: _TSubscription) -> _TSubscription:
        if self._has_been_entered:
            raise ProgrammingError("Already entered subscription context manager")
        self._has_been_entered = True
        return self

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        if not self._has_been_entered:
            raise ProgrammingError("Not already entered subscription context manager")
        self.stop()

    def stop(self) -> None:
        """Stop the subscription: iteration ends (a waiting ``next`` returns)."""
        self._has_been_stopped = True

    def __iter__(self: _TSubscription) -> _TSubscription:
        return self

    @abstractmethod
    def __next__(self) -> DCBSequencedEvent:
        """The next event, waiting for one if needed; StopIteration once stopped."""


_TSubscription = TypeVar("_TSubscription", bound=DCBSubscription[Any])
