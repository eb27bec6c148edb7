"""Tagged decisions in a DCB store (compatible with the ``eventsourcing.dcb.persistence``
API of eventsourcing 9.5): a :class:`DCBMapper` turns decisions into DCB events and back,
and a :class:`DCBEventStore` reads and conditionally appends them with a recorder,
taking consistency boundaries (selectors) where the recorder takes queries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Generic

from eventsourcing.dcb._common import DCBInfrastructureFactory, DCBListenNotifySubscription
from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBQueryItem,
    DCBReadResponse,
    DCBRecorder,
)
from eventsourcing.dcb.domain import Selector, Tagged, TDecision
from eventsourcing.domain import ProgrammingError
from eventsourcing.utils import EventSourcingError, get_topic

__all__ = [
    "DCBEventStore",
    "DCBEventStoreReadResponse",
    "DCBInfrastructureFactory",
    "DCBListenNotifySubscription",
    "DCBMapper",
    "NotFoundError",
    "selectors_to_query",
]


class DCBMapper(ABC, Generic[TDecision]):
    """Converts tagged decisions to DCB events (type, data, tags) and back."""

    @abstractmethod
    def to_dcb_event(self, event: Tagged[TDecision]) -> DCBEvent:
        """The DCB event that records a tagged decision."""

    @abstractmethod
    def to_domain_event(self, event: DCBEvent) -> Tagged[TDecision]:
        """The tagged decision that a DCB event records."""


class NotFoundError(EventSourcingError):
    """No decision of the enduring object asked for is recorded."""


ConsistencyBoundary = Selector | Sequence[Selector] | None


def selectors_to_query(cb: ConsistencyBoundary) -> DCBQuery:
    """The DCB query of a consistency boundary: one query item per selector, its
    decision classes named by their topics (no selectors: every event)."""
    selectors = [cb] if isinstance(cb, Selector) else list(cb or [])
    items = []
    for selector in selectors:
        if not isinstance(selector, Selector):
            raise ProgrammingError(
                f"a consistency boundary is a Selector or a list of them, not {selector!r}"
            )
        types = [_type_name(t) for t in selector.types]
        items.append(DCBQueryItem(types=types, tags=list(selector.tags)))
    return DCBQuery(items=items)


def _type_name(decision_class: Any) -> str:
    if isinstance(decision_class, str):
        return decision_class  # (a DCB event type already)
    if not isinstance(decision_class, type):
        raise ProgrammingError(f"a selector's types are decision classes, not {decision_class!r}")
    return get_topic(decision_class)


class DCBEventStore(Generic[TDecision]):
    """Reads and appends tagged decisions: a mapper over a DCB recorder."""

    def __init__(self, mapper: DCBMapper[TDecision], recorder: DCBRecorder) -> None:
        self.mapper = mapper
        self.recorder = recorder

    def append(
        self,
        events: Sequence[Tagged[TDecision]],
        cb: ConsistencyBoundary = None,
        after: int | None = None,
    ) -> int:
        """Record ``events`` unless a decision selected by ``cb`` was recorded after
        position ``after`` (an IntegrityError, and nothing recorded). Returns the
        position of the last one recorded (0 when given none)."""
        if len(events) == 0:
            return 0
        condition = None
        if cb is not None or after is not None:
            condition = DCBAppendCondition(fail_if_events_match=selectors_to_query(cb), after=after)
        dcb_events = [self.mapper.to_dcb_event(e) for e in events]
        return self.recorder.append(events=dcb_events, condition=condition)

    def read(
        self,
        cb: ConsistencyBoundary = None,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> DCBEventStoreReadResponse[TDecision]:
        """The tagged decisions that ``cb`` selects (all, without it) recorded after
        position ``after``, in order; the response's ``head`` is the last position
        recorded when it was read."""
        response = self.recorder.read(query=selectors_to_query(cb), after=after, limit=limit)
        return DCBEventStoreReadResponse(response, self.mapper)


class DCBEventStoreReadResponse(Iterator[Tagged[TDecision]]):
    """Tagged decisions read from a DCB recorder, with the recorder's ``head``."""

    def __init__(self, dcb_read_response: DCBReadResponse, mapper: DCBMapper[TDecision]) -> None:
        self._dcb_read_response = dcb_read_response
        self._mapper = mapper

    @property
    def head(self) -> int | None:
        return self._dcb_read_response.head

    def __next__(self) -> Tagged[TDecision]:
        return self._mapper.to_domain_event(next(self._dcb_read_response).event)
