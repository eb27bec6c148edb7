"""Aggregates and events: the documented declarative styles, versioning, snapshots."""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import pytest

from eventsourcing.domain import (
    Aggregate,
    OriginatorIDError,
    OriginatorVersionError,
    ProgrammingError,
    Snapshot,
    aggregate,
    event,
    triggers,
)
from eventsourcing.utils import get_topic, register_topic, resolve_topic


def replay(events):
    obj = None
    for e in events:
        obj = e.mutate(obj)
    return obj


# -- plain __init__, explicit and named Created events --------------------------------


class Kettle(Aggregate):
    def __init__(self, colour):
        self.colour = colour


def test_plain_init_gets_created_event_with_init_fields():
    kettle = Kettle(colour="red")
    (created,) = kettle.collect_events()
    assert type(created) is Kettle.Created
    assert type(created).__qualname__ == "Kettle.Created"
    assert created.colour == "red"
    assert created.originator_version == 1
    assert replay([created]).colour == "red"


class Boiler(Aggregate):
    class Lit(Aggregate.Created):
        pass


def test_explicit_created_class_in_namespace_is_used():
    boiler = Boiler()
    (created,) = boiler.collect_events()
    assert type(created) is Boiler.Lit
    assert replay([created]).id == boiler.id


class Pump(Aggregate, created_event_name="Primed"):
    pressure: int


def test_created_event_name_class_argument_and_annotations_make_init():
    pump = Pump(3)
    (created,) = pump.collect_events()
    assert type(created) is Pump.Primed
    assert created.pressure == 3
    assert pump.pressure == 3


class Valve(Aggregate, created_event_name="Opened"):
    class Created(Aggregate.Created):
        pass

    class Started(Aggregate.Created):
        pass


def test_created_event_name_not_among_defined_classes_defines_it():
    valve = Valve()
    (created,) = valve.collect_events()
    assert type(created).__name__ == "Opened"
    assert type(created) is Valve.Opened


class Tap(Aggregate, created_event_name="Started"):
    class Created(Aggregate.Created):
        pass

    class Started(Aggregate.Created):
        pass


def test_created_event_name_picks_among_defined_classes():
    (created,) = Tap().collect_events()
    assert type(created) is Tap.Started


class Lamp(Aggregate):
    @event("SwitchedOn")
    def __init__(self, watts):
        self.watts = watts


def test_event_on_init_names_the_created_class():
    lamp = Lamp(watts=40)
    (created,) = lamp.collect_events()
    assert type(created).__qualname__ == "Lamp.SwitchedOn"
    assert replay([created]).watts == 40


# -- dataclass style ----------------------------------------------------------------


@dataclass
class Page(Aggregate):
    name: str
    body: str = ""
    tags: list[str] = field(default_factory=list, init=False)

    @event("NameUpdated")
    def update_name(self, name: str):
        self.name = name


def test_dataclass_style_aggregate():
    page = Page(name="Erth")
    assert page.body == "" and page.tags == []
    page.update_name("Earth")
    events = page.collect_events()
    assert events[0].name == "Erth" and events[0].body == ""
    assert not hasattr(events[0], "tags")
    copy = replay(events)
    assert (copy.name, copy.body, copy.tags, copy.version) == ("Earth", "", [], 2)


class Note(Aggregate):
    text: str = "empty"


def test_annotations_without_dataclass_decorator_define_init():
    assert Note().text == "empty"
    assert Note("hi").text == "hi"


class Ident(Aggregate):
    id: UUID


def test_id_annotation_takes_explicit_id():
    given = uuid4()
    ident = Ident(id=given)
    assert ident.id == given
    assert replay(ident.collect_events()).id == given


class OwnId(Aggregate):
    def __init__(self, id: UUID):
        self._id = id


def test_init_taking_id_sets_it():
    given = uuid4()
    assert OwnId(id=given).id == given


def test_explicit_id_keyword_with_plain_init():
    given = uuid4()
    kettle = Kettle("blue", id=given)
    assert kettle.id == given


# -- create_id ------------------------------------------------------------------------


