"""Settings that shape persistence: cipher, compressor, factory, and their errors."""

from __future__ import annotations

from uuid import uuid4

import pytest

from eventsourcing.application import Application
from eventsourcing.cipher import AESCipher, DecryptionError
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.domain import Aggregate, DomainEvent, event
from eventsourcing.persistence import (
    DataError,
    EventStore,
    InfrastructureFactory,
    JSONTranscoder,
    Mapper,
    default_transcodings,
)
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.utils import Environment, TopicError, retry


def json_transcoder() -> JSONTranscoder:
    """A transcoder that knows UUID, Decimal and datetime, as applications' do."""
    transcoder = JSONTranscoder()
    for transcoding in default_transcodings():
        transcoder.register(transcoding)
    return transcoder


class Diary(Aggregate):
    def __init__(self, owner):
        self.owner = owner
        self.entries = []

    @event("Written")
    def write(self, text):
        self.entries.append(text)


SECRET = "the butler did it " * 5

CIPHER_SETTINGS = {
    "CIPHER_TOPIC": "eventsourcing.cipher:AESCipher",
    "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
}


def saved_diary(env):
    app = Application(env=env)
    diary = Diary("me")
    diary.write(SECRET)
    app.save(diary)
    return app, diary.id


def stored(app, originator_id):
    return [
        (s.originator_version, s.topic, s.state) for s in app.recorder.select_events(originator_id)
    ]


def test_encrypted_and_compressed_on_every_store(persistence_env):
    env = dict(persistence_env, CIPHER_KEY=AESCipher.create_key(32), **CIPHER_SETTINGS)
    app, diary_id = saved_diary(env)
    assert isinstance(app.mapper.cipher, AESCipher)
    assert isinstance(app.mapper.compressor, ZlibCompressor)
    states = [state for _, _, state in stored(app, diary_id)]
    assert all(b"butler" not in s and b"owner" not in s for s in states)
    notification = app.notification_log.select(start=1, limit=10)[1]
    assert b"butler" not in notification.state
    assert app.repository.get(diary_id).entries == [SECRET]


def test_compressor_alone_shrinks_state(persistence_env):
    plain_app, plain_id = saved_diary(persistence_env)
    env = dict(persistence_env, COMPRESSOR_TOPIC="eventsourcing.compressor:ZlibCompressor")
    app, diary_id = saved_diary(env)
    assert len(stored(app, diary_id)[1][2]) < len(stored(plain_app, plain_id)[1][2])
    assert app.repository.get(diary_id).entries == [SECRET]


def test_wrong_cipher_key_raises_and_changes_nothing(persistence_env, durable):
    env = dict(persistence_env, CIPHER_KEY=AESCipher.create_key(32), **CIPHER_SETTINGS)
    app, diary_id = saved_diary(env)
    before = stored(app, diary_id)
    wrong_env = Environment("", dict(env, CIPHER_KEY=AESCipher.create_key(32)))
    wrong = EventStore(
        Mapper(json_transcoder(), compressor=ZlibCompressor(), cipher=AESCipher(wrong_env)),
        app.recorder,
    )
    with pytest.raises(DecryptionError, match="CIPHER_KEY"):
        list(wrong.get(diary_id))
    if durable:
        other = Application(env=dict(wrong_env))
        with pytest.raises(DecryptionError, match=f"{diary_id}.*CIPHER_KEY"):
            other.repository.get(diary_id)
    assert stored(app, diary_id) == before
    assert app.repository.get(diary_id).entries == [SECRET]


def test_cipher_topic_without_key_fails_at_construction(persistence_env):
    env = dict(persistence_env, CIPHER_TOPIC="eventsourcing.cipher:AESCipher")
    with pytest.raises(ValueError, match="CIPHER_KEY is not set"):
        Application(env=env)


def test_unknown_persistence_module_names_the_value():
    with pytest.raises(TopicError, match="'eventsourcing.nosuchstore'"):
        Application(env={"PERSISTENCE_MODULE": "eventsourcing.nosuchstore"})
    with pytest.raises(TopicError, match="'eventsourcing.domain'.*Factory"):
        Application(env={"PERSISTENCE_MODULE": "eventsourcing.domain"})


