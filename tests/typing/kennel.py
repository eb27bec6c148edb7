"""A typed user program with string ids: tests/test_typing.py runs mypy on it.

Marks as in dog_school.py: ``E: <error code>`` on each line mypy must flag, ``R: <type>``
on each ``reveal_type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import (
    Aggregate,
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    event,
)


class Kennel(BaseAggregate[str]):
    @dataclass(frozen=True)
    class Event(CanMutateAggregate[str]):
        originator_id: str
        originator_version: int
        timestamp: datetime

    @dataclass(frozen=True)
    class Built(Event, CanInitAggregate[str]):
        originator_topic: str
        town: str

    @dataclass(frozen=True)
    class Moved(Event):
        town: str

    @staticmethod
    def create_id(town: str) -> str:
        return f"kennel-{town}"

    @event(Built)
    def __init__(self, town: str) -> None:
        self.town = town

    @event(Moved)
    def move(self, town: str) -> None:
        self.town = town


def domain_side() -> None:
    kennel = Kennel("Leeds")
    reveal_type(kennel)  # noqa: F821  # R: kennel.Kennel
    reveal_type(kennel.id)  # noqa: F821  # R: str
    reveal_type(Aggregate().id)  # noqa: F821  # R: uuid.UUID
    kennel.move("York")
    kennel.move(3)  # E: arg-type
    Kennel(town=1)  # E: arg-type
    now = datetime.now()
    moved = Kennel.Moved(originator_id="k", originator_version=2, timestamp=now, town="York")
    reveal_type(moved.originator_id)  # noqa: F821  # R: str
    uuid = UUID(int=1)
    Kennel.Moved(originator_id=uuid, originator_version=2, timestamp=now, town="x")  # E: arg-type