class Index(Aggregate):
    name: str
    ref: UUID | None

    @staticmethod
    def create_id(name: str):
        return uuid5(NAMESPACE_URL, f"/pages/{name}")

    @event("RefUpdated")
    def update_ref(self, ref):
        self.ref = ref


class Counter(Aggregate):
    def __init__(self, name, start=0):
        self.name = name
        self.count = start

    @classmethod
    def create_id(cls, name):
        return uuid5(NAMESPACE_URL, f"/counters/{name}")


def test_create_id_takes_init_arguments_by_name():
    index = Index(name="x", ref=None)
    assert index.id == Index.create_id(name="x") == Index.create_id("x")
    assert Counter("a", start=3).id == Counter.create_id("a")
    assert Counter(name="a").id == Counter.create_id(name="a")


def test_create_id_with_unknown_parameter_names_it():
    class Bad(Aggregate):
        def __init__(self, name):
            self.name = name

        @classmethod
        def create_id(cls, title):
            return uuid4()

    with pytest.raises(TypeError, match="create_id"):
        Bad("x")


# -- @event on methods ----------------------------------------------------------------


class Dog(Aggregate):
    def __init__(self, name):
        self.name = name
        self.tricks = []

    @event
    def trick_added(self, trick, times=1):
        self.tricks.extend([trick] * times)

    class Renamed(Aggregate.Event):
        name: str

    @triggers(Renamed)
    def rename(self, name):
        self.name = name

    def learn(self, trick):
        if trick in self.tricks:
            raise ValueError("known")
        self.trick_added(trick)


def test_event_without_argument_derives_class_name():
    dog = Dog("Fido")
    dog.trick_added("roll")
    dog.trick_added(trick="sit", times=2)
    events = dog.collect_events()
    assert type(events[1]) is Dog.TrickAdded
    assert (events[1].trick, events[1].times) == ("roll", 1)
    assert (events[2].trick, events[2].times) == ("sit", 2)
    assert replay(events).tricks == ["roll", "sit", "sit"]


def test_explicit_event_class_with_triggers():
    dog = Dog("Fido")
    dog.rename("Rex")
    events = dog.collect_events()
    assert type(events[1]) is Dog.Renamed and events[1].name == "Rex"
    assert replay(events).name == "Rex"


def test_exception_in_method_body_triggers_nothing():
    dog = Dog("Fido")
    dog.learn("roll")
    with pytest.raises(ValueError):
        dog.learn("roll")
    assert len(dog.pending_events) == 2
    assert dog.version == 2


def test_event_classes_pickle_and_resolve_by_topic():
    dog = Dog("Fido")
    dog.trick_added("roll")
    events = dog.collect_events()
    assert pickle.loads(pickle.dumps(events[1])) == events[1]
    assert resolve_topic(get_topic(Dog.TrickAdded)) is Dog.TrickAdded


def test_event_on_classmethod_is_a_programming_error():
    with pytest.raises(ProgrammingError, match="classmethod"):

        class Bad(Aggregate):
            @event("X")
            @classmethod
            def f(cls):
                pass


# -- events that apply themselves, _create, trigger_event ----------------------------


class World(Aggregate):
    def __init__(self):
        self.history = []

    @classmethod
    def create(cls):
        return cls._create(event_class=cls.Created, id=uuid4())

    def make_it_so(self, what):
        self.trigger_event(self.SomethingHappened, what=what)

    class SomethingHappened(Aggregate.Event):
        what: str

        def apply(self, world):
            world.history.append(self.what)


def test_event_subclass_applies_itself():
    world = World.create()
    world.make_it_so("dinosaurs")
    world.make_it_so("internet")
    assert world.history == ["dinosaurs", "internet"]
    events = world.collect_events()
    assert [type(e) for e in events] == [
        World.Created,
        World.SomethingHappened,
        World.SomethingHappened,
    ]
    copy = replay(events)
    assert copy.history == world.history and copy.modified_on == world.modified_on


def test_applying_out_of_sequence_or_to_other_aggregate_fails():
    world = World.create()
    world.make_it_so("a")
    created, happened = world.collect_events()
    with pytest.raises(OriginatorVersionError, match="version 2"):
        happened.mutate(None)
    other = World.create()
    with pytest.raises(OriginatorIDError):
        happened.mutate(other)
    copy = created.mutate(None)
    copy = happened.mutate(copy)
    with pytest.raises(OriginatorVersionError):
        happened.mutate(copy)


