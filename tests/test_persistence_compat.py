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


# -- the infrastructure factory: found in a module without a 'Factory' ----------------


def _module(name: str, **members: object) -> object:
    import sys
    import types

    module = types.ModuleType(name)
    vars(module).update(members)
    sys.modules[name] = module
    return module


def test_a_persistence_module_with_one_factory_class_needs_no_factory_attribute() -> None:
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.popo import POPOFactory
    from eventsourcing.utils import Environment

    class MemoryFactory(POPOFactory):
        pass

    _module("compat_one_factory", MemoryFactory=MemoryFactory, Environment=Environment)
    env = Environment("", {"PERSISTENCE_MODULE": "compat_one_factory"})
    assert type(InfrastructureFactory.construct(env)) is MemoryFactory


def test_a_factory_attribute_wins_over_other_factory_classes() -> None:
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.popo import POPOFactory
    from eventsourcing.utils import Environment

    class Chosen(POPOFactory):
        pass

    _module("compat_factory_named", POPOFactory=POPOFactory, Chosen=Chosen, Factory=Chosen)
    env = Environment("", {"PERSISTENCE_MODULE": "compat_factory_named"})
    assert type(InfrastructureFactory.construct(env)) is Chosen


def test_a_persistence_module_with_no_or_several_factories_is_named() -> None:
    from eventsourcing.persistence import DatabaseFactory, InfrastructureFactory
    from eventsourcing.popo import POPOFactory
    from eventsourcing.utils import Environment, TopicError

    class First(POPOFactory):
        pass

    class Second(POPOFactory):
        pass

    _module("compat_two_factories", First=First, Second=Second)
    _module("compat_no_factory", InfrastructureFactory=InfrastructureFactory, DB=DatabaseFactory)
    with pytest.raises(TopicError, match="'compat_two_factories'.*found 2: First, Second"):
        InfrastructureFactory.construct(
            Environment("", {"PERSISTENCE_MODULE": "compat_two_factories"})
        )
    with pytest.raises(TopicError, match="'compat_no_factory'.*found 0: none"):
        InfrastructureFactory.construct(
            Environment("", {"PERSISTENCE_MODULE": "compat_no_factory"})
        )


def test_a_bad_persistence_module_is_an_infrastructure_factory_error() -> None:
    from eventsourcing.persistence import InfrastructureFactory, InfrastructureFactoryError
    from eventsourcing.utils import Environment, TopicError

    for module in ("compat_no_such_module_here", "eventsourcing.utils"):
        with pytest.raises(InfrastructureFactoryError) as caught:
            InfrastructureFactory.construct(Environment("", {"PERSISTENCE_MODULE": module}))
        assert isinstance(caught.value, TopicError)
        assert module in str(caught.value)


# -- names and generics ---------------------------------------------------------------


def test_the_documented_names_of_factories_and_the_cipher() -> None:
    import eventsourcing.cipher
    import eventsourcing.cryptography
    import eventsourcing.popo
    import eventsourcing.postgres

    assert eventsourcing.popo.Factory is eventsourcing.popo.POPOFactory
    assert eventsourcing.postgres.Factory is eventsourcing.postgres.PostgresFactory
    assert eventsourcing.cryptography.AESCipher is eventsourcing.cipher.AESCipher


def test_the_setting_names_and_helpers_the_9x_library_also_offers() -> None:
    from eventsourcing.application import Application, LocalNotificationLog
    from eventsourcing.domain import register_topic
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.system import NotificationLogReader
    from eventsourcing.utils import get_method_name, resolve_topic

    assert InfrastructureFactory.APPLICATION_RECORDER_TOPIC == "APPLICATION_RECORDER_TOPIC"
    assert InfrastructureFactory.PROCESS_RECORDER_TOPIC == "PROCESS_RECORDER_TOPIC"
    assert LocalNotificationLog.format_section_id(11, 20) == "11,20"
    assert NotificationLogReader.DEFAULT_SECTION_SIZE == 10
    assert get_method_name(Puppy.rename) == "Puppy.rename"
    register_topic("compat_moved_kennel:Pup", Puppy)
    assert resolve_topic("compat_moved_kennel:Pup") is Puppy

    app = Application()
    for name in ("Rex", "Fido", "Spot"):
        app.save(Puppy(name))
    section = app.notification_log[LocalNotificationLog.format_section_id(1, 2)]
    assert (section.id, section.next_id) == ("1,2", "3,4")


def test_construct_factory_may_be_overridden_with_or_without_the_environment() -> None:
    from eventsourcing.application import Application
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.popo import POPOFactory
    from eventsourcing.utils import Environment

    made: list[str] = []

    class Counted(POPOFactory):
        pass

    class WithEnv(Application):  # as overridden for the 9.x library
        def construct_factory(self, env: Environment | None = None) -> InfrastructureFactory:
            made.append(f"env {env.name if env is not None else None}")
            return Counted(env)

    class WithoutEnv(Application):
        def construct_factory(self) -> InfrastructureFactory:  # type: ignore[override]
            made.append("none")
            return Counted(self.env)

    assert isinstance(WithEnv().factory, Counted)
    assert isinstance(WithoutEnv().factory, Counted)
    assert made == ["env WithEnv", "none"]
    assert type(Application().construct_factory(Environment("x", {}))).__name__ == "POPOFactory"


def test_utility_parameters_have_their_9x_names() -> None:
    from eventsourcing.sqlite import SQLiteDatastore
    from eventsourcing.utils import register_topic, resolve_topic, reversed_keys, strtobool

    assert strtobool(val="yes") is True
    assert list(reversed_keys(d={"a": 1, "b": 2})) == ["b", "a"]
    register_topic(topic="compat_old_kennel:Pup", obj=Puppy)
    assert resolve_topic("compat_old_kennel:Pup") is Puppy
    datastore = SQLiteDatastore(
        ":memory:", pool_size=2, max_overflow=0, pool_timeout=1.0, pre_ping=True
    )
    assert datastore.db_name == ":memory:"