def test_persistence_module_may_be_prefixed_by_application_name():
    env = {"DIARIES_PERSISTENCE_MODULE": "eventsourcing.nosuchstore"}

    class Diaries(Application):
        pass

    with pytest.raises(TopicError, match="nosuchstore"):
        Diaries(env=env)
    Application(env=env)  # other applications are not affected


class Ping(DomainEvent):
    text: str


def test_factory_construct_and_event_store(persistence_env):
    factory = InfrastructureFactory.construct(Environment("", persistence_env))
    recorder = factory.application_recorder()
    store = factory.event_store(
        mapper=factory.mapper(transcoder=json_transcoder()), recorder=recorder
    )
    ping = Ping(
        originator_id=uuid4(), originator_version=1, timestamp=Ping.create_timestamp(), text="x"
    )
    store.put([ping])
    assert list(store.get(ping.originator_id)) == [ping]
    assert recorder.max_notification_id() == 1
    assert factory.is_snapshotting_enabled() is False
    factory.close()


def test_factory_construct_defaults_to_popo(monkeypatch):
    monkeypatch.delenv("PERSISTENCE_MODULE", raising=False)
    factory = InfrastructureFactory.construct()
    assert isinstance(factory.application_recorder(), POPOApplicationRecorder)


def test_undecodable_state_raises_data_error_naming_the_event():
    recorder = POPOApplicationRecorder()
    store = EventStore(Mapper(json_transcoder()), recorder)
    ping = Ping(
        originator_id=uuid4(), originator_version=1, timestamp=Ping.create_timestamp(), text="x"
    )
    store.put([ping])
    other = EventStore(Mapper(json_transcoder(), compressor=ZlibCompressor()), recorder)
    with pytest.raises(DataError, match=str(ping.originator_id)):
        list(other.get(ping.originator_id))


def test_environment_precedence(monkeypatch):
    monkeypatch.setenv("SETTING_X", "from os")

    class Shop(Application):
        env = {"SETTING_X": "from class", "SETTING_Y": "class only"}

    assert Shop().env.get("SETTING_X") == "from os"
    assert Shop(env={"SETTING_X": "given"}).env.get("SETTING_X") == "given"
    assert Shop(env={"SHOP_SETTING_X": "prefixed"}).env.get("SETTING_X") == "prefixed"
    assert Shop().env.get("SETTING_Y") == "class only"
    assert Shop().name == "Shop"


def test_retry():
    calls = []

    @retry(ValueError, max_attempts=2)
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("again")
        return "done"

    assert flaky() == "done" and len(calls) == 3

    @retry(KeyError, max_attempts=1)
    def always():
        calls.append(1)
        raise KeyError("no")

    calls.clear()
    with pytest.raises(KeyError):
        always()
    assert len(calls) == 2


def test_quick_record_constructors_make_the_same_frozen_records():
    from dataclasses import FrozenInstanceError

    from eventsourcing.persistence import (
        Notification,
        Recording,
        StoredEvent,
        Tracking,
        new_notification,
        new_recording,
        new_stored_event,
        new_tracking,
        notification_of,
    )

    originator_id = uuid4()
    stored = new_stored_event(originator_id, 3, "a.topic", b"{}")
    assert stored == StoredEvent(originator_id, 3, "a.topic", b"{}")
    assert type(stored) is StoredEvent
    notification = new_notification(originator_id, 3, "a.topic", b"{}", 7)
    assert notification == Notification(originator_id, 3, "a.topic", b"{}", 7)
    assert notification_of(stored, 7) == notification
    assert hash(notification) == hash(Notification(originator_id, 3, "a.topic", b"{}", 7))
    assert new_recording("event", notification) == Recording("event", notification)
    tracking = new_tracking("up", 9, 5)
    assert tracking == Tracking("up", 9, previous_notification_id=5)
    assert type(tracking) is Tracking and new_tracking("up", 1, None) == Tracking("up", 1)
    with pytest.raises(FrozenInstanceError):
        tracking.notification_id = 10  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        stored.topic = "changed"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        notification.id = 8  # type: ignore[misc]


