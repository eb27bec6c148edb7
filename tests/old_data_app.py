"""A small system written against the documented 9.x API, run by tests/test_old_data.py
under the reference library and under ours, one after the other, on one database.

    python old_data_app.py STEP

STEP is ``write`` (make the first data), ``extend`` or ``check``: each reads
everything there is, prints it as one JSON line, then adds a little (``write``
and ``extend``: a dog, tricks and a snapshot; ``check``: one trick). The store comes
from the environment (PERSISTENCE_MODULE, SQLITE_DBNAME or POSTGRES_*).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import eventsourcing
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.system import ProcessApplication, SingleThreadedRunner, System

DOGS = ["Fido", "Buster", "Rex", "Lassie"]


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @classmethod
    def create_id(cls, name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/dogs/{name}")

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class DogSchool(Application):
    is_snapshotting_enabled = True

    def register_dog(self, name: str) -> None:
        self.save(Dog(name))

    def add_trick(self, name: str, trick: str) -> None:
        dog = self.repository.get(Dog.create_id(name))
        dog.add_trick(trick)
        self.save(dog)


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
    def policy(self, domain_event: Any, processing_event: Any) -> None:
        if isinstance(domain_event, Dog.TrickAdded):
            try:
                counter = self.repository.get(Counter.create_id(domain_event.trick))
            except AggregateNotFoundError:
                counter = Counter(domain_event.trick)
            counter.increment()
            processing_event.collect_events(counter)

    def count(self, trick: str) -> int:
        try:
            return int(self.repository.get(Counter.create_id(trick)).count)
        except AggregateNotFoundError:
            return 0


def as_uuid_text(originator_id: Any) -> str:
    # (9.4 gives notifications' ids as the text the table keeps: a UUID's hex.)
    return str(UUID(str(originator_id)))


def read_log(school: DogSchool) -> list[Any]:
    notifications, start = [], 1
    while page := school.notification_log.select(start=start, limit=10):
        notifications += page
        start = page[-1].id + 1
    return notifications


def read_everything(school: DogSchool, counters: Counters) -> dict[str, Any]:
    dogs = {}
    for name in DOGS:
        dog_id = Dog.create_id(name)
        try:
            dog = school.repository.get(dog_id)
        except AggregateNotFoundError:
            continue
        snapshots = [s.originator_version for s in school.snapshots.get(dog_id)]  # type: ignore[union-attr]
        dogs[name] = {"version": dog.version, "tricks": dog.tricks, "snapshots": snapshots}
    log = [
        [n.id, n.topic.split(":")[-1], as_uuid_text(n.originator_id), n.originator_version]
        for n in read_log(school)
    ]
    tricks = sorted({t for dog in dogs.values() for t in dog["tricks"]})
    return {
        "dogs": dogs,
        "log": log,
        "counts": {trick: counters.count(trick) for trick in tricks},
        "tracking": counters.recorder.max_tracking_id("DogSchool"),  # type: ignore[attr-defined]
    }


def add_some(school: DogSchool, step: str) -> None:
    if step == "write":
        for name in DOGS[:2]:
            school.register_dog(name)
        for trick in ["sit", "roll", "sit"]:
            school.add_trick("Fido", trick)
        school.take_snapshot(Dog.create_id("Fido"))
        school.add_trick("Fido", "beg")
        school.add_trick("Buster", "sit")
    elif step == "extend":
        school.register_dog("Rex")
        school.add_trick("Rex", "sit")
        school.add_trick("Fido", "roll")
        school.take_snapshot(Dog.create_id("Fido"))
        school.add_trick("Buster", "fetch")
    else:
        school.add_trick("Rex", "roll")


def main(step: str) -> None:
    runner = SingleThreadedRunner(System(pipes=[[DogSchool, Counters]]))
    runner.start()
    try:
        school, counters = runner.get(DogSchool), runner.get(Counters)
        before = read_everything(school, counters)
        add_some(school, step)
        after = read_everything(school, counters)
    finally:
        runner.stop()
    library = str(Path(eventsourcing.__file__).resolve().parent)
    print(json.dumps({"before": before, "after": after, "library": library}))


if __name__ == "__main__":
    main(sys.argv[1])
