"""Base test cases for persistence extensions: subclass them to test your own store.

    from eventsourcing.tests.persistence import ApplicationRecorderTestCase

    class TestMyApplicationRecorder(ApplicationRecorderTestCase):
        def create_recorder(self):
            recorder = MyApplicationRecorder(...)
            recorder.create_table()
            return recorder

    del ApplicationRecorderTestCase  # so the runner does not collect the base itself

The recorder cases live in a private module and are re-exported here; the factory,
mapper and transcoder cases are below. The tests use only public, documented API.
"""

from __future__ import annotations

import importlib.util
import zlib
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar, cast
from unittest import TestCase
from uuid import UUID, uuid4

from eventsourcing.cipher import AESCipher
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DatetimeAsISO,
    DecimalAsStr,
    InfrastructureFactory,
    JSONTranscoder,
    Mapper,
    ProcessRecorder,
    TrackingRecorder,
    Transcoder,
    Transcoding,
    UUIDAsHex,
)
from eventsourcing.tests._recorder_cases import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    NonInterleavingNotificationIDsBaseCase,
    ProcessRecorderTestCase,
    RecorderTestCase,
    TrackingRecorderTestCase,
    tmpfile_uris,
)
from eventsourcing.utils import Environment, get_topic

__all__ = [
    "AggregateRecorderTestCase",
    "ApplicationRecorderTestCase",
    "CustomType1",
    "CustomType1AsDict",
    "CustomType2",
    "CustomType2AsDict",
    "InfrastructureFactoryTestCase",
    "MyClass",
    "MyInt",
    "MyList",
    "MyStr",
    "Mydict",
    "NonInterleavingNotificationIDsBaseCase",
    "ProcessRecorderTestCase",
    "RecorderTestCase",
    "TrackingRecorderTestCase",
    "TranscoderTestCase",
    "tmpfile_uris",
]

TFactory = TypeVar("TFactory", bound=InfrastructureFactory)

# AES needs the optional 'cryptography' package: the cipher tests skip without it.
HAVE_CRYPTOGRAPHY = importlib.util.find_spec("cryptography") is not None


