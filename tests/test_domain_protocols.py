"""Aggregates and events as protocols: the domain layer works with objects not of ours.

Also the documented details of applying events: the created event's fields given to
``__init__`` by name, a base ``Event.apply()`` after an ``@event`` method's body, an
``@event`` method taking ``timestamp``, event classes decorated ``@dataclass(frozen=True)``,
and the documented names of the domain module.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import sys
import types
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_origin
from uuid import UUID, uuid4

import pytest

from eventsourcing import domain
from eventsourcing.domain import (
    Aggregate,
    AggregateCreated,
    AggregateEvent,
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
    DomainEvent,
    DomainEventProtocol,
    OriginatorIDError,
    OriginatorVersionError,
    Snapshot,
    datetime_now_with_tzinfo,
    event,
)
from eventsourcing.utils import get_topic, resolve_topic

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def replay(events: list[Any]) -> Any:
    aggregate = None
    for e in events:
        aggregate = e.mutate(aggregate)
    return aggregate


# -- a plain class ------------------------------------------------------------------


class Account:
    """A plain aggregate: public attributes only, an __init__ of its own."""

    def __init__(self, id: UUID, version: int, created_on: datetime) -> None:
        self.id = id
        self.version = version
        self.created_on = created_on
        self.balance = 0
        # Look-alikes of the library's private attributes: left alone.
        self._id = "not the id"
        self._version = -7
        self._pending_events = "not a list"


class Opened(AggregateCreated):
    owner: str

    def apply(self, account: Account) -> None:
        account.owner = self.owner  # type: ignore[attr-defined]
        # The attributes __init__ did not set are there before apply() runs.
        account.opened_at = account.modified_on  # type: ignore[attr-defined]


class Deposited(AggregateEvent):
    amount: int

    def apply(self, account: Account) -> None:
        account.balance += self.amount


def open_account(owner: str = "Ada") -> tuple[Account, list[Any]]:
    account_id = uuid4()
    opened = Opened(
        originator_id=account_id,
        originator_version=1,
        timestamp=at(0),
        originator_topic=get_topic(Account),
        owner=owner,
    )
    deposited = Deposited(originator_id=account_id, originator_version=2, timestamp=at(1), amount=5)
    return replay([opened, deposited]), [opened, deposited]


def test_a_plain_class_is_created_and_changed_through_its_public_attributes() -> None:
    account, events = open_account()
    assert type(account) is Account
    assert account.id == events[0].originator_id and account.owner == "Ada"  # type: ignore[attr-defined]
    assert (account.version, account.created_on, account.balance) == (2, at(0), 5)
    assert account.modified_on == at(1)  # type: ignore[attr-defined]  # set on the object
    assert account.opened_at == at(0)  # type: ignore[attr-defined]
    assert (account._id, account._version, account._pending_events) == (
        "not the id",
        -7,
        "not a list",
    )


def test_a_plain_class_refuses_events_of_another_originator_or_version() -> None:
    account, _ = open_account()
    late = Deposited(originator_id=account.id, originator_version=4, timestamp=at(2), amount=1)
    with pytest.raises(OriginatorVersionError, match="at version 4 cannot be applied"):
        late.mutate(account)
    other = Deposited(originator_id=uuid4(), originator_version=3, timestamp=at(2), amount=1)
    with pytest.raises(OriginatorIDError, match="cannot be applied to aggregate"):
        other.mutate(account)
    with pytest.raises(OriginatorVersionError, match="before the aggregate is created"):
        late.mutate(None)
    assert (account.version, account.balance) == (2, 5)


def test_a_plain_class_round_trips_through_a_snapshot() -> None:
    account, _ = open_account()
    snapshot = Snapshot.take(account)
    assert (snapshot.originator_id, snapshot.originator_version) == (account.id, 2)
    assert snapshot.state["balance"] == 5 and snapshot.state["id"] == account.id
    copy = snapshot.mutate(None)
    assert type(copy) is Account and vars(copy) == vars(account)
    account.balance = 100
    assert copy.balance == 5 and snapshot.state["balance"] == 5


# -- a class with __slots__ ------------------------------------------------------------


class Meter:
    __slots__ = ("id", "version", "created_on", "modified_on", "reading")

    def __init__(self, id: UUID, version: int, created_on: datetime, modified_on: datetime):
        self.id = id
        self.version = version
        self.created_on = created_on
        self.modified_on = modified_on
        self.reading = 0


class Installed(AggregateCreated):
    pass


class Read(AggregateEvent):
    reading: int

    def apply(self, meter: Meter) -> None:
        meter.reading = self.reading


def test_a_class_with_slots_is_created_changed_and_snapshotted() -> None:
    meter_id = uuid4()
    meter = replay(
        [
            Installed(
                originator_id=meter_id,
                originator_version=1,
                timestamp=at(0),
                originator_topic=get_topic(Meter),
            ),
            Read(originator_id=meter_id, originator_version=2, timestamp=at(3), reading=42),
        ]
    )
    assert type(meter) is Meter and not hasattr(meter, "__dict__")
    assert (meter.id, meter.version, meter.created_on, meter.modified_on, meter.reading) == (
        meter_id,
        2,
        at(0),
        at(3),
        42,
    )
    snapshot = Snapshot.take(meter)
    assert snapshot.state == {
        "id": meter_id,
        "version": 2,
        "created_on": at(0),
        "modified_on": at(3),
        "reading": 42,
    }
    copy = snapshot.mutate(None)
    assert type(copy) is Meter
    assert [getattr(copy, n) for n in Meter.__slots__] == [
        getattr(meter, n) for n in Meter.__slots__
    ]


# -- an immutable frozen dataclass ---------------------------------------------------


@dataclass(frozen=True)
class Tally:
    id: UUID
    version: int
    created_on: datetime
    modified_on: datetime
    count: int = 0


class TallyStarted(AggregateCreated):
    pass


class Counted(AggregateEvent):
    """The documented immutable style: mutate() returns a new aggregate."""

    by: int

    def mutate(self, tally: Tally | None) -> Tally:
        assert tally is not None and tally.version + 1 == self.originator_version
        return dataclasses.replace(
            tally,
            count=tally.count + self.by,
            version=self.originator_version,
            modified_on=self.timestamp,
        )


class Doubled(AggregateEvent):
    """Default mutate(): apply() returns the successor, the version is set on a copy."""

    def apply(self, tally: Tally) -> Tally:
        return dataclasses.replace(tally, count=tally.count * 2)


class Checked(AggregateEvent):
    """Default mutate() and apply(): only the version and the time move on."""


def start_tally() -> Tally:
    return TallyStarted(
        originator_id=uuid4(),
        originator_version=1,
        timestamp=at(0),
        originator_topic=get_topic(Tally),
    ).mutate(None)


def test_an_immutable_aggregate_is_replaced_not_changed() -> None:
    tally = start_tally()
    assert tally == Tally(tally.id, 1, at(0), at(0), 0)
    counted = Counted(originator_id=tally.id, originator_version=2, timestamp=at(1), by=3)
    after_count = counted.mutate(tally)
    doubled = Doubled(originator_id=tally.id, originator_version=3, timestamp=at(2))
    after_double = doubled.mutate(after_count)
    checked = Checked(originator_id=tally.id, originator_version=4, timestamp=at(3))
    after_check = checked.mutate(after_double)
    assert after_check == Tally(tally.id, 4, at(0), at(3), 6)
    assert (tally.version, tally.count, after_count.count, after_double.version) == (1, 0, 3, 3)


def test_an_immutable_aggregate_round_trips_through_a_snapshot() -> None:
    tally = Counted(
        originator_id=(t := start_tally()).id, originator_version=2, timestamp=at(1), by=7
    ).mutate(t)
    copy = Snapshot.take(tally).mutate(None)
    assert copy == tally and type(copy) is Tally
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.count = 1  # type: ignore[misc]


# -- pydantic models -----------------------------------------------------------------


def test_pydantic_aggregates_mutable_and_frozen() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Note(pydantic.BaseModel):
        id: UUID
        version: int
        created_on: datetime
        modified_on: datetime
        text: str = ""

    class FrozenNote(Note):
        model_config = pydantic.ConfigDict(frozen=True)

    class Written(AggregateCreated):
        text: str

    class Edited(AggregateEvent):
        text: str

        def apply(self, note: Any) -> Any:
            if note.model_config.get("frozen"):
                return note.model_copy(update={"text": self.text})
            note.text = self.text
            return None

    for cls in (Note, FrozenNote):
        note_id = uuid4()
        events = [
            Written(
                originator_id=note_id,
                originator_version=1,
                timestamp=at(0),
                originator_topic=get_topic(cls),
                text="draft",
            ),
            Edited(originator_id=note_id, originator_version=2, timestamp=at(5), text="final"),
        ]
        note = replay(events)
        assert note == cls(id=note_id, version=2, created_on=at(0), modified_on=at(5), text="final")
        snapshot = Snapshot.take(note)
        assert snapshot.state == note.model_dump()
        assert snapshot.mutate(None) == note


def test_pydantic_events_are_domain_events_by_protocol() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Happened(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(frozen=True)
        originator_id: UUID
        originator_version: int

    assert isinstance(Happened(originator_id=uuid4(), originator_version=1), DomainEventProtocol)
    assert not isinstance(object(), DomainEventProtocol)


# -- our own Aggregate: created events and __init__ ------------------------------------


def test_created_event_gives_init_only_the_fields_it_takes_then_applies() -> None:
    calls: list[str] = []

    class Shop(Aggregate):
        class Opened(Aggregate.Created):
            name: str
            opening_hours: str

            def apply(self, shop: Any) -> None:
                calls.append("apply")
                shop.hours = self.opening_hours

        def __init__(self, name: str) -> None:
            calls.append("init")
            self.name = name

    shop = Shop._create(Shop.Opened, name="corner", opening_hours="9-5")
    assert (shop.name, shop.hours, calls) == ("corner", "9-5", ["init", "apply"])
    copy = replay(shop.collect_events())
    assert (copy.name, copy.hours, copy.version) == ("corner", "9-5", 1)


def test_created_event_gives_an_init_with_kwargs_all_its_fields() -> None:
    class Box(Aggregate):
        class Packed(Aggregate.Created):
            size: int
            colour: str

        def __init__(self, **fields: Any) -> None:
            self.fields = fields

    box = Box._create(Box.Packed, size=3, colour="red")
    assert box.fields == {"size": 3, "colour": "red"}


# -- a base Event class with its own apply() -----------------------------------------------


class Diary(Aggregate):
    class Event(Aggregate.Event):
        def apply(self, diary: Any) -> None:
            diary.log.append(f"{type(self).__name__} applied at {self.originator_version}")

    @event("Started")
    def __init__(self) -> None:
        self.log = ["init"]

    @event("Written")
    def write(self, line: str) -> None:
        self.log.append(line)


def test_a_base_event_apply_runs_after_the_event_method_body() -> None:
    diary = Diary()
    diary.write("dear diary")
    expected = ["init", "Started applied at 1", "dear diary", "Written applied at 2"]
    assert diary.log == expected
    assert replay(diary.collect_events()).log == expected


def test_an_explicit_event_class_with_apply_runs_after_the_method_body() -> None:
    class Ledger(Aggregate):
        def __init__(self) -> None:
            self.lines: list[str] = []

        class Posted(Aggregate.Event):
            line: str

            def apply(self, ledger: Any) -> None:
                ledger.lines.append(f"posted {self.line}")

        @event(Posted)
        def post(self, line: str) -> None:
            self.lines.append(line)

    ledger = Ledger()
    ledger.post("rent")
    assert ledger.lines == ["rent", "posted rent"]
    assert replay(ledger.collect_events()).lines == ledger.lines


def test_one_event_class_for_two_event_methods_is_a_programming_error() -> None:
    with pytest.raises(domain.ProgrammingError, match="already applied by another @event"):

        class Twice(Aggregate):
            class Done(Aggregate.Event):
                pass

            @event(Done)
            def one(self) -> None:
                pass

            @event(Done)
            def two(self) -> None:
                pass


# -- an @event method taking a timestamp --------------------------------------------------


class Clock(Aggregate):
    @event("Set")
    def __init__(self, timestamp: datetime | None = None) -> None:
        self.started = timestamp
        self.ticks: list[Any] = []

    @event("Ticked")
    def tick(self, timestamp: datetime | None = None) -> None:
        self.ticks.append(timestamp)


def test_an_event_method_may_take_the_events_timestamp() -> None:
    clock = Clock(timestamp=at(0))
    clock.tick(at(1))
    clock.tick()  # no timestamp: the event's own, made now
    events = clock.collect_events()
    assert [e.timestamp for e in events[:2]] == [at(0), at(1)]
    assert clock.started == at(0) and clock.created_on == at(0)
    assert clock.ticks == [at(1), events[2].timestamp] and events[2].timestamp > at(1)
    assert clock.modified_on == events[2].timestamp
    copy = replay(events)
    assert (copy.started, copy.ticks, copy.modified_on) == (at(0), clock.ticks, clock.modified_on)


# -- event classes decorated @dataclass(frozen=True) explicitly ---------------------------


def test_event_classes_may_be_decorated_as_frozen_dataclasses() -> None:
    class Parcel(Aggregate):
        def __init__(self) -> None:
            self.stops: list[str] = []

        @dataclass(frozen=True)
        class Sent(Aggregate.Event):
            to: str

            def apply(self, parcel: Any) -> None:
                parcel.stops.append(self.to)

        def send(self, to: str) -> None:
            self.trigger_event(self.Sent, to=to)

    @dataclass(frozen=True)
    class Pinged(DomainEvent):
        host: str

    parcel = Parcel()
    parcel.send("Oslo")
    events = parcel.collect_events()
    sent = events[-1]
    assert parcel.stops == ["Oslo"] and replay(events).stops == ["Oslo"]
    pinged = Pinged(originator_id=uuid4(), originator_version=1, timestamp=at(0), host="a")
    for e, name in ((sent, "to"), (sent, "originator_version"), (pinged, "host"), (pinged, "new")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(e, name, "changed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        del pinged.host


def test_an_event_class_with_a_mixin_that_sets_attributes_stays_frozen() -> None:
    class Settable:
        def __setattr__(self, name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

    class Mixed(Settable, DomainEvent):
        x: int

    mixed = Mixed(originator_id=uuid4(), originator_version=1, timestamp=at(0), x=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mixed.x = 2


# -- every event class of an aggregate is one of its Events ------------------------------


class Animal(Aggregate):
    class Event(Aggregate.Event):
        def apply(self, animal: Any) -> None:
            animal.seen.append(type(self).__name__)

    def __init__(self) -> None:
        self.seen: list[str] = []


class Pet(Animal):
    class Adopted(Aggregate.Event):
        by: str

    class Fostered(Adopted):
        pass

    class Barked(Animal.Event):
        pass

    @event(Adopted)
    def adopt(self, by: str) -> None:
        self.seen.append(f"adopted by {by}")

    def bark(self) -> None:
        self.trigger_event(self.Barked)

    def foster(self, by: str) -> None:
        self.trigger_event(self.Fostered, by=by)


def test_event_classes_written_in_an_aggregate_become_its_events() -> None:
    pet = Pet()
    pet.adopt("Ann")
    pet.bark()
    pet.foster("Bo")
    events = pet.collect_events()
    for e in events:
        assert isinstance(e, Pet.Event) and isinstance(e, Animal.Event), type(e).__mro__
    assert issubclass(Pet.Fostered, Pet.Adopted)
    expected = ["Created", "adopted by Ann", "Adopted", "Barked", "Fostered"]
    assert pet.seen == expected and replay(events).seen == expected

    class Later(Pet.Adopted):  # made after the method's applier: applies only itself
        pass

    pet.trigger_event(Later, by="Cy")
    assert pet.seen[-1:] == ["Later"] and "adopted by Cy" not in pet.seen
    restored = pickle.loads(pickle.dumps(events[1]))
    assert type(restored) is Pet.Adopted and restored == events[1]
    assert resolve_topic(get_topic(Pet.Adopted)) is Pet.Adopted


def test_the_documented_names_and_class_hierarchy() -> None:
    class Dog(BaseAggregate[UUID]):
        @event("Registered")
        def __init__(self, name: str) -> None:
            self.name = name

        @event("TrickAdded")
        def add_trick(self, trick: str) -> None:
            pass

    dog = Dog("Fido")
    dog.add_trick("sit")
    created, added = dog.collect_events()
    for e in (created, added):
        for cls in (DomainEvent, AggregateEvent, CanMutateAggregate, Aggregate.Event, Dog.Event):
            assert isinstance(e, cls), (e, cls)
        assert isinstance(e, DomainEventProtocol)
    assert isinstance(created, AggregateCreated) and isinstance(created, CanInitAggregate)
    assert isinstance(dog, Aggregate) and BaseAggregate is Aggregate
    assert DomainEvent[UUID] is DomainEvent
    for mixin in (CanMutateAggregate, CanInitAggregate, CanSnapshotAggregate):
        # The documented generic forms, as bases; plain mixins (no metaclass).
        assert get_origin(mixin[UUID]) is mixin and type(mixin) is type
    assert issubclass(Snapshot, CanSnapshotAggregate) and Aggregate.Snapshot is Snapshot
    now = datetime_now_with_tzinfo()
    assert now.tzinfo is not None and abs(now - datetime.now(timezone.utc)) < timedelta(seconds=5)
    for name in (
        "MutableOrImmutableAggregate",
        "CollectEventsProtocol",
        "MutableAggregateProtocol",
        "ImmutableAggregateProtocol",
        "EventSourcingError",
    ):
        assert name in domain.__all__ and hasattr(domain, name)


# -- the guide's example that needs pydantic ------------------------------------------


def test_the_guides_pydantic_example_runs() -> None:
    pytest.importorskip("pydantic")
    guide = Path(__file__).resolve().parent.parent / "docs" / "guide.md"
    blocks = re.findall(r"^```python pydantic\n(.*?)^```", guide.read_text(), re.DOTALL | re.M)
    assert len(blocks) == 1
    module = types.ModuleType("guide_pydantic_example")
    sys.modules[module.__name__] = module  # its classes are named by topic
    try:
        exec(compile(blocks[0], "guide.md (pydantic block)", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
