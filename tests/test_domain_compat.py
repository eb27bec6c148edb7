"""The documented 9.x domain API, second round: event mixins, string ids, nested
snapshot classes, ``@event`` on property setters, and documented names."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import FrozenInstanceError, dataclass, field
from datetime import datetime, timezone
from typing import Any, get_type_hints
from uuid import UUID, uuid4

import pytest

from eventsourcing import domain
from eventsourcing.application import Application
from eventsourcing.domain import (
    Aggregate,
    AggregateEvent,
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
    DomainEvent,
    ProgrammingError,
    Snapshot,
    event,
)
from eventsourcing.utils import TopicError
from tests.typing.kennel import Kennel


def replay(events: list[Any]) -> Any:
    aggregate = None
    for e in events:
        aggregate = e.mutate(aggregate)
    return aggregate


# -- R1: the "can" classes are plain mixins ------------------------------------------


def test_the_event_mixins_are_plain_classes_that_dataclass_events_derive_from() -> None:
    @dataclass(frozen=True)
    class Event(CanMutateAggregate[UUID]):
        originator_id: UUID
        originator_version: int
        timestamp: datetime

    @dataclass(frozen=True)
    class Opened(Event, CanInitAggregate[UUID]):
        originator_topic: str
        owner: str

    for mixin in (CanMutateAggregate, CanInitAggregate, CanSnapshotAggregate):
        assert type(mixin) is type  # no metaclass of ours to conflict with a model's

    class Account(Aggregate):
        @event(Opened)
        def __init__(self, owner: str) -> None:
            self.owner = owner

    account = Account("Ann")
    (opened,) = account.collect_events()
    assert type(opened) is Opened and not isinstance(opened, DomainEvent)
    with pytest.raises(FrozenInstanceError):
        opened.owner = "Bob"  # type: ignore[misc]
    copy = replay([opened])
    assert (copy.id, copy.version, copy.owner) == (account.id, 1, "Ann")


def model_aggregate_base(pydantic: Any) -> type[Aggregate]:
    """A base aggregate class whose events are (frozen) pydantic models."""

    class ModelEvent(pydantic.BaseModel, CanMutateAggregate[UUID]):  # type: ignore[misc]
        model_config = pydantic.ConfigDict(frozen=True)
        originator_id: UUID
        originator_version: int
        timestamp: datetime

    class ModelCreated(ModelEvent, CanInitAggregate[UUID]):  # type: ignore[misc]
        originator_topic: str

    class ModelAggregate(Aggregate):
        class Event(ModelEvent):  # type: ignore[misc,valid-type]
            pass

        class Created(Event, ModelCreated):  # type: ignore[misc,valid-type]
            pass

    return ModelAggregate


def test_a_model_event_class_may_derive_from_the_mixins() -> None:
    pydantic = pytest.importorskip("pydantic")

    class ModelSnapshot(pydantic.BaseModel, CanSnapshotAggregate[UUID]):  # type: ignore[misc]
        originator_id: UUID
        originator_version: int
        timestamp: datetime
        topic: str
        state: dict[str, Any]

    class ModelAggregate(model_aggregate_base(pydantic)):  # type: ignore[misc]
        Snapshot = ModelSnapshot  # type: ignore[assignment]

    class Cat(ModelAggregate):
        @event("Registered")
        def __init__(self, name: str) -> None:
            self.name = name

        @event("Renamed")
        def rename(self, name: str) -> None:
            self.name = name

    cat = Cat("Tom")
    cat.rename("Tim")
    events = cat.collect_events()
    assert all(isinstance(e, pydantic.BaseModel) for e in events)
    assert replay(events).name == "Tim"
    snapshot = Cat.Snapshot.take(cat)
    assert isinstance(snapshot, ModelSnapshot) and snapshot.mutate(None).name == "Tim"


# -- R2: string ids ---------------------------------------------------------------------


# Kennel: the typed user program with string ids that tests/test_typing.py checks with mypy.


def test_an_aggregate_with_events_typed_with_str_ids_has_a_str_id() -> None:
    kennel = Kennel("north")
    kennel.move("south")
    assert kennel.id == "kennel-north" and kennel.version == 2
    app = Application(env={"IS_SNAPSHOTTING_ENABLED": "y"})
    app.save(kennel)
    assert app.repository.get("kennel-north").town == "south"
    app.take_snapshot("kennel-north")
    (snapshot,) = app.snapshots.get("kennel-north")  # type: ignore[union-attr]
    assert snapshot.originator_id == "kennel-north"


def test_the_id_type_of_event_classes_is_their_type_argument() -> None:
    assert Kennel.Event.originator_id_type is str
    assert Kennel.Built.originator_id_type is str
    assert AggregateEvent.originator_id_type is UUID
    assert Aggregate.Created.originator_id_type is UUID
    assert Snapshot.originator_id_type is UUID
    assert CanMutateAggregate.originator_id_type is None
    with pytest.raises(TypeError, match=r"Odd: the aggregate id type <class 'int'>.*UUID nor str"):

        class Odd(CanMutateAggregate[int]):  # type: ignore[type-var]
            pass


def test_an_id_of_another_type_than_the_created_events_is_refused() -> None:
    class Dog(Aggregate):
        @staticmethod
        def create_id(name: str) -> str:  # type: ignore[override]
            return f"dog-{name}"

        def __init__(self, name: str) -> None:
            self.name = name

    with pytest.raises(TypeError, match=r"Dog: the aggregate id 'dog-x' is not a UUID"):
        Dog("x")
    with pytest.raises(TypeError, match=r"Kennel\(\) argument 'id' must be a str"):
        Kennel(town="x", id=uuid4())  # type: ignore[call-arg]
    assert Kennel(town="x", id="k1").id == "k1"  # type: ignore[call-arg]


# -- R3: an aggregate's nested Snapshot class ------------------------------------------


class Parrot(Aggregate):
    class Snapshot(Aggregate.Snapshot):
        pass

    def __init__(self, name: str) -> None:
        self.name = name

    @event("Taught")
    def teach(self, word: str) -> None:
        self.name += f" ({word})"


def test_an_aggregate_has_a_nested_snapshot_class() -> None:
    class Dog(Aggregate):
        def __init__(self, name: str) -> None:
            self.name = name

    assert Aggregate.Snapshot is Snapshot and Dog.Snapshot is Snapshot
    taken = Parrot.Snapshot.take(Parrot("Polly"))
    assert type(taken) is Parrot.Snapshot and taken.mutate(None).name == "Polly"


def test_the_application_snapshots_an_aggregate_with_its_nested_class() -> None:
    class Aviary(Application):
        snapshotting_intervals = {Parrot: 2}

    app = Aviary()
    parrot = Parrot("Polly")
    parrot.teach("hello")
    app.save(parrot)  # version 2: a snapshot, automatically
    app.take_snapshot(parrot.id, version=1)
    snapshots = list(app.snapshots.get(parrot.id))  # type: ignore[union-attr]
    assert [(type(s), s.originator_version) for s in snapshots] == [
        (Parrot.Snapshot, 1),
        (Parrot.Snapshot, 2),
    ]
    assert app.repository.get(parrot.id).name == "Polly (hello)"


# -- R4: @event on property setters ----------------------------------------------------


def assert_assigning_the_name_triggers_name_changed(dog_class: Any) -> None:
    dog = dog_class("Fido")
    dog.name = "Rex"
    assert dog.name == "Rex" and dog.version == 2
    events = dog.collect_events()
    assert type(events[1]) is dog_class.NameChanged and events[1].value == "Rex"
    assert replay(events).name == "Rex"


def test_event_under_a_property_setter_triggers_on_assignment() -> None:
    class Dog(Aggregate):
        def __init__(self, name: str) -> None:
            self._name = name

        @property
        def name(self) -> str:
            return self._name

        @name.setter
        @event("NameChanged")
        def name(self, value: str) -> None:
            self._name = value

    assert_assigning_the_name_triggers_name_changed(Dog)


def test_event_over_a_property_setter_triggers_on_assignment() -> None:
    class Dog(Aggregate):
        def __init__(self, name: str) -> None:
            self._name = name

        @property
        def name(self) -> str:
            return self._name

        @event("NameChanged")
        @name.setter
        def name(self, value: str) -> None:
            self._name = value

    assert_assigning_the_name_triggers_name_changed(Dog)


def test_event_on_a_property_needs_a_setter_and_an_event_name() -> None:
    with pytest.raises(ProgrammingError, match=r"setter of property 'name' needs an event name"):

        class Named(Aggregate):
            @property
            def name(self) -> str:
                return ""

            @name.setter
            @event
            def name(self, value: str) -> None:
                pass

    with pytest.raises(ProgrammingError, match=r"property 'name', which has no setter"):

        class ReadOnly(Aggregate):
            @event("Named")  # type: ignore[arg-type]
            @property
            def name(self) -> str:
                return ""


# -- R9: documented names -------------------------------------------------------------


def test_the_documented_names_of_the_domain_module() -> None:
    assert domain.TopicError is TopicError
    assert issubclass(domain.LogEvent, DomainEvent)
    assert issubclass(CanMutateAggregate, domain.HasOriginatorIDVersion)
    assert issubclass(CanMutateAggregate, domain.CanCreateTimestamp)
    assert issubclass(DomainEvent, domain.CanCreateTimestamp)
    assert domain.CanCreateTimestamp.create_timestamp().tzinfo is not None
    assert isinstance(Parrot.__dict__["teach"], domain.CommandMethodDecorator)
    for name in (
        "TopicError",
        "LogEvent",
        "HasOriginatorIDVersion",
        "CanCreateTimestamp",
        "CommandMethodDecorator",
    ):
        assert name in domain.__all__


def test_generated_event_classes_keep_the_methods_annotations() -> None:
    class Kennel(Aggregate):
        @event("Opened")
        def __init__(self, name: str, opened_on: datetime) -> None:
            self.name = name

        @event("Moved")
        def move(self, to: UUID, at: datetime) -> None:
            self.site = to

        @event("Noted")
        def note(self, text) -> None:  # type: ignore[no-untyped-def]
            self.text = text

    # (This module's annotations are strings: they are resolved as a model would.)
    moved = get_type_hints(Kennel.Moved)
    assert (moved["to"], moved["at"]) == (UUID, datetime)
    opened = get_type_hints(Kennel.Opened)
    assert (opened["name"], opened["opened_on"]) == (str, datetime)
    assert get_type_hints(Kennel.Noted)["text"] is Any


def test_model_event_classes_made_by_event_methods_convert_their_fields() -> None:
    # A model class converts what it is given to its fields' types (reading events
    # back from JSON, say): it can only do that if the generated class has them.
    pydantic = pytest.importorskip("pydantic")

    class Van(model_aggregate_base(pydantic)):  # type: ignore[misc]
        @event("Moved")
        def move(self, to: UUID, at: datetime) -> None:
            self.site = to

    van_id, site, at = uuid4(), uuid4(), datetime(2026, 12, 1, tzinfo=timezone.utc)
    moved = Van.Moved.model_validate(  # type: ignore[attr-defined]
        {
            "originator_id": str(van_id),
            "originator_version": 2,
            "timestamp": at.isoformat(),
            "to": str(site),
            "at": at.isoformat(),
        }
    )
    assert (moved.to, moved.at) == (site, at)


def test_an_aggregates_repr_names_its_class_id_version_times_and_state() -> None:
    class Parrot(Aggregate):
        def __init__(self, name: str) -> None:
            self.name = name
            self._words = ["hello"]

    parrot = Parrot("Polly")
    assert repr(parrot) == (
        f"Parrot(id={parrot.id!r}, version=1, created_on={parrot.created_on!r}, "
        f"modified_on={parrot.modified_on!r}, name='Polly', words=['hello'])"
    )


# -- event classes of a user's own root, made with MetaDomainEvent ---------------------


@dataclass(frozen=True)
class StableEvent(metaclass=domain.MetaDomainEvent):
    """A root event class of the user's own (no base event class of the library),
    decorated explicitly as well, as a 9.x guide example does."""

    originator_id: str
    originator_version: int
    timestamp: datetime


@dataclass(frozen=True)
class StableSnapshot(StableEvent, CanSnapshotAggregate[str]):
    topic: str
    state: dict[str, Any]


class StableAggregate(BaseAggregate[str]):
    @dataclass(frozen=True)
    class Event(StableEvent, CanMutateAggregate[str]):
        pass

    @dataclass(frozen=True)
    class Created(Event, CanInitAggregate[str]):
        originator_topic: str


class Stable(StableAggregate):
    @staticmethod
    def create_id() -> str:
        return f"stable-{uuid4()}"

    @event("Opened")
    def __init__(self, town: str) -> None:
        self.town = town
        self.horses: list[str] = []

    @event("HorseArrived")
    def arrive(self, horse: str) -> None:
        self.horses.append(horse)


def test_a_users_own_root_event_class_may_also_be_decorated_as_a_frozen_dataclass() -> None:
    stable = Stable("York")
    stable.arrive("Dobbin")
    opened, arrived = stable.collect_events()
    assert isinstance(opened, StableAggregate.Created) and arrived.horse == "Dobbin"
    for instance, name in ((opened, "town"), (arrived, "horse"), (arrived, "originator_version")):
        with pytest.raises(FrozenInstanceError):
            setattr(instance, name, "changed")
        with pytest.raises(FrozenInstanceError):
            delattr(instance, name)


def test_an_aggregate_with_its_own_events_is_snapshotted_with_the_apps_snapshot_class() -> None:
    stable = Stable("York")
    stable.arrive("Dobbin")

    class Stables(Application[str]):
        is_snapshotting_enabled = True
        snapshot_class = StableSnapshot

    app = Stables()
    app.save(stable)
    app.take_snapshot(stable.id)
    assert app.snapshots is not None
    (snapshot,) = app.snapshots.get(stable.id)
    assert isinstance(snapshot, StableSnapshot)
    with pytest.raises(FrozenInstanceError):
        snapshot.topic = "elsewhere"  # type: ignore[misc]
    assert app.repository.get(stable.id).horses == ["Dobbin"]


# -- an event method naming a field its event makes itself ---------------------------

_editor: ContextVar[str | None] = ContextVar("editor", default=None)


class Article(Aggregate):
    class Event(Aggregate.Event):
        editor: str | None = field(default_factory=_editor.get, init=False)

    @event("Drafted")
    def __init__(self, headline: str) -> None:
        self.headline = headline
        self.edited_by: list[str | None] = []

    @event("Retitled")
    def retitle(self, headline: str, editor: str | None = None) -> None:
        self.headline = headline
        self.edited_by.append(editor)


def test_an_event_method_may_take_a_field_that_the_event_makes_itself() -> None:
    _editor.set("ann")
    article = Article("Draft")
    _editor.set("bob")
    article.retitle("Final")
    article.retitle("Final!", editor="ignored: the event makes its editor")
    assert article.edited_by == ["bob", "bob"]
    drafted, retitled, _ = article.collect_events()
    assert (drafted.editor, retitled.editor, retitled.headline) == ("ann", "bob", "Final")
    _editor.set("cy")
    copy = replay([drafted, retitled])
    assert copy.edited_by == ["bob"] and copy.headline == "Final"


# -- topics declared by classes ------------------------------------------------------


class Ferry(Aggregate):
    TOPIC = "compat-ferry"

    class Launched(Aggregate.Created):
        TOPIC = "compat-ferry-launched"
        name: str

    @event(Launched)
    def __init__(self, name: str) -> None:
        self.name = name
        self.ports: list[str] = []

    @event("Docked", topic="compat-ferry-docked")
    def dock(self, port: str) -> None:
        self.ports.append(port)


class Barge(Aggregate):
    @event("Floated", topic="compat-barge-floated")
    def __init__(self, cargo: str) -> None:
        self.cargo = cargo


def test_classes_may_declare_their_topics_and_event_methods_may_name_them() -> None:
    from eventsourcing.utils import get_topic, resolve_topic

    assert get_topic(Ferry) == "compat-ferry"
    assert get_topic(Ferry.Launched) == "compat-ferry-launched"
    assert get_topic(Ferry.Docked) == "compat-ferry-docked"
    assert get_topic(Barge.Floated) == "compat-barge-floated"
    for topic, cls in [("compat-ferry", Ferry), ("compat-ferry-docked", Ferry.Docked)]:
        assert resolve_topic(topic) is cls

    class Tug(Ferry):  # (a subclass does not take its base's topic)
        pass

    assert get_topic(Tug) != "compat-ferry"

    app = Application()
    ferry = Ferry("Mersey")
    ferry.dock("Liverpool")
    barge = Barge("coal")
    app.save(ferry, barge)
    topics = [n.topic for n in app.notification_log.select(start=1, limit=10)]
    assert topics == ["compat-ferry-launched", "compat-ferry-docked", "compat-barge-floated"]
    assert app.repository.get(ferry.id).ports == ["Liverpool"]
    assert app.repository.get(barge.id).cargo == "coal"