class InfrastructureFactoryTestCase(ABC, TestCase, Generic[TFactory]):
    """A store's factory: the class ``PERSISTENCE_MODULE`` selects, its mapper
    (compressor, cipher, per-application keys) and the recorders it makes.

    A subclass sets ``self.env`` (an ``Environment`` naming its persistence module
    and settings) in ``setUp`` before calling ``super().setUp()``, and says which
    classes to expect. Tests change ``self.env``, which the factory reads.
    """

    env: Environment

    @abstractmethod
    def expected_factory_class(self) -> type[TFactory]:
        """The class ``InfrastructureFactory.construct(env)`` should make."""

    @abstractmethod
    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        """The class of ``factory.aggregate_recorder()``."""

    @abstractmethod
    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        """The class of ``factory.application_recorder()``."""

    @abstractmethod
    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        """The class of ``factory.tracking_recorder()``."""

    @abstractmethod
    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        """A subclass of the store's tracking recorder (as a materialised view is)."""

    @abstractmethod
    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        """The class of ``factory.process_recorder()``."""

    def setUp(self) -> None:
        self.factory = cast(TFactory, InfrastructureFactory.construct(self.env))
        self.assertIsInstance(self.factory, self.expected_factory_class())
        self.transcoder = JSONTranscoder()
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            self.transcoder.register(transcoding)

    def tearDown(self) -> None:
        self.factory.close()

    def _skip_without_cryptography(self) -> None:
        if not HAVE_CRYPTOGRAPHY:
            self.skipTest("AESCipher needs the 'cryptography' package")

    def test_mapper(self) -> None:
        mapper: Mapper[Any] = self.factory.mapper(transcoder=self.transcoder)
        self.assertIsInstance(mapper, Mapper)
        self.assertIsNone(mapper.cipher)
        self.assertIsNone(mapper.compressor)
        self._assert_round_trip(mapper)

    def test_mapper_with_compressor(self) -> None:
        # A compressor named by the topic of its class: an instance of it.
        self.env[self.factory.COMPRESSOR_TOPIC] = get_topic(ZlibCompressor)
        mapper: Mapper[Any] = self.factory.mapper(transcoder=self.transcoder)
        self.assertIsInstance(mapper.compressor, ZlibCompressor)
        self.assertIsNone(mapper.cipher)
        self._assert_round_trip(mapper)

        # A compressor named by a module (with compress and decompress): the module.
        self.env[self.factory.COMPRESSOR_TOPIC] = "zlib"
        mapper = self.factory.mapper(transcoder=self.transcoder)
        self.assertIs(mapper.compressor, zlib)
        self.assertIsNone(mapper.cipher)
        self._assert_round_trip(mapper)

    def test_mapper_with_cipher(self) -> None:
        self._skip_without_cryptography()
        # A cipher topic without a key is a configuration error.
        self.env[self.factory.CIPHER_TOPIC] = get_topic(AESCipher)
        with self.assertRaises(EnvironmentError):
            self.factory.mapper(transcoder=self.transcoder)

        # A key without a topic means AES.
        del self.env[self.factory.CIPHER_TOPIC]
        self.env[AESCipher.CIPHER_KEY] = AESCipher.create_key(16)
        mapper: Mapper[Any] = self.factory.mapper(transcoder=self.transcoder)
        self.assertIsNotNone(mapper.cipher)
        self.assertIsNone(mapper.compressor)
        self._assert_round_trip(mapper)

    def test_mapper_with_cipher_and_compressor(self) -> None:
        self._skip_without_cryptography()
        self.env[self.factory.COMPRESSOR_TOPIC] = get_topic(ZlibCompressor)
        self.env[self.factory.CIPHER_TOPIC] = get_topic(AESCipher)
        self.env[AESCipher.CIPHER_KEY] = AESCipher.create_key(16)
        mapper: Mapper[Any] = self.factory.mapper(transcoder=self.transcoder)
        self.assertIsNotNone(mapper.cipher)
        self.assertIsNotNone(mapper.compressor)
        self._assert_round_trip(mapper)

    def test_mapper_with_wrong_cipher_key(self) -> None:
        self._skip_without_cryptography()
        # Each application reads its own key (prefixed by its name).
        self.env.name = "App1"
        self.env[self.factory.CIPHER_TOPIC] = get_topic(AESCipher)
        self.env["APP1_" + AESCipher.CIPHER_KEY] = AESCipher.create_key(16)
        self.env["APP2_" + AESCipher.CIPHER_KEY] = AESCipher.create_key(16)
        mapper1: Mapper[Any] = self.factory.mapper(transcoder=self.transcoder)
        stored_event = self._assert_round_trip(mapper1)

        self.env.name = "App2"
        mapper2: Mapper[Any] = self.factory.mapper(transcoder=self.transcoder)
        with self.assertRaises(ValueError):
            mapper2.to_domain_event(stored_event)

    def _assert_round_trip(self, mapper: Mapper[Any]) -> Any:
        """Map a domain event to a stored event and back; return the stored event."""
        event_class: Any = DomainEvent  # constructed as users' own events are
        domain_event = event_class(
            originator_id=uuid4(),
            originator_version=1,
            timestamp=DomainEvent.create_timestamp(),
        )
        stored_event = mapper.to_stored_event(domain_event)
        self.assertIsInstance(stored_event.state, bytes)
        copy = mapper.to_domain_event(stored_event)
        self.assertEqual(copy.originator_id, domain_event.originator_id)
        self.assertEqual(copy.originator_version, domain_event.originator_version)
        return stored_event

    def test_create_aggregate_recorder(self) -> None:
        self._check_recorders(
            self.factory.aggregate_recorder,
            self.expected_aggregate_recorder_class(),
            AggregateRecorder,
        )

    def test_create_application_recorder(self) -> None:
        self._check_recorders(
            self.factory.application_recorder,
            self.expected_application_recorder_class(),
            ApplicationRecorder,
        )

    def test_create_tracking_recorder(self) -> None:
        self._check_recorders(
            self.factory.tracking_recorder,
            self.expected_tracking_recorder_class(),
            TrackingRecorder,
        )
        # A subclass given as the argument, or named by TRACKING_RECORDER_TOPIC.
        subclass = self.tracking_recorder_subclass()
        self.assertIs(type(self.factory.tracking_recorder(subclass)), subclass)
        self.factory.env[self.factory.TRACKING_RECORDER_TOPIC] = get_topic(subclass)
        self.assertIs(type(self.factory.tracking_recorder()), subclass)

    def test_create_process_recorder(self) -> None:
        self._check_recorders(
            self.factory.process_recorder, self.expected_process_recorder_class(), ProcessRecorder
        )

    def _check_recorders(self, make: Any, expected: type, protocol: type) -> None:
        """The recorder made is of the expected class, with or without CREATE_TABLE."""
        recorder = make()
        self.assertIs(type(recorder), expected)
        self.assertIsInstance(recorder, protocol)
        # Tables already made: the factory may be told not to create them.
        self.env["CREATE_TABLE"] = "f"
        self.assertIs(type(make()), expected)


