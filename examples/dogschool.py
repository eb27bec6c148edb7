"""The dog-school demo: a system of two applications, run by both runners.

DogSchool records dogs and their tricks; Counters follows it and counts each
trick, exactly once. Run: python examples/dogschool.py
"""

from __future__ import annotations

import os
import sys
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFound, Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.system import (
    MultiThreadedRunner,
    ProcessApplication,
    ProcessingEvent,
    Runner,
    SingleThreadedRunner,
    System,
)


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class DogSchool(Application):
    def register_dog(self, name: str) -> UUID:
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id: UUID, trick: str) -> None:
        dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        self.save(dog)

    def get_dog(self, dog_id: UUID) -> dict[str, object]:
        dog = self.repository.get(dog_id)
        return {"name": dog.name, "tricks": tuple(dog.tricks)}


class Counter(Aggregate):
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @classmethod
    def create_id(cls, name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/counters/{name}")

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


class Counters(ProcessApplication):
    @singledispatchmethod
    def policy(self, domain_event: object, processing_event: ProcessingEvent) -> None:
        """Events other than TrickAdded are ignored."""

    @policy.register(Dog.TrickAdded)
    def _(self, domain_event: Dog.TrickAdded, processing_event: ProcessingEvent) -> None:
        try:
            counter = self.repository.get(Counter.create_id(domain_event.trick))
        except AggregateNotFound:
            counter = Counter(domain_event.trick)
        counter.increment()
        processing_event.collect_events(counter)

    def get_count(self, trick: str) -> int:
        try:
            return int(self.repository.get(Counter.create_id(trick)).count)
        except AggregateNotFound:
            return 0


system = System(pipes=[[DogSchool, Counters]])


def run_school(runner: Runner) -> None:
    school = runner.get(DogSchool)
    counters = runner.get(Counters)
    dogs = {name: school.register_dog(name) for name in ("Billy", "Milly", "Scrappy")}
    print(f"  registered {', '.join(dogs)}")
    lessons = [
        ("Billy", "roll over"), ("Milly", "roll over"), ("Scrappy", "roll over"),
        ("Billy", "fetch ball"), ("Milly", "fetch ball"), ("Billy", "play dead"),
    ]  # fmt: skip
    for name, trick in lessons:
        school.add_trick(dogs[name], trick)
        print(f"  {name} learned to {trick}")
    if isinstance(runner, MultiThreadedRunner):
        runner.wait(timeout=10)  # the counters are updated in another thread
    for name, dog_id in dogs.items():
        print(f"  {name}: {', '.join(school.get_dog(dog_id)['tricks'])}")  # type: ignore[arg-type]
    for trick in ("roll over", "fetch ball", "play dead"):
        print(f"  dogs that can {trick}: {counters.get_count(trick)}")


def main() -> int:
    store = os.environ.get("PERSISTENCE_MODULE", "eventsourcing.popo")
    print(f"Dog school demo (store: {store})")
    for runner_cls in (SingleThreadedRunner, MultiThreadedRunner):
        print(f"\n{runner_cls.__name__}:")
        with runner_cls(system) as runner:
            run_school(runner)
    return 0


if __name__ == "__main__":
    # Run the importable module's classes, not copies made in __main__: the events this
    # stores then name topics (examples.dogschool:...) that workers can resolve later
    # (eventsourcing run examples.dogschool:system), on a database the demo wrote.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from examples.dogschool import main as module_main

    sys.exit(module_main())
