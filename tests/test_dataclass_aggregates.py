"""Aggregates declared with ``@dataclass``: an explicit ``id`` field, and inherited fields."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields
from uuid import UUID, uuid4

import pytest

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, ProgrammingError, event


def saved_and_got(aggregate: Aggregate) -> Aggregate:
    """Save the aggregate in a new in-memory application, and get it back."""
    app = Application()
    app.save(aggregate)
    return app.repository.get(aggregate.id)


# -- an explicit id field ---------------------------------------------------------------


@dataclass
class Order(Aggregate):
    id: UUID
    name: str
    lines: list[str] = field(default_factory=list, init=False)

    @staticmethod
    def create_id(**kwargs: object) -> UUID:
        raise AssertionError("create_id must not be used when an id is given")

    @event("LineAdded")
    def add_line(self, line: str) -> None:
        self.lines.append(line)


def test_dataclass_id_field_is_an_init_argument() -> None:
    params = list(inspect.signature(Order.__init__).parameters)
    assert params == ["self", "id", "name"]
    assert [f.name for f in fields(Order)] == ["id", "name", "lines"]


def test_dataclass_id_given_by_keyword_is_the_aggregate_id() -> None:
    given = uuid4()
    order = Order(id=given, name="books")
    assert order.id == given
    assert (order.name, order.lines, order.version) == ("books", [], 1)
    (created,) = order.pending_events
    assert isinstance(created, Order.Created)
    assert created.originator_id == given


def test_dataclass_id_given_positionally_is_the_aggregate_id() -> None:
    given = uuid4()
    order = Order(given, "books")
    assert (order.id, order.name, order.lines) == (given, "books", [])
    (created,) = order.pending_events
    assert created.originator_id == given
    assert not hasattr(created, "id")  # the id is not stored twice


def test_dataclass_id_round_trip_through_application() -> None:
    given = uuid4()
    order = Order(id=given, name="books")
    order.add_line("atlas")
    copy = saved_and_got(order)
    assert isinstance(copy, Order)
    assert copy.id == given
    assert (copy.name, copy.lines, copy.version) == ("books", ["atlas"], 2)
    assert copy == order
    assert repr(copy) == repr(order)


class SnapshottingApplication(Application):
    is_snapshotting_enabled = True


def test_dataclass_id_round_trip_through_snapshot() -> None:
    app = SnapshottingApplication()
    order = Order(id=uuid4(), name="books")
    order.add_line("atlas")
    app.save(order)
    app.take_snapshot(order.id)
    assert app.snapshots is not None
    (snapshot,) = app.snapshots.get(order.id)
    assert "id" not in snapshot.state  # the id is the originator id, not aggregate state
    copy = app.repository.get(order.id)
    assert (copy.id, copy.lines, copy.version) == (order.id, ["atlas"], 2)


def test_dataclass_id_stays_read_only() -> None:
    order = Order(id=uuid4(), name="books")
    with pytest.raises(AttributeError, match="Order"):
        order.id = uuid4()  # type: ignore[misc]


def test_dataclass_non_uuid_id_is_a_type_error_naming_class_and_argument() -> None:
    with pytest.raises(TypeError, match=r"Order.*'id'.*UUID"):
        Order(id="not-a-uuid", name="books")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Order.*'id'.*UUID"):
        Order(12345, "books")  # type: ignore[arg-type]


def test_dataclass_id_is_required() -> None:
    with pytest.raises(TypeError, match=r"Order.*'id'"):
        Order(name="books")  # type: ignore[call-arg]


# -- inherited fields -------------------------------------------------------------------


@dataclass
class Vehicle(Aggregate):
    make: str
    wheels: int = 4

    @event("Repainted")
    def repaint(self, colour: str) -> None:
        self.colour = colour

    def describe(self) -> str:
        return f"{self.make} on {self.wheels} wheels"


@dataclass
class Truck(Vehicle):
    payload: int = 1000


@dataclass
class Bicycle(Vehicle):
    gears: int = 1
    owner: str = "nobody"


@dataclass
class Tanker(Truck):
    liquid: str = "water"


@dataclass
class Van(Vehicle):
    seats: int = 3

    def describe(self) -> str:  # zero-argument super() needs the class's own __class__ cell
        return f"{super().describe()}, {self.seats} seats"


def test_dataclass_child_init_takes_parent_fields_first() -> None:
    assert list(inspect.signature(Truck.__init__).parameters) == [
        "self",
        "make",
        "wheels",
        "payload",
    ]
    assert list(inspect.signature(Tanker.__init__).parameters) == [
        "self",
        "make",
        "wheels",
        "payload",
        "liquid",
    ]


def test_dataclass_child_positional_and_keyword_arguments() -> None:
    truck = Truck("volvo", 6, 20000)
    assert (truck.make, truck.wheels, truck.payload) == ("volvo", 6, 20000)
    bike = Bicycle(make="raleigh", wheels=2, gears=3)
    assert (bike.make, bike.wheels, bike.gears, bike.owner) == ("raleigh", 2, 3, "nobody")
    default = Truck("man")
    assert (default.wheels, default.payload) == (4, 1000)


def test_dataclass_child_created_event_has_all_fields() -> None:
    truck = Truck("volvo", 6, 20000)
    (created,) = truck.pending_events
    assert isinstance(created, Truck.Created)
    assert (created.make, created.wheels, created.payload) == ("volvo", 6, 20000)


def test_dataclass_child_round_trip_through_application() -> None:
    tanker = Tanker("scania", 8, 30000, "milk")
    tanker.repaint("white")
    copy = saved_and_got(tanker)
    assert isinstance(copy, Tanker)
    assert (copy.make, copy.wheels, copy.payload, copy.liquid) == ("scania", 8, 30000, "milk")
    assert (copy.colour, copy.version) == ("white", 2)
    assert copy == tanker


def test_dataclass_child_method_can_call_super() -> None:
    van = Van("ford", seats=2)
    assert van.describe() == "ford on 4 wheels, 2 seats"
    assert saved_and_got(van).describe() == "ford on 4 wheels, 2 seats"


def test_dataclass_parent_still_works_alone() -> None:
    copy = saved_and_got(Vehicle("ford"))
    assert (copy.make, copy.wheels) == ("ford", 4)


@dataclass
class Account(Aggregate):
    id: UUID
    owner: str


@dataclass
class SavingsAccount(Account):
    rate: float = 0.01


def test_dataclass_child_inherits_the_id_field() -> None:
    assert list(inspect.signature(SavingsAccount.__init__).parameters) == [
        "self",
        "id",
        "owner",
        "rate",
    ]
    given = uuid4()
    account = SavingsAccount(given, "alice", 0.02)
    assert account.id == given
    copy = saved_and_got(account)
    assert (copy.id, copy.owner, copy.rate) == (given, "alice", 0.02)


def test_dataclass_child_field_order_error_names_the_class() -> None:
    with pytest.raises(TypeError, match=r"Unordered.*'tail'"):

        @dataclass
        class Unordered(Vehicle):  # wheels has a default, tail has none
            tail: str


def test_id_field_with_a_default_is_a_programming_error() -> None:
    with pytest.raises(ProgrammingError, match=r"WithDefaultId\.id"):

        @dataclass
        class WithDefaultId(Aggregate):
            id: UUID | None = None


class Animal(Aggregate):
    name: str


class Cat(Animal):
    lives: int = 9


def test_undecorated_annotated_child_also_takes_parent_fields() -> None:
    assert list(inspect.signature(Cat.__init__).parameters) == ["self", "name", "lives"]
    copy = saved_and_got(Cat("tom", 7))
    assert (copy.name, copy.lives) == ("tom", 7)


# -- plain aggregates are unchanged -----------------------------------------------------


class Kettle(Aggregate):
    def __init__(self, colour: str) -> None:
        self.colour = colour


class Boiler(Aggregate):
    @event("Installed")
    def __init__(self, size: int, id: UUID | None = None) -> None:
        self.size = size


def test_plain_aggregate_with_undecorated_init_unchanged() -> None:
    kettle = Kettle("blue")
    assert isinstance(kettle.id, UUID)
    assert [f.name for f in fields(Kettle.Created)][-1:] == ["colour"]
    given = uuid4()
    copy = saved_and_got(Kettle("red", id=given))
    assert (copy.id, copy.colour) == (given, "red")


def test_plain_aggregate_with_decorated_init_unchanged() -> None:
    given = uuid4()
    boiler = Boiler(3, id=given)
    (created,) = boiler.pending_events
    assert isinstance(created, Boiler.Installed)
    assert (created.size, created.id) == (3, given)  # an explicit __init__ keeps id as a field
    copy = saved_and_got(boiler)
    assert (copy.id, copy.size) == (given, 3)