class Zero(Aggregate):
    INITIAL_VERSION = 0


def test_initial_version():
    zero = Zero()
    assert zero.version == 0
    assert replay(zero.collect_events()).version == 0


# -- the @aggregate decorator ----------------------------------------------------------


@aggregate(created_event_name="Placed")
class Order:
    def __init__(self, name):
        self.name = name

    @event("Confirmed")
    def confirm(self, at):
        self.confirmed_at = at


@aggregate
class Basket:
    items: list


def test_aggregate_decorator():
    order = Order("mine")
    order.confirm(at=5)
    events = order.collect_events()
    assert isinstance(order, Aggregate)
    assert type(events[0]) is Order.Placed and type(events[1]) is Order.Confirmed
    assert replay(events).confirmed_at == 5
    basket = Basket(items=[1])
    assert basket.items == [1] and isinstance(basket, Aggregate)


# -- snapshots and versioning ----------------------------------------------------------


def test_snapshot_take_and_mutate():
    world = World.create()
    world.make_it_so("x")
    snapshot = Snapshot.take(world)
    assert snapshot.topic == get_topic(World)
    assert set(snapshot.state) == {"history", "_created_on", "_modified_on"}
    copy = snapshot.mutate(None)
    assert isinstance(copy, World)
    assert (copy.id, copy.version, copy.history) == (world.id, 2, ["x"])
    assert copy.created_on == world.created_on and copy.modified_on == world.modified_on
    copy.make_it_so("y")
    assert copy.version == 3 and world.history == ["x"]


class Shelf(Aggregate):
    def __init__(self, a):
        self.a = a
        self.b = 0

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state):
        state["b"] = 99


def test_snapshot_state_upcast_with_aggregate_class_version():
    shelf = Shelf(a=1)
    old = Snapshot.take(shelf)
    state = dict(old.state)
    state.pop("class_version")
    state.pop("b")
    v1 = Snapshot(
        originator_id=old.originator_id,
        originator_version=old.originator_version,
        timestamp=old.timestamp,
        topic=old.topic,
        state=state,
    )
    copy = v1.mutate(None)
    assert (copy.a, copy.b) == (1, 99)
    assert Snapshot.take(shelf).state["class_version"] == 2


def test_register_topic_for_renamed_classes():
    register_topic("tests.old_module:OldDog", Dog)
    assert resolve_topic("tests.old_module:OldDog") is Dog
    assert resolve_topic("tests.old_module:OldDog.TrickAdded") is Dog.TrickAdded
    register_topic("tests.renamed_module", sys.modules[__name__])
    assert resolve_topic("tests.renamed_module:Dog") is Dog


def test_base_aggregate_and_subclass_created_events():
    base = Aggregate()
    (created,) = base.collect_events()
    assert type(created) is Aggregate.Created

    class Parent(Aggregate):
        def __init__(self, x):
            self.x = x

    class Child(Parent):
        pass

    child = Child(1)
    (created,) = child.collect_events()
    assert type(created) is Child.Created
    assert issubclass(Child.Created, Parent.Created)
    assert replay([created]).x == 1


# -- events made quickly (fields set directly) are the events the class would make --


def test_a_triggered_event_equals_one_made_by_its_class():
    class Tank(Aggregate):
        @event("Filled")
        def fill(self, litres, note=""):
            self.litres = litres

    tank = Tank()
    tank.fill(5)
    made = tank.pending_events[-1]
    by_class = type(made)(
        originator_id=made.originator_id,
        originator_version=made.originator_version,
        timestamp=made.timestamp,
        litres=5,
        note="",
    )
    assert made == by_class
    assert repr(made) == repr(by_class)
    assert hash(made) == hash(by_class)


def test_an_event_class_with_post_init_still_runs_it():
    class Tank(Aggregate):
        class Filled(Aggregate.Event):
            litres: int

            def __post_init__(self):
                if self.litres < 0:
                    raise ValueError(f"cannot fill {self.litres} litres")

        @event(Filled)
        def fill(self, litres):
            self.litres = litres

    tank = Tank()
    tank.fill(1)
    with pytest.raises(ValueError, match="cannot fill -1 litres"):
        tank.fill(-1)
    assert tank.version == 2  # the refused event changed nothing


