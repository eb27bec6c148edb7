"""Protocols: what the library needs of events and aggregates that are not its own.

Code that receives a user's object uses only these public attributes. The names are
those of the documented 9.x API; ``eventsourcing.domain`` exports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable
from uuid import UUID

TAggregateID = TypeVar("TAggregateID", bound=UUID | str)
TAggregateID_co = TypeVar("TAggregateID_co", bound=UUID | str, covariant=True)


@runtime_checkable
class DomainEventProtocol(Protocol[TAggregateID_co]):
    """Any event: an originator's id and the version it moved that originator to."""

    @property
    def originator_id(self) -> TAggregateID_co: ...

    @property
    def originator_version(self) -> int: ...


TDomainEvent = TypeVar("TDomainEvent", bound=DomainEventProtocol[Any])
SDomainEvent = TypeVar("SDomainEvent", bound=DomainEventProtocol[Any])


class MutableAggregateProtocol(Protocol[TAggregateID_co]):
    """An aggregate whose version is changed in place as events are applied."""

    @property
    def id(self) -> TAggregateID_co: ...

    @property
    def version(self) -> int: ...

    @version.setter
    def version(self, value: int) -> None: ...


class ImmutableAggregateProtocol(Protocol[TAggregateID_co]):
    """An aggregate replaced by a new one as each event is applied."""

    @property
    def id(self) -> TAggregateID_co: ...

    @property
    def version(self) -> int: ...


MutableOrImmutableAggregate = (
    ImmutableAggregateProtocol[TAggregateID] | MutableAggregateProtocol[TAggregateID]
)
TMutableOrImmutableAggregate = TypeVar(
    "TMutableOrImmutableAggregate", bound=MutableOrImmutableAggregate[Any]
)


@runtime_checkable
class CollectEventsProtocol(Protocol):
    """An aggregate that hands over the events it has triggered since it was saved."""

    def collect_events(self) -> Sequence[DomainEventProtocol[Any]]: ...


@runtime_checkable
class CanMutateProtocol(DomainEventProtocol[Any], Protocol[TMutableOrImmutableAggregate]):
    """An event that evolves an aggregate: the same one changed, or a new one."""

    def mutate(
        self, aggregate: TMutableOrImmutableAggregate | None
    ) -> TMutableOrImmutableAggregate | None: ...


@runtime_checkable
class SnapshotProtocol(DomainEventProtocol[TAggregateID_co], Protocol):
    """A snapshot: an event holding the whole state of an aggregate."""

    @property
    def state(self) -> Any: ...

    @classmethod
    def take(cls, aggregate: Any) -> Any: ...