def test_the_cryptography_cipher_is_selected_by_its_topic() -> None:
    from uuid import uuid4

    from eventsourcing.application import Application
    from eventsourcing.cryptography import AESCipher

    app = Application(
        env={
            "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
            "CIPHER_KEY": AESCipher.create_key(32),
        }
    )
    assert isinstance(app.mapper.cipher, AESCipher)
    puppy = Puppy("Secret")
    app.save(puppy)
    assert b"Secret" not in app.recorder.select_events(puppy.id)[0].state
    assert app.repository.get(puppy.id).name == "Secret"
    assert uuid4() not in app.repository


def test_mapper_and_event_store_are_generic_over_the_id_type() -> None:
    from uuid import UUID

    from eventsourcing.persistence import EventStore, Mapper, default_transcodings
    from eventsourcing.persistence import JSONTranscoder as Transcoder
    from eventsourcing.popo import POPOApplicationRecorder

    transcoder = Transcoder()
    for transcoding in default_transcodings():
        transcoder.register(transcoding)
    mapper: Mapper[UUID] = Mapper[UUID](transcoder)
    store: EventStore[UUID] = EventStore[UUID](mapper, POPOApplicationRecorder())
    puppy = Puppy("Rex")
    store.put(puppy.collect_events())
    assert [e.name for e in store.get(puppy.id)] == ["Rex"]
    assert Mapper[str] is not None and EventStore[str] is not None


def test_a_factory_named_with_its_view_type_makes_that_view() -> None:
    from eventsourcing.persistence import InfrastructureFactory, Tracking
    from eventsourcing.popo import POPOTrackingRecorder
    from eventsourcing.utils import Environment

    class Tally(POPOTrackingRecorder):
        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        def add(self, tracking: Tracking) -> None:
            with self._database_lock:
                self._assert_tracking_uniqueness(tracking)
                self._insert_tracking(tracking)
                self.total += 1

    factory = InfrastructureFactory[Tally].construct(env=Environment("tally", {}))
    tally = factory.tracking_recorder(Tally)
    tally.add(Tracking("kennels", 1))
    assert (tally.total, tally.max_tracking_id("kennels")) == (1, 1)


def test_a_cipher_key_alone_encrypts_with_the_aes_cipher() -> None:
    from eventsourcing.application import Application
    from eventsourcing.cipher import AESCipher

    app = Application(env={"CIPHER_KEY": AESCipher.create_key(16)})
    assert isinstance(app.mapper.cipher, AESCipher)
    puppy = Puppy("Secret")
    app.save(puppy)
    assert b"Secret" not in app.recorder.select_events(puppy.id)[0].state
    assert app.repository.get(puppy.id).name == "Secret"
    assert Application().mapper.cipher is None


# -- the in-memory recorders' extension point -----------------------------------------


def test_an_in_memory_recorder_extension_keeps_its_own_state_with_the_events() -> None:
    from collections.abc import Sequence
    from typing import Any

    from eventsourcing.application import Application
    from eventsourcing.persistence import StoredEvent, Tracking
    from eventsourcing.popo import POPOApplicationRecorder, POPOFactory, POPOProcessRecorder

    class Indexed(POPOApplicationRecorder):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.index: dict[str, Any] = {}

        def _insert_events(
            self, stored_events: Sequence[StoredEvent], *, names: Sequence[str] = (), **kw: Any
        ) -> Sequence[int] | None:
            ids = super()._insert_events(stored_events, **kw)
            for name in names:
                if name == "fail":
                    raise ValueError("the extension refused the name")
                self.index[name] = stored_events[0].originator_id
            return ids

    class IndexedFactory(POPOFactory):
        def application_recorder(self) -> Indexed:
            return Indexed()

    _module("compat_indexed_factory", IndexedFactory=IndexedFactory)

    class Kennels(Application):
        def register(self, name: str) -> Any:
            puppy = Puppy(name)
            return self.save(puppy, names=[name])

    app = Kennels(env={"PERSISTENCE_MODULE": "compat_indexed_factory"})
    (recording,) = app.register("Rex")
    recorder = app.recorder
    assert isinstance(recorder, Indexed)
    assert recording.notification.id == 1
    assert app.repository.get(recorder.index["Rex"]).name == "Rex"
    with pytest.raises(ValueError, match="refused"):
        app.register("fail")
    assert recorder.max_notification_id() == 1
    assert len(recorder.select_notifications(1, 10)) == 1
    assert list(recorder.index) == ["Rex"]

    class Tracked(POPOProcessRecorder):
        def _insert_events(
            self, stored_events: Sequence[StoredEvent], **kw: Any
        ) -> Sequence[int] | None:
            ids = super()._insert_events(stored_events, **kw)
            if kw["tracking"].notification_id == 2:
                raise ValueError("no second position")
            return ids

    tracked = Tracked()
    event = StoredEvent(Puppy("A").id, 1, "t", b"{}")
    assert list(tracked.insert_events([event], tracking=Tracking("Up", 1)) or []) == [1]
    two = [StoredEvent(Puppy("B").id, 1, "t", b"{}"), StoredEvent(Puppy("C").id, 1, "t", b"{}")]
    with pytest.raises(ValueError, match="second"):
        tracked.insert_events(two, tracking=Tracking("Up", 2))
    assert tracked.max_tracking_id("Up") == 1
    assert tracked.max_notification_id() == 1
    assert tracked.select_events(two[0].originator_id) == []
    assert tracked.select_events(event.originator_id) == [event]
