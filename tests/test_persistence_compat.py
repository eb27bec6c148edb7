"""The documented 9.x surface of persistence, topics and dispatch that code written
against it relies on: forward references in policies, renamed packages, bare
transcoders and their errors, factory discovery, names and generics."""

from __future__ import annotations

import pytest

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event

# -- dispatch: forward references -----------------------------------------------------


class Kennel:
    """A policy whose registrations name an aggregate defined below it."""

    @singledispatchmethod
    def policy(self, domain_event: object) -> str:
        return "ignored"

    @policy.register
    def _(self, domain_event: Puppy.Registered) -> str:
        return f"registered {domain_event.name}"

    @policy.register
    def _(self, domain_event: "Puppy.Renamed") -> str:  # noqa: UP037 (quoted on purpose)
        return f"renamed {domain_event.name}"


class Puppy(Aggregate):
    @event("Registered")
    def __init__(self, name: str):
        self.name = name

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name


def test_a_policy_registered_by_forward_reference_dispatches_on_first_use() -> None:
    puppy = Puppy("Rex")
    puppy.rename("Max")
    registered, renamed = puppy.collect_events()
    kennel = Kennel()
    assert kennel.policy(registered) == "registered Rex"
    assert kennel.policy(renamed) == "renamed Max"
    assert kennel.policy(object()) == "ignored"
    assert set(Kennel.policy.handled_types()) == {Puppy.Registered, Puppy.Renamed}


class Unresolvable:
    @singledispatchmethod
    def policy(self, domain_event: object) -> str:
        return "ignored"

    @policy.register
    def _(self, domain_event: NeverDefined.Event) -> str:  # type: ignore[name-defined]  # noqa: F821
        return "never"


def test_a_forward_reference_that_never_resolves_is_named_on_first_use() -> None:
    with pytest.raises(NameError, match="NeverDefined"):
        Unresolvable().policy(object())


# -- topics: a renamed package ---------------------------------------------------------


def test_a_renamed_package_resolves_the_topics_of_its_modules() -> None:
    import eventsourcing
    import eventsourcing.domain
    from eventsourcing.utils import register_topic, resolve_topic

    register_topic("renamedpackage_for_test", eventsourcing)
    assert resolve_topic("renamedpackage_for_test.domain:Aggregate") is Aggregate
    assert resolve_topic("renamedpackage_for_test.domain:Aggregate.Created") is Aggregate.Created
    assert resolve_topic("renamedpackage_for_test.domain") is eventsourcing.domain
    assert resolve_topic("renamedpackage_for_test") is eventsourcing


# -- transcoding: a bare transcoder, and the documented errors ------------------------


def test_a_new_json_transcoder_knows_only_json_types() -> None:
    from datetime import date
    from decimal import Decimal
    from uuid import uuid4

    from eventsourcing.persistence import (
        DecimalAsStr,
        JSONTranscoder,
        TranscodingNotRegisteredError,
    )

    transcoder = JSONTranscoder()
    plain = {"a": [1, 2.5, "x", None, True], "b": {"c": "d"}}
    assert transcoder.decode(transcoder.encode(plain)) == plain
    for value in (uuid4(), Decimal("1.5")):
        with pytest.raises(TranscodingNotRegisteredError):
            transcoder.encode({"value": value})
    with pytest.raises(TypeError) as info:
        transcoder.encode({"when": date(2024, 5, 1)})
    assert str(info.value) == (
        "Object of type <class 'datetime.date'> is not serializable. "
        "Please define and register a custom transcoding for this type."
    )
    encoded = b'{"price":{"_type_":"decimal_str","_data_":"1.5"}}'
    with pytest.raises(TranscodingNotRegisteredError) as decoding:
        transcoder.decode(encoded)
    assert str(decoding.value) == (
        "Data serialized with name 'decimal_str' is not deserializable. "
        "Please register a custom transcoding for this type."
    )
    transcoder.register(DecimalAsStr())
    assert transcoder.decode(encoded) == {"price": Decimal("1.5")}


def test_the_factory_transcoder_knows_the_types_of_events() -> None:
    from datetime import datetime, timezone
    from decimal import Decimal
    from uuid import uuid4

    from eventsourcing.persistence import InfrastructureFactory

    transcoder = InfrastructureFactory.construct().transcoder()
    state = {"id": uuid4(), "price": Decimal("2.50"), "at": datetime.now(timezone.utc)}
    assert transcoder.decode(transcoder.encode(state)) == state


def test_undecodable_state_is_a_mapper_deserialisation_error() -> None:
    from uuid import uuid4

    from eventsourcing.persistence import (
        DataError,
        JSONTranscoder,
        Mapper,
        MapperDeserialisationError,
        StoredEvent,
        TranscodingNotRegisteredError,
    )
    from eventsourcing.utils import EventSourcingError, get_topic

    originator_id = uuid4()
    stored = StoredEvent(
        originator_id, 1, get_topic(Puppy.Registered), b'{"at":{"_type_":"unknown","_data_":1}}'
    )
    with pytest.raises(MapperDeserialisationError, match=str(originator_id)) as info:
        Mapper(JSONTranscoder()).to_domain_event(stored)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DataError)
    assert isinstance(info.value, EventSourcingError)
    assert isinstance(info.value.__cause__, TranscodingNotRegisteredError)
    assert issubclass(TranscodingNotRegisteredError, TypeError)
    assert issubclass(TranscodingNotRegisteredError, EventSourcingError)