def test_trigger_event_with_a_wrong_field_is_a_type_error():
    class Tank(Aggregate):
        class Filled(Aggregate.Event):
            litres: int

    tank = Tank()
    with pytest.raises(TypeError, match="gallons"):
        tank.trigger_event(Tank.Filled, gallons=3)
    with pytest.raises(TypeError):
        tank.trigger_event(Tank.Filled)  # a field missing
    assert tank.version == 1


def test_an_explicit_event_class_with_its_own_apply_or_mutate_is_used_when_triggered():
    # The method's body runs first, then the class's own apply(), as documented.
    calls = []

    class Ledger(Aggregate):
        def __init__(self):
            self.entries = []
            self.applied_at = []

        class Logged(Aggregate.Event):
            entry: str

            def apply(self, ledger):
                calls.append(("apply", self.entry))
                ledger.entries.append(self.entry.upper())

        class Stamped(Aggregate.Event):
            entry: str

            def mutate(self, ledger):
                calls.append(("mutate", self.entry))
                ledger = super().mutate(ledger)
                ledger.applied_at.append(ledger.version)
                return ledger

        class Dated(Aggregate.Event):
            entry: str

            @staticmethod
            def create_timestamp():
                return datetime(2000, 1, 1, tzinfo=timezone.utc)

        @event(Logged)
        def log(self, entry):
            calls.append(("body", entry))

        @event(Dated)
        def date(self, entry):
            self.entries.append(entry)

        @event(Stamped)
        def stamp(self, entry):
            self.entries.append(entry)

    ledger = Ledger()
    ledger.log("a")
    ledger.stamp("b")
    assert calls == [("body", "a"), ("apply", "a"), ("mutate", "b")]
    assert ledger.entries == ["A", "b"] and ledger.applied_at == [3] and ledger.version == 3
    ledger.date("c")
    assert ledger.modified_on == datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert ledger.pending_events[-1].timestamp == ledger.modified_on


def test_a_triggered_event_leaves_the_aggregate_as_replaying_it_does():
    class Dog(Aggregate):
        @event("Registered")
        def __init__(self, name):
            self.name = name
            self.tricks = []
            self.versions_seen = []

        @event("TrickAdded")
        def add_trick(self, trick, times=1):
            self.tricks.extend([trick] * times)
            self.versions_seen.append(self.version)  # (the version before the event)

        @event("Failed")
        def fail(self):
            raise ValueError("no")

    dog = Dog("rex")
    dog.add_trick("sit")
    dog.add_trick(trick="roll", times=2)
    with pytest.raises(ValueError):
        dog.fail()
    assert dog.version == 3 and len(dog.pending_events) == 3  # nothing of the failure
    events = dog.collect_events()
    assert dog.modified_on == events[-1].timestamp
    copy = replay(events)
    assert copy == dog and copy.modified_on == dog.modified_on
    assert dog.tricks == ["sit", "roll", "roll"] and dog.versions_seen == [1, 2]


def test_event_method_arguments_bind_the_same_by_position_keyword_or_default():
    class Box(Aggregate):
        @event("Packed")
        def pack(self, item, count=1, *, note=""):
            self.packed = (item, count, note)

        @event("Labelled")
        def label(self, text, colour):
            self.labelled = (text, colour)

    box = Box()
    box.label("fragile", "red")
    assert box.labelled == ("fragile", "red")
    box.label("this way up", colour="blue")
    assert box.labelled == ("this way up", "blue")
    box.pack("cup", 2, note="glass")
    assert box.packed == ("cup", 2, "glass")
    box.pack("plate")
    assert box.packed == ("plate", 1, "")
    with pytest.raises(TypeError, match="label"):
        box.label("only one")
    with pytest.raises(TypeError, match="label"):
        box.label("a", "b", "c")
    assert [e.__class__.__name__ for e in box.collect_events()][1:] == [
        "Labelled",
        "Labelled",
        "Packed",
        "Packed",
    ]
    assert box.version == 5