# ---------------------------------------------------------------------------
# Transcoders. Custom types for the tests of TranscoderTestCase; a subclass's
# construct_transcoder() registers CustomType1AsDict, CustomType2AsDict and UUIDAsHex.


class CustomType1:
    def __init__(self, value: UUID):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


class CustomType2:
    def __init__(self, value: CustomType1):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


def _named(cls: type, value_repr: str) -> str:
    return f"{cls.__name__}({value_repr})"


class Mydict(dict[Any, Any]):  # noqa: PLW1641
    """Equal only to another Mydict: a transcoder must keep the subclass."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and dict.__eq__(self, other)

    def __repr__(self) -> str:
        return _named(type(self), dict.__repr__(self))


class MyList(list[Any]):  # noqa: PLW1641
    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and list.__eq__(self, other)

    def __repr__(self) -> str:
        return _named(type(self), list.__repr__(self))


class MyStr(str):
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and str.__eq__(self, other)

    def __hash__(self) -> int:
        return str.__hash__(self)

    def __repr__(self) -> str:
        return _named(type(self), str.__repr__(self))


class MyInt(int):
    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and int.__eq__(self, other)

    def __hash__(self) -> int:
        return int.__hash__(self)

    def __repr__(self) -> str:
        return _named(type(self), int.__repr__(self))


class MyClass:
    """A type no transcoding is registered for."""


class CustomType1AsDict(Transcoding):
    type = CustomType1
    name = "custom_type1_as_dict"

    def encode(self, obj: CustomType1) -> UUID:
        return obj.value

    def decode(self, data: UUID) -> CustomType1:
        if not isinstance(data, UUID):
            raise TypeError(f"expected a UUID, got {data!r}")
        return CustomType1(value=data)


class CustomType2AsDict(Transcoding):
    type = CustomType2
    name = "custom_type2_as_dict"

    def encode(self, obj: CustomType2) -> CustomType1:
        return obj.value

    def decode(self, data: CustomType1) -> CustomType2:
        if not isinstance(data, CustomType1):
            raise TypeError(f"expected a CustomType1, got {data!r}")
        return CustomType2(data)


class TranscoderTestCase(TestCase):
    """A transcoder: compact JSON-like bytes that decode to equal objects.

    A subclass implements ``construct_transcoder()`` (registering the custom
    transcodings above) and skips what its transcoder does not keep (tuples, the
    subclasses of builtins).
    """

    def setUp(self) -> None:
        if type(self).construct_transcoder is TranscoderTestCase.construct_transcoder:
            self.skipTest("the base case itself (collected where it was imported)")
        self.transcoder = self.construct_transcoder()

    def construct_transcoder(self) -> Transcoder:
        raise NotImplementedError("return the transcoder under test")

    def assert_round_trip(self, obj: Any, expected_data: bytes | None = None) -> bytes:
        data = self.transcoder.encode(obj)
        self.assertIsInstance(data, bytes)
        if expected_data is not None:
            self.assertEqual(data, expected_data)
        copy = self.transcoder.decode(data)
        self.assertEqual(copy, obj)
        self.assertIs(type(copy), type(obj))
        return data

    def test_str(self) -> None:
        self.assert_round_trip("a", b'"a"')
        self.assert_round_trip("abc", b'"abc"')
        self.assert_round_trip("a'b", b'"a\'b"')
        self.assert_round_trip('a"b', b'"a\\"b"')
        # Not escaped to ASCII: UTF-8 as it is.
        text = "\U0001f408 \u54c8\u54c8"
        self.assert_round_trip(text, b'"' + text.encode() + b'"')
        # Data written escaped to ASCII (by older versions) still decodes.
        self.assertEqual(self.transcoder.decode(b'"\\ud83d\\udc08 \\u54c8\\u54c8"'), text)

    def test_dict(self) -> None:
        self.assert_round_trip({}, b"{}")
        self.assert_round_trip({"a": 1}, b'{"a":1}')
        self.assert_round_trip({"a": 1, "b": 2}, b'{"a":1,"b":2}')
        self.assert_round_trip({"a": {}}, b'{"a":{}}')
        self.assert_round_trip({"a": {}, "b": {}}, b'{"a":{},"b":{}}')
        self.assert_round_trip({"a": {"b": {}}}, b'{"a":{"b":{}}}')
        self.assert_round_trip({"a": {"b": {"c": 1}}}, b'{"a":{"b":{"c":1}}}')

    def test_dict_with_len_2_and__data_(self) -> None:
        # Keys a transcoder uses for its own envelopes, in a user's dict.
        self.assert_round_trip({"_data_": 1, "something_else": 2})

    def test_dict_with_len_2_and__type_(self) -> None:
        self.assert_round_trip({"_type_": 1, "something_else": 2})

    def test_dict_subclass(self) -> None:
        self.assert_round_trip(Mydict({"a": 1}))

    def test_list_subclass(self) -> None:
        self.assert_round_trip(MyList([("a", 1)]))

    def test_str_subclass(self) -> None:
        self.assert_round_trip(MyStr("a"))

    def test_int_subclass(self) -> None:
        self.assert_round_trip(MyInt(3))

    def test_tuple(self) -> None:
        for obj in [(), ((),), ((1, 2),), (("a", "b"),), ((1, "a"),)]:
            self.assert_round_trip(obj)

    def test_list(self) -> None:
        for obj in [[], [[]], [[1, 2]], [["a", "b"]], [[1, "a"]]]:
            self.assert_round_trip(obj)

    def test_mixed(self) -> None:
        for obj in [[(1, "a"), {"b": 2}], ([1, "a"], {"b": 2}), {"a": (1, 2), "b": [3, 4]}]:
            self.assert_round_trip(obj)

    def test_custom_type_in_dict(self) -> None:
        value = UUID("b2723fe2c01a40d2875ea3aac6a09ff5")
        self.assert_round_trip({"a": CustomType2(CustomType1(value))})

    def test_nested_custom_type(self) -> None:
        value = UUID("b2723fe2c01a40d2875ea3aac6a09ff5")
        copy = self.transcoder.decode(self.transcoder.encode(CustomType2(CustomType1(value))))
        self.assertIsInstance(copy, CustomType2)
        self.assertIsInstance(copy.value, CustomType1)
        self.assertIsInstance(copy.value.value, UUID)
        self.assertEqual(copy.value.value, value)

    def test_custom_type_error(self) -> None:
        # No transcoding for the type: a TypeError that names it, nested or not.
        for obj in (MyClass(), {"a": MyClass()}):
            with self.assertRaises(TypeError) as raised:
                self.transcoder.encode(obj)
            self.assertIn(f"{MyClass.__module__}.{MyClass.__qualname__}", str(raised.exception))
        # Data of a transcoding not registered: a TypeError that names it.
        with self.assertRaises(TypeError) as raised:
            self.transcoder.decode(b'{"_type_":"custom_type3_as_dict","_data_":""}')
        self.assertIn("custom_type3_as_dict", str(raised.exception))
