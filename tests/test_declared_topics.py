"""An aggregate class that declares its ``TOPIC`` must declare one, its own, on each
event class of its body, and triggers only event classes that declare theirs (as
the 9.x library requires): ProgrammingError at once, rather than stored events
whose topics depend on where the code is, or that resolve to another class."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, ProgrammingError, event
from eventsourcing.utils import get_topic, resolve_topic


def unique(name: str) -> str:
    return f"{name}-{uuid4().hex[:8]}"


def test_every_event_class_of_the_body_declares_a_topic() -> None:
    with pytest.raises(ProgrammingError, match="its event class Happened must declare one"):

        class Ship(Aggregate):
            TOPIC = unique("ship")

            class Created(Aggregate.Created):
                TOPIC = unique("ship-created")

            class Happened(Aggregate.Event):
                pass


def test_the_created_event_defined_for_the_class_needs_one_too() -> None:
    with pytest.raises(ProgrammingError, match="its event class Created must declare one"):

        class Ship(Aggregate):
            TOPIC = unique("ship")


def test_event_methods_give_their_classes_a_topic() -> None:
    with pytest.raises(ProgrammingError, match=r"@event\('Sailed', topic=\.\.\.\)"):

        class Ship(Aggregate):
            TOPIC = unique("ship")

            @event("Launched", topic=unique("launched"))
            def __init__(self) -> None:
                pass

            @event("Sailed")
            def sail(self) -> None:
                pass

    sailed = unique("sailed")

    class Boat(Aggregate):
        TOPIC = unique("boat")

        @event("Launched", topic=unique("launched"))
        def __init__(self) -> None:
            self.trips = 0

        @event("Sailed", topic=sailed)
        def sail(self) -> None:
            self.trips += 1

    app = Application()
    boat = Boat()
    boat.sail()
    app.save(boat)
    assert app.repository.get(boat.id).trips == 1
    assert [n.topic for n in app.notification_log.select(1, 10)][1] == sailed
    assert resolve_topic(sailed) is Boat.Sailed


def test_two_event_classes_of_the_body_have_two_topics() -> None:
    topic = unique("same")
    with pytest.raises(ProgrammingError, match=f"TOPIC '{topic}' is already the topic of"):

        class Ship(Aggregate):
            TOPIC = unique("ship")

            class Created(Aggregate.Created):
                TOPIC = unique("ship-created")

            class Sailed(Aggregate.Event):
                TOPIC = topic

            class Sank(Aggregate.Event):
                TOPIC = topic


def test_a_topic_another_class_has_is_refused() -> None:
    taken = unique("taken")

    class Elsewhere(Aggregate.Event):
        TOPIC = taken

    with pytest.raises(ProgrammingError, match="is already the topic of .*Elsewhere"):

        class Ship(Aggregate):
            TOPIC = unique("ship")

            class Created(Aggregate.Created):
                TOPIC = taken

    ship_topic = unique("ship")

    class Ship1(Aggregate):
        TOPIC = ship_topic

        class Created(Aggregate.Created):
            TOPIC = unique("ship1-created")

    with pytest.raises(ProgrammingError, match="Ship2.TOPIC .* is already the topic of .*Ship1"):

        class Ship2(Aggregate):
            TOPIC = ship_topic

            class Created(Aggregate.Created):
                TOPIC = unique("ship2-created")


def test_a_class_defined_again_keeps_its_topics() -> None:
    topics = (unique("ship"), unique("ship-created"))

    def define() -> type[Any]:
        class Ship(Aggregate):
            TOPIC = topics[0]

            class Created(Aggregate.Created):
                TOPIC = topics[1]

        return Ship

    first, second = define(), define()
    assert first is not second
    assert resolve_topic(topics[0]) is second
    assert get_topic(second.Created) == topics[1]


def test_only_event_classes_that_declare_a_topic_are_triggered() -> None:
    class Ship(Aggregate):
        TOPIC = unique("ship")

        class Created(Aggregate.Created):
            TOPIC = unique("ship-created")

        class Sailed(Aggregate.Event):
            TOPIC = unique("ship-sailed")

    class Stray(Aggregate.Event):
        pass

    ship = Ship()
    with pytest.raises(ProgrammingError, match="base Event class is not triggered"):
        ship.trigger_event(Ship.Event)
    with pytest.raises(ProgrammingError, match="Stray declares no TOPIC"):
        ship.trigger_event(Stray)
    ship.trigger_event(Ship.Sailed)
    assert ship.version == 2


def test_a_topic_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ProgrammingError, match="TOPIC must be a str, not 42"):

        class Ship(Aggregate):
            TOPIC = 42


def test_classes_that_declare_no_topic_are_not_checked() -> None:
    class Ship(Aggregate):
        class Sailed(Aggregate.Event):
            pass

    class Stray(Aggregate.Event):
        pass

    ship = Ship()
    ship.trigger_event(Ship.Event)
    ship.trigger_event(Stray)
    assert ship.version == 3


def test_the_fields_template_of_a_class_has_a_topic_of_its_own() -> None:
    """The copy of an aggregate class made to give it a dataclass-style ``__init__``
    (its fields template) is another class: its topic, asked for, is its own, and the
    class's topic (its module and name, or its TOPIC) still resolves to the class."""
    declared = unique("ship")

    class Boat(Aggregate):
        name: str

    class Ship(Aggregate):
        TOPIC = declared
        name: str

        class Created(Aggregate.Created):
            TOPIC = unique("ship-created")
            name: str

    for cls in (Boat, Ship):
        topic = get_topic(cls)
        template = cls._fields_template  # type: ignore[attr-defined]
        assert template is not cls
        template_topic = get_topic(template)
        assert template_topic != topic
        assert resolve_topic(topic) is cls
        assert get_topic(cls) == topic
        assert resolve_topic(template_topic) is template
    assert get_topic(Ship) == declared
    assert Ship(name="Mary").name == "Mary"
