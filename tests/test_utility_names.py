"""Documented names of utils, compressor, cipher and the factories; ProcessingEvent.save."""

from __future__ import annotations

import warnings
import zlib

import pytest

import eventsourcing.postgres
import eventsourcing.sqlite
from eventsourcing.application import ProcessingEvent
from eventsourcing.cipher import AESCipher, Cipher
from eventsourcing.compressor import Compressor, ZlibCompressor
from eventsourcing.persistence import InfrastructureFactory, Mapper, Transcoder
from eventsourcing.popo import POPOFactory
from eventsourcing.utils import construct_topic, get_topic, resolve_topic, reversed_keys
from examples.dogschool import Dog


def test_construct_topic_is_module_and_qualname_unless_the_class_says_its_topic() -> None:
    assert construct_topic(Dog.TrickAdded) == "examples.dogschool:Dog.TrickAdded"
    assert resolve_topic(construct_topic(Dog)) is Dog
    assert construct_topic(get_topic) == "eventsourcing.utils:get_topic"

    class Renamed:
        TOPIC = "somewhere:Else"

    assert construct_topic(Renamed) == "somewhere:Else"
    with pytest.raises(TypeError, match="Cannot make a topic for 3"):
        construct_topic(3)


def test_reversed_keys_gives_the_keys_last_first() -> None:
    assert list(reversed_keys({"a": 1, "b": 2, "c": 3})) == ["c", "b", "a"]
    assert list(reversed_keys({})) == []


def test_compressor_and_cipher_are_named_where_their_classes_are() -> None:
    class Identity(Compressor):
        def compress(self, data: bytes) -> bytes:
            return data

        def decompress(self, data: bytes) -> bytes:
            return data

    class Reversing(Cipher):
        def __init__(self, environment: object) -> None:
            self.environment = environment

        def encrypt(self, plaintext: bytes) -> bytes:
            return plaintext[::-1]

        def decrypt(self, ciphertext: bytes) -> bytes:
            return ciphertext[::-1]

    transcoder: Transcoder = POPOFactory().transcoder()
    mapper = Mapper(transcoder, compressor=Identity(), cipher=Reversing({}))
    dog = Dog("Fido")
    event = dog.collect_events()[0]
    stored = mapper.to_stored_event(event)
    assert mapper.to_domain_event(stored) == event
    assert isinstance(ZlibCompressor().compress(b"x"), bytes)
    assert ZlibCompressor().decompress(zlib.compress(b"x")) == b"x"
    assert AESCipher.__module__ == "eventsourcing.cipher"


FACTORY_SETTINGS = {
    InfrastructureFactory: [
        "PERSISTENCE_MODULE",
        "TRANSCODER_TOPIC",
        "MAPPER_TOPIC",
        "CIPHER_TOPIC",
        "CIPHER_KEY",
        "COMPRESSOR_TOPIC",
        "IS_SNAPSHOTTING_ENABLED",
    ],
    POPOFactory: ["ORIGINATOR_ID_TYPE"],
    eventsourcing.sqlite.Factory: [
        "SQLITE_DBNAME",
        "SQLITE_LOCK_TIMEOUT",
        "SQLITE_SYNCHRONOUS",
        "SQLITE_RETRY_TIMEOUT",
        "RETRY_TIMEOUT",
        "ORIGINATOR_ID_TYPE",
        "CREATE_TABLE",
    ],
    eventsourcing.postgres.PostgresFactory: [
        "POSTGRES_DBNAME",
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_SCHEMA",
        "POSTGRES_CONNECT_TIMEOUT",
        "POSTGRES_POOL_SIZE",
        "POSTGRES_MAX_OVERFLOW",
        "POSTGRES_CONN_MAX_AGE",
        "POSTGRES_PRE_PING",
        "POSTGRES_LOCK_TIMEOUT",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
        "POSTGRES_SYNCHRONOUS_COMMIT",
        "POSTGRES_URL",
        "POSTGRES_APPLICATION_NAME",
        "POSTGRES_RETRY_TIMEOUT",
        "POSTGRES_GET_PASSWORD_TOPIC",
        "POSTGRES_MAX_WAITING",
        "POSTGRES_ENABLE_DB_FUNCTIONS",
        "RETRY_TIMEOUT",
        "ORIGINATOR_ID_TYPE",
        "CREATE_TABLE",
    ],
}


@pytest.mark.parametrize("factory_cls", list(FACTORY_SETTINGS), ids=lambda cls: cls.__name__)
def test_factories_name_the_settings_they_read_as_class_attributes(factory_cls: type) -> None:
    for name in FACTORY_SETTINGS[factory_cls]:
        assert getattr(factory_cls, name) == name, f"{factory_cls.__name__}.{name}"
    # Each store's factory also has the settings every factory reads.
    assert factory_cls.PERSISTENCE_MODULE == "PERSISTENCE_MODULE"


def test_processing_event_save_is_the_deprecated_name_of_collect_events() -> None:
    processing_event = ProcessingEvent()
    dog = Dog("Fido")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        processing_event.save(dog)
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "collect_events" in str(caught[0].message)
    assert caught[0].filename == __file__  # the warning points at the caller
    assert [type(e).__name__ for e in processing_event.events] == ["Registered"]
    assert processing_event.aggregates == {dog.id: dog}
