"""Aggregates and their events: the behaviours the seed relies on."""

import pickle
from dataclasses import FrozenInstanceError
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest

from eventsourcing.domain import (
    Aggregate,
    OriginatorIDError,
    OriginatorVersionError,
    ProgrammingError,
    event,
)
from eventsourcing.utils import get_topic, resolve_topic


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name):
        self.name = name
        self.tricks = []

    @event("TrickAdded")
    def add_trick(self, trick):
        self.tricks.append(trick)

    @event
    def name_updated(self, name):
        self.name = name

    @event
    def set_age(self, age=3):
        self.age = age


class Counter(Aggregate):
    def __init__(self, name):
        self.name = name
        self.count = 0

    @classmethod
    def create_id(cls, name):
        return uuid5(NAMESPACE_URL, f"/counters/{name}")

    @event("Incremented")
    def increment(self):
        self.count += 1


def test_named_created_event_and_method_events() -> None:
    dog = Dog("Fido")
    dog.add_trick("roll over")
    events = dog.collect_events()
    assert [type(e) for e in events] == [Dog.Registered, Dog.TrickAdded]
    assert issubclass(Dog.Registered, Aggregate.Created)
    assert issubclass(Dog.TrickAdded, Aggregate.Event)
    assert events[0].name == "Fido"
    assert events[1].trick == "roll over"
    assert [e.originator_version for e in events] == [1, 2]
    assert all(e.originator_id == dog.id for e in events)
    assert dog.collect_events() == []  # collected events are forgotten


def test_unnamed_event_is_named_after_the_method() -> None:
    dog = Dog("Fido")
    dog.name_updated("Rex")
    dog.set_age()
    events = dog.collect_events()
    assert type(events[1]) is Dog.NameUpdated
    assert events[1].name == "Rex"
    assert type(events[2]).__name__ == "SetAge"
    assert events[2].age == 3  # default argument values are recorded too
    assert dog.name == "Rex" and dog.age == 3


def test_plain_init_gets_an_automatic_created_event() -> None:
    counter = Counter("fetch")
    counter.increment()
    events = counter.collect_events()
    assert type(events[0]) is Counter.Created
    assert events[0].name == "fetch"
    assert type(events[1]) is Counter.Incremented
    assert counter.count == 1


def test_create_id_takes_init_arguments_by_name() -> None:
    assert Counter("fetch").id == uuid5(NAMESPACE_URL, "/counters/fetch")
    assert isinstance(Dog("Fido").id, UUID)
    assert Dog("Fido").id != Dog("Fido").id


def test_explicit_id_keyword() -> None:
    given = uuid5(NAMESPACE_URL, "/dogs/x")
    assert Dog("Fido", id=given).id == given


def test_id_version_and_timestamps() -> None:
    dog = Dog("Fido")
    assert dog.version == 1
    assert isinstance(dog.created_on, datetime) and dog.created_on.tzinfo is not None
    assert dog.modified_on == dog.created_on
    dog.add_trick("sit")
    assert dog.version == 2
    assert dog.modified_on > dog.created_on
    assert dog.created_on == dog.pending_events[0].timestamp


def test_replaying_events_rebuilds_the_same_state() -> None:
    dog = Dog("Fido")
    dog.add_trick("sit")
    dog.name_updated("Rex")
    copy = None
    for domain_event in dog.collect_events():
        copy = domain_event.mutate(copy)
    assert copy == dog
    assert copy.tricks == ["sit"] and copy.name == "Rex" and copy.version == 3


def test_events_are_immutable_and_picklable() -> None:
    dog = Dog("Fido")
    dog.add_trick("sit")
    trick_added = dog.pending_events[1]
    with pytest.raises(FrozenInstanceError):
        trick_added.trick = "beg"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(trick_added)) == trick_added


def test_trigger_event_with_an_event_class() -> None:
    dog = Dog("Fido")
    dog.trigger_event(Dog.TrickAdded, trick="beg")
    assert dog.tricks == ["beg"]
    assert dog.version == 2


def test_wrong_arguments_raise_type_error_naming_the_method() -> None:
    dog = Dog("Fido")
    with pytest.raises(TypeError, match=r"Dog\.add_trick\(\).*trick"):
        dog.add_trick()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Dog\.add_trick\(\)"):
        dog.add_trick("a", "b")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Dog\.__init__\(\).*name"):
        Dog()  # type: ignore[call-arg]
    assert dog.version == 1 and len(dog.pending_events) == 1  # nothing happened


def test_events_out_of_sequence_are_refused() -> None:
    dog = Dog("Fido")
    dog.add_trick("sit")
    created, trick = dog.collect_events()
    with pytest.raises(OriginatorVersionError):
        trick.mutate(None)
    fresh = created.mutate(None)
    fresh.add_trick("x")  # now at version 2
    with pytest.raises(OriginatorVersionError, match="version 2"):
        trick.mutate(fresh)
    other = Dog("Other")
    with pytest.raises(OriginatorIDError):
        trick.mutate(other)


def test_misused_decorator_is_a_programming_error() -> None:
    with pytest.raises(ProgrammingError):
        event(42)
    with pytest.raises(ProgrammingError, match="\\*args"):

        class Bad(Aggregate):
            @event("Did")
            def do(self, *args):
                pass


def test_topics_resolve_to_classes() -> None:
    assert resolve_topic(get_topic(Dog)) is Dog
    assert resolve_topic(get_topic(Dog.TrickAdded)) is Dog.TrickAdded
    assert get_topic(Dog.TrickAdded).endswith(":Dog.TrickAdded")


def test_topics_follow_a_class_redefined_in_main() -> None:
    namespace = {"__name__": "__main__"}
    source = (
        "from eventsourcing.domain import Aggregate, event\n"
        "class Cat(Aggregate):\n"
        "    @event('Meowed')\n"
        "    def meow(self, n):\n"
        "        self.n = n\n"
    )
    exec(source, namespace)
    first = namespace["Cat"]
    exec(source, namespace)
    second = namespace["Cat"]
    assert first is not second
    assert resolve_topic("__main__:Cat") is second
    assert resolve_topic("__main__:Cat.Meowed") is second.Meowed


def test_snapshot_of_an_older_class_version_without_upcaster_names_the_method() -> None:
    from eventsourcing.domain import Snapshot

    class Kennel(Aggregate):
        def __init__(self, size):
            self.size = size

    snapshot = Snapshot.take(Kennel(3))
    Kennel.class_version = 2  # bumped, but no upcast_v1_v2 written
    with pytest.raises(ProgrammingError, match=r"Kennel.*upcast_v1_v2"):
        snapshot.mutate(None)
