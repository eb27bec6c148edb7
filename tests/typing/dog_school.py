"""A typed user program: tests/test_typing.py runs mypy on it.

Each line that mypy must flag ends with a comment ``E: <error code>``; each
``reveal_type`` ends with a comment ``R: <revealed type>``. Every other line must pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, BaseAggregate, Snapshot, event, triggers


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)

    @event
    def rename(self, name: str) -> None:
        self.name = name

    class Fed(Aggregate.Event):
        food: str

    @event(Fed)
    def feed(self, food: str, amount: int = 1) -> None:
        pass

    @triggers("Walked")
    def walk(self, minutes: int) -> None:
        pass


class Cat(BaseAggregate[UUID]):
    @event("Adopted")
    def __init__(self, name: str) -> None:
        self.name = name


@dataclass
class Bird(Aggregate):
    name: str

    @event("Sang")
    def sing(self, song: str) -> None:
        pass


def domain_side() -> None:
    dog = Dog("Fido")
    reveal_type(dog)  # noqa: F821  # R: dog_school.Dog
    reveal_type(dog.add_trick)  # noqa: F821  # R: def (trick: str)
    reveal_type(dog.feed)  # noqa: F821  # R: def (food: str, amount: int =)
    id_: UUID = dog.id
    version: int = dog.version
    created_on: datetime = dog.created_on
    modified_on: datetime = dog.modified_on
    print(id_, version, created_on, modified_on, dog.collect_events())
    dog.add_trick("roll over")
    dog.add_trick(1)  # E: arg-type
    dog.add_trick()  # E: call-arg
    dog.rename("Rex")
    dog.rename(name=2)  # E: arg-type
    dog.feed("bone")
    dog.feed("bone", amount="lots")  # E: arg-type
    dog.walk(10)
    dog.walk("far")  # E: arg-type
    Dog(1)  # E: arg-type
    Dog()  # E: call-arg
    dog.version = 3
    dog.id = dog.id  # E: misc
    reveal_type(Snapshot.take(dog))  # noqa: F821  # R: eventsourcing.domain.Snapshot
    reveal_type(Cat("Tom").id)  # noqa: F821  # R: uuid.UUID
    Cat(name=1)  # E: arg-type
    reveal_type(Bird("Tweety"))  # noqa: F821  # R: dog_school.Bird
    Bird("Tweety").sing(1)  # E: arg-type
    Bird(2)  # E: arg-type


def application_side() -> None:
    """Typed use of the application layer (Application[UUID], repository.get): the
    application's checks are added here."""