def _json_as_ever(transcoder: JSONTranscoder, obj: object) -> bytes:
    """What json's own encoder writes, with the transcoder's custom types."""
    import json

    return json.dumps(
        obj, default=transcoder._encode_custom, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def test_event_states_are_written_as_json_writes_them():
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal
    from enum import IntEnum

    class Level(IntEnum):
        HIGH = 3

    class Label(str):
        pass

    transcoder = json_transcoder()
    when = datetime(2026, 11, 28, 2, 30, 5, 12, tzinfo=timezone.utc)
    states = [
        {},
        {"timestamp": when, "trick": "roll over"},
        {"timestamp": when.replace(microsecond=0), "naive": datetime(2026, 1, 1)},
        {"offset": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))},
        {"quote": 'say "hi"\\ \n\t\x00 é 😀', "é": "ü", 'k"ey': 1},
        {"n": 0, "big": 10**30, "neg": -7, "level": Level.HIGH, "yes": True, "no": False},
        {"none": None, "f": 1.5, "nan": float("nan"), "inf": float("-inf"), "label": Label("x")},
        {"id": uuid4(), "price": Decimal("1.10"), "items": [1, "a", {"b": [when]}], "t": (1, 2)},
        {1: "int key", "s": "str key"},
        {None: 1, True: 2, 2.5: 3},
    ]
    for state in states + states:  # (the second time, with the member names kept)
        assert transcoder.encode(state) == _json_as_ever(transcoder, state), state
        assert transcoder.encode([state]) == _json_as_ever(transcoder, [state])


def test_a_datetime_transcoding_of_ones_own_is_used_by_the_quick_encoding():
    from datetime import datetime, timezone

    from eventsourcing.persistence import Transcoding

    class DatetimeAsTimestamp(Transcoding):
        type = datetime
        name = "datetime_ts"

        def encode(self, obj: datetime) -> float:
            return obj.timestamp()

        def decode(self, data: float) -> datetime:
            return datetime.fromtimestamp(data, timezone.utc)

    transcoder = JSONTranscoder()
    transcoder.register(DatetimeAsTimestamp())
    when = datetime(2026, 11, 28, 2, 30, 5, tzinfo=timezone.utc)
    encoded = transcoder.encode({"timestamp": when})
    assert encoded == b'{"timestamp":{"_type_":"datetime_ts","_data_":1795833005.0}}'
    assert transcoder.decode(encoded) == {"timestamp": when}


def test_a_circular_state_is_refused_as_json_refuses_it():
    state: dict[str, object] = {"name": "loop"}
    state["self"] = [state]
    with pytest.raises(ValueError, match="Circular reference"):
        JSONTranscoder().encode(state)


def test_timestamps_are_written_as_isoformat_writes_them():
    import random
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from eventsourcing.persistence import _isoformat

    rng = random.Random(7)
    start = datetime(1, 1, 1, tzinfo=timezone.utc)
    moments = [
        datetime(2026, 11, 28, 2, 30, 5, 1, tzinfo=timezone.utc),
        datetime(2026, 11, 28, 2, 30, 5, 999_999, tzinfo=timezone.utc),
        datetime(2026, 11, 28, 2, 30, 6, tzinfo=timezone.utc),  # no microseconds
        datetime(99, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
        datetime(2026, 11, 28, 2, 30, 5, 12),  # naive
        datetime(2026, 11, 28, 2, 30, 5, 12, tzinfo=ZoneInfo("Europe/London")),
        datetime(2026, 11, 28, 2, 30, 5, 12, tzinfo=timezone(timedelta(hours=5))),
    ]
    moments += [start + timedelta(microseconds=rng.randrange(2**58)) for _ in range(2000)]
    base = moments[0]
    for field in ("year", "month", "day", "hour", "minute", "second"):
        moments += [base.replace(**{field: getattr(base, field) + 1})]  # one field apart
    now = datetime.now(timezone.utc)
    moments += [now + timedelta(microseconds=rng.randrange(3_000_000)) for _ in range(2000)]
    for moment in moments + moments:  # (the second time, from the texts kept)
        assert _isoformat(moment) == moment.isoformat()
