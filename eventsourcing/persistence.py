"""Persistence: records, transcoding, the mapper, the event store, recorder interfaces.

A domain event goes down this path on its way to storage::

    domain event -> Mapper (transcode, compress, encrypt) -> StoredEvent -> Recorder

and comes back up the same path reversed. Stores (``popo``, ``sqlite``,
``postgres``) implement the recorder interfaces defined here.
"""

from __future__ import annotations

import inspect
import json
import json.scanner
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from types import GenericAlias, ModuleType
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, cast
from uuid import UUID

from eventsourcing._subscription import BackoffWaker as BackoffWaker
from eventsourcing._subscription import Beacon as Beacon
from eventsourcing._subscription import BeaconWaker as BeaconWaker
from eventsourcing._subscription import ListenNotifySubscription as ListenNotifySubscription
from eventsourcing._subscription import Subscription as Subscription
from eventsourcing._subscription import Waker as Waker
from eventsourcing._subscription import listen_in_process as listen_in_process
from eventsourcing.utils import (
    Environment,
    EventSourcingError,
    TopicError,
    get_topic,
    resolve_topic,
    strtobool,
    upcast_state,
)

if TYPE_CHECKING:
    from eventsourcing.dcb.api import DCBRecorder

# ---------------------------------------------------------------------------
# Errors, shaped like the DB-API's so that every store raises the same ones.


class PersistenceError(EventSourcingError):
    """Base class for every error raised by the persistence layer."""


class InterfaceError(PersistenceError):
    """The database interface was misused (for example a closed connection)."""


class DatabaseError(PersistenceError):
    """An error reported by the database."""


class DataError(DatabaseError):
    """Stored data could not be processed (bad value, failed decoding)."""


class OperationalError(DatabaseError):
    """The database could not do its work (lost connection, lock timeout, ...)."""


class IntegrityError(DatabaseError):
    """A constraint was violated; nothing of the failed write was recorded."""


class InternalError(DatabaseError):
    """The database reported an internal error."""


class ProgrammingError(DatabaseError):
    """A table is missing, a statement is wrong, or similar."""


class NotSupportedError(DatabaseError):
    """The database does not support what was asked."""


class RecordConflictError(IntegrityError):
    """An event with this originator id and version is already recorded.

    Raised when a stale copy of an aggregate is saved (optimistic concurrency).
    """


class TrackingConflictError(IntegrityError):
    """This upstream position was already recorded: the event was processed before."""


class WaitInterruptedError(PersistenceError):
    """A wait for a tracking position was interrupted (its ``interrupt`` event was set)."""


class OriginatorIDTypeError(PersistenceError, TypeError):
    """An originator id of a type the store does not keep (see ``ORIGINATOR_ID_TYPE``)."""


# The types of originator ids a store may keep, by ORIGINATOR_ID_TYPE (the first is the default).
ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"
ORIGINATOR_ID_TYPES: dict[str, type] = {"uuid": UUID, "text": str}


def originator_id_type(value: str | None) -> type:
    """The type of ids that ``ORIGINATOR_ID_TYPE=value`` selects (UUID if unset)."""
    if value is None or value == "":
        return UUID
    try:
        return ORIGINATOR_ID_TYPES[
            checked_mode(value, list(ORIGINATOR_ID_TYPES), ORIGINATOR_ID_TYPE)
        ]
    except ValueError as error:
        raise OSError(str(error)) from None


def other_form_of_id(originator_id: object) -> Any:
    """The other form of an id: a UUID for a string that spells one (in any form
    ``UUID()`` reads), the string form for a UUID; None for anything else."""
    if isinstance(originator_id, UUID):
        return str(originator_id)
    if isinstance(originator_id, str):
        try:
            return UUID(originator_id)
        except ValueError:
            return None
    return None


def selected_id(originator_id: object, id_type: type, store: str) -> Any:
    """The id to select events by, in a store that keeps ``id_type`` ids: where ids
    are UUIDs, a UUID's string form selects the UUID's events, as the 9.x stores
    let it. Any other id of the wrong type is refused (``OriginatorIDTypeError``)."""
    if isinstance(originator_id, id_type):
        return originator_id
    if id_type is UUID and isinstance(originator_id, str):
        other = other_form_of_id(originator_id)
        if other is not None:
            return other
    raise wrong_id_type(originator_id, id_type, store)


def wrong_id_type(originator_id: object, id_type: type, store: str) -> OriginatorIDTypeError:
    """The error for an id that ``store``, which keeps ``id_type`` ids, cannot take."""
    setting = "uuid" if id_type is UUID else "text"
    hint = (
        " (give the UUID, not its string form)"
        if id_type is UUID and isinstance(originator_id, str)
        else ""
    )
    return OriginatorIDTypeError(
        f"Originator id {originator_id!r} is a {type(originator_id).__name__}, but {store} "
        f"keeps {id_type.__name__} ids (ORIGINATOR_ID_TYPE={setting}){hint}"
    )


class TranscodingNotRegisteredError(EventSourcingError, TypeError):
    """A value of a type (or data of a name) no registered transcoding handles."""


class MapperDeserialisationError(DataError, ValueError):
    """The state of a stored event could not be turned back into a domain event."""


# ---------------------------------------------------------------------------
# Records.


# What a database operation was doing, for its error message: a string, or a
# function making one (formatting a message on every call, for the rare error, is slow).
What = str | Callable[[], str]


def describe(what: What) -> str:
    return what if isinstance(what, str) else what()


def inserting(
    table_name: str, stored_events: Sequence[StoredEvent], tracking: Tracking | None = None
) -> What:
    """What an insert is doing, said only if it fails."""

    def what() -> str:
        text = f"Inserting {len(stored_events)} event(s) into {table_name!r}"
        if tracking is not None:
            text += f" with tracking {tracking.application_name!r} {tracking.notification_id}"
        return text

    return what


def checked_mode(value: str, modes: Sequence[str], setting: str) -> str:
    """``value`` as it is spelled in ``modes`` (compared in any case), or ValueError."""
    for mode in modes:
        if value.lower() == mode.lower():
            return mode
    raise ValueError(f"{setting} must be one of {', '.join(modes)}, not {value!r}")


# Records have slots: there are many of them (one or two per event recorded or
# read), and a slotted object is smaller and quicker to make than one with a dict.


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A domain event as it is recorded: its identity, its topic and its state.

    (``originator_id`` is a str on stores whose ``ORIGINATOR_ID_TYPE`` is text.)
    """

    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


@dataclass(frozen=True, slots=True)
class Notification(StoredEvent):
    """A stored event with its position (``id``) in an application's notification log."""

    id: int


@dataclass(frozen=True, slots=True)
class Tracking:
    """The position up to which a follower has processed an upstream application's log.

    ``previous_notification_id``, if given, is the position the work started from
    (0 for none): the record is refused unless that is still the recorded
    position, so two processes that processed overlapping batches cannot both
    record them.
    """

    application_name: str
    notification_id: int
    previous_notification_id: int | None = None


# Quick constructors for the paths that make a record per event. A frozen
# dataclass's __init__ sets each field through object.__setattr__; setting the
# slots through their own descriptors makes the same record in about 60% of the
# instructions. Every field is given, in order; nothing is checked.
_new = object.__new__


def _slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The setter of the slot that instances of ``cls`` read ``name`` from."""
    owner = next(klass for klass in cls.__mro__ if name in vars(klass))
    return cast(Callable[[Any, Any], None], vars(owner)[name].__set__)


_set_originator_id = _slot_setter(StoredEvent, "originator_id")
_set_originator_version = _slot_setter(StoredEvent, "originator_version")
_set_topic = _slot_setter(StoredEvent, "topic")
_set_state = _slot_setter(StoredEvent, "state")
# Python 3.10 gives a slotted dataclass subclass slots of its own for its base's
# fields too, and reads them there; from 3.11 these are the base's setters above.
_set_notification_originator_id = _slot_setter(Notification, "originator_id")
_set_notification_originator_version = _slot_setter(Notification, "originator_version")
_set_notification_topic = _slot_setter(Notification, "topic")
_set_notification_state = _slot_setter(Notification, "state")
_set_notification_id = _slot_setter(Notification, "id")


def new_stored_event(
    originator_id: UUID | str, originator_version: int, topic: str, state: bytes
) -> StoredEvent:
    stored = _new(StoredEvent)
    _set_originator_id(stored, originator_id)
    _set_originator_version(stored, originator_version)
    _set_topic(stored, topic)
    _set_state(stored, state)
    return stored


def new_notification(
    originator_id: UUID | str, originator_version: int, topic: str, state: bytes, id: int
) -> Notification:
    notification = _new(Notification)
    _set_notification_originator_id(notification, originator_id)
    _set_notification_originator_version(notification, originator_version)
    _set_notification_topic(notification, topic)
    _set_notification_state(notification, state)
    _set_notification_id(notification, id)
    return notification


def notification_of(stored: StoredEvent, id: int) -> Notification:
    """The notification a stored event became, at position ``id``."""
    notification = _new(Notification)  # (as new_notification, one call less per event)
    _set_notification_originator_id(notification, stored.originator_id)
    _set_notification_originator_version(notification, stored.originator_version)
    _set_notification_topic(notification, stored.topic)
    _set_notification_state(notification, stored.state)
    _set_notification_id(notification, id)
    return notification


_set_application_name = _slot_setter(Tracking, "application_name")
_set_tracked_id = _slot_setter(Tracking, "notification_id")
_set_previous_id = _slot_setter(Tracking, "previous_notification_id")


def new_tracking(
    application_name: str, notification_id: int, previous_notification_id: int | None
) -> Tracking:
    tracking = _new(Tracking)
    _set_application_name(tracking, application_name)
    _set_tracked_id(tracking, notification_id)
    _set_previous_id(tracking, previous_notification_id)
    return tracking


def tracking_conflict(tracking: Tracking, position: int | None) -> str | None:
    """Why ``tracking`` cannot be recorded over ``position`` (None if it can).

    A position only moves forwards, and only from where the work began.
    """
    if position is not None and tracking.notification_id <= position:
        return (
            f"Notification {tracking.notification_id} of {tracking.application_name!r} "
            f"is already processed (position {position}); nothing was recorded"
        )
    previous = tracking.previous_notification_id
    if previous is not None and (position or 0) != previous:
        return (
            f"Tracking of {tracking.application_name!r} moved to {position} while a batch "
            f"from {previous} was processed elsewhere; nothing was recorded"
        )
    return None


# ---------------------------------------------------------------------------
# Transcoding: domain event state <-> bytes.


class Transcoding(ABC):
    """How one type is written to, and read back from, the transcoder's format."""

    type: type
    name: str

    @abstractmethod
    def encode(self, obj: Any) -> Any:
        """Return a value the transcoder can write (may itself hold custom types)."""

    @abstractmethod
    def decode(self, data: Any) -> Any:
        """Return the object that ``encode`` was given."""


class Transcoder(ABC):
    """Turns an object into bytes and back."""

    @abstractmethod
    def encode(self, obj: Any) -> bytes:
        """Return bytes that ``decode`` turns back into ``obj``."""

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """Return the object that was encoded."""

    def register(self, transcoding: Transcoding) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not take transcodings")


class UUIDAsHex(Transcoding):
    type = UUID
    name = "uuid_hex"

    def encode(self, obj: UUID) -> str:
        return obj.hex

    def decode(self, data: str) -> UUID:
        return UUID(data)


class DecimalAsStr(Transcoding):
    type = Decimal
    name = "decimal_str"

    def encode(self, obj: Decimal) -> str:
        return str(obj)

    def decode(self, data: str) -> Decimal:
        return Decimal(data)


class DatetimeAsISO(Transcoding):
    type = datetime
    name = "datetime_iso"

    def encode(self, obj: datetime) -> str:
        return _isoformat(obj)

    def decode(self, data: str) -> datetime:
        return datetime.fromisoformat(data)


_UTC = timezone.utc
_second_texts: dict[tuple[int, ...], str] = {}


def _isoformat(moment: datetime) -> str:
    """``moment.isoformat()``, in about half the time for an event's usual UTC
    timestamp: formatting the numbers is the cost, and the text up to the second
    is shared by the events of that second, so it is kept."""
    microsecond = moment.microsecond
    if moment.tzinfo is not _UTC or not microsecond:
        return moment.isoformat()
    second = (moment.second, moment.minute, moment.hour, moment.day, moment.month, moment.year)
    text = _second_texts.get(second)
    if text is None:
        if len(_second_texts) >= 64:
            _second_texts.clear()  # (a clock moves on: only the last seconds matter)
        text = _second_texts[second] = moment.replace(microsecond=0, tzinfo=None).isoformat()
    return f"{text}.{microsecond:06d}+00:00"


_TYPE_KEY = "_type_"
_DATA_KEY = "_data_"
_encode_string: Callable[[str], str] = json.encoder.encode_basestring  # (C, quoted, escaped)


def default_transcodings() -> list[Transcoding]:
    """The transcodings of the types every application's events use."""
    return [UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()]


def _c_json_encoder(default: Callable[[Any], Any]) -> Callable[[Any, int], Any] | None:
    """json's C encoder, made once: ``JSONEncoder.encode`` makes one on every call.

    Same output as ``JSONEncoder(separators=(",", ":"), ensure_ascii=False)``.
    Without the check for circular references (whose table cannot be shared
    between threads): a cycle ends in RecursionError instead. None where the C
    encoder is missing.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    encode_string = json.encoder.encode_basestring
    return cast(
        Callable[[Any, int], Any],
        make(None, default, encode_string, None, ":", ",", False, False, True),
    )


class JSONTranscoder(Transcoder):
    """JSON with registered transcodings for types JSON does not know.

    A custom value is written as ``{"_type_": name, "_data_": encoded}``.
    A new transcoder knows only JSON's own types: an application registers UUID,
    Decimal and datetime (and its own types) in ``register_transcodings``; the
    infrastructure factory's ``transcoder()`` comes with those three registered.
    """

    def __init__(self) -> None:
        self._by_type: dict[type, Transcoding] = {}
        self._by_name: dict[str, Transcoding] = {}
        self._encoder = json.JSONEncoder(
            default=self._encode_custom, separators=(",", ":"), ensure_ascii=False
        )
        self._decoder = json.JSONDecoder(object_hook=self._decode_custom)
        # The decoder's scanner, called directly: decode() also matches whitespace
        # around the value with regular expressions, twice.
        self._scan_once: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
            cast(Any, self._decoder)  # (typeshed's stub wants another type)
        )
        self._encode_fast = _c_json_encoder(self._encode_custom)
        # The opening of a datetime's encoding, while datetimes are DatetimeAsISO's.
        self._datetime_opening: str | None = None
        # The opening of a member of an object, by its name: '"name":'.
        self._member_openings: dict[str, str] = {}

    def register(self, transcoding: Transcoding) -> None:
        self._by_type[transcoding.type] = transcoding
        self._by_name[transcoding.name] = transcoding
        if transcoding.type is datetime:
            self._datetime_opening = (
                f'{{"{_TYPE_KEY}":{_encode_string(transcoding.name)},"{_DATA_KEY}":"'
                if type(transcoding) is DatetimeAsISO
                else None
            )

    def encode(self, obj: Any) -> bytes:
        encode_fast = self._encode_fast
        if encode_fast is not None:
            try:
                if type(obj) is dict:
                    return self._encode_dict(obj, encode_fast).encode("utf-8")
                return "".join(encode_fast(obj, 0)).encode("utf-8")
            except RecursionError:
                pass  # a circular reference, perhaps: let json say so
        return self._encoder.encode(obj).encode("utf-8")

    def _encode_dict(self, obj: dict[Any, Any], encode_fast: Callable[[Any, int], Any]) -> str:
        """The same text as json's encoder, sooner for an event's state: its strings,
        whole numbers and timestamps are written here, without json's call of
        ``_encode_custom`` for each timestamp; other values go to json's encoder."""
        datetime_opening = self._datetime_opening
        openings = self._member_openings
        members = []
        for key, value in obj.items():
            kind = type(value)
            if kind is str:
                text = _encode_string(value)
            elif kind is datetime and datetime_opening is not None:
                text = datetime_opening + _isoformat(value) + '"}'  # (nothing to escape)
            elif kind is int:
                text = int.__repr__(value)
            else:
                text = "".join(encode_fast(value, 0))
            opening = openings.get(key)
            if opening is None:
                if type(key) is not str:
                    return "".join(encode_fast(obj, 0))  # json's way with other keys
                opening = _encode_string(key) + ":"
                if len(openings) < 1000:  # (the field names of events: a few)
                    openings[key] = opening
            members.append(opening + text)
        return "{" + ",".join(members) + "}"

    def decode(self, data: bytes) -> Any:
        text = data.decode("utf-8")
        try:
            value, end = self._scan_once(text, 0)
        except (StopIteration, ValueError):
            pass  # let decode() say what is wrong
        else:
            if end == len(text):
                return value
        return self._decoder.decode(text)

    def _encode_custom(self, obj: Any) -> dict[str, Any]:
        transcoding = self._by_type.get(type(obj))
        if transcoding is None:
            for cls in type(obj).__mro__[1:]:
                transcoding = self._by_type.get(cls)
                if transcoding is not None:
                    break
            else:
                raise TranscodingNotRegisteredError(
                    f"Object of type {type(obj)} is not serializable. Please define "
                    "and register a custom transcoding for this type."
                )
        return {_TYPE_KEY: transcoding.name, _DATA_KEY: transcoding.encode(obj)}

    def _decode_custom(self, obj: dict[str, Any]) -> Any:
        if len(obj) == 2 and _TYPE_KEY in obj and _DATA_KEY in obj:
            name = obj[_TYPE_KEY]
            try:
                transcoding = self._by_name[name]
            except (KeyError, TypeError):  # (TypeError: a name that is not a string)
                raise TranscodingNotRegisteredError(
                    f"Data serialized with name '{name}' is not deserializable. "
                    "Please register a custom transcoding for this type."
                ) from None
            return transcoding.decode(obj[_DATA_KEY])
        return obj


# ---------------------------------------------------------------------------
# Ciphers and compressors plug into the mapper.


class Cipher(Protocol):
    def encrypt(self, plaintext: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes) -> bytes: ...


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


# ---------------------------------------------------------------------------
# The mapper: domain events <-> stored events.

TDomainEvent = TypeVar("TDomainEvent")
# The type of the ids of the aggregates whose events are mapped and stored.
TAggregateID = TypeVar("TAggregateID", bound="UUID | str")


class Mapper(Generic[TAggregateID]):
    """Converts domain events to stored events and back.

    On the way in: transcode, then compress, then encrypt; reversed on the way out.
    """

    def __init__(
        self,
        transcoder: Transcoder,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
    ):
        self.transcoder = transcoder
        self.compressor = compressor
        self.cipher = cipher
        # The topic and class version of each event class written, looked up once.
        self._written_classes: dict[type, tuple[str, int]] = {}

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        event_class = type(domain_event)
        written_as = self._written_classes.get(event_class)
        if written_as is None:
            written_as = (get_topic(event_class), getattr(event_class, "class_version", 1))
            self._written_classes[event_class] = written_as
        topic, class_version = written_as
        state = dict(domain_event.__dict__)
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        if class_version > 1:
            state["class_version"] = class_version
        data = self.transcoder.encode(state)
        if self.compressor is not None:
            data = self.compressor.compress(data)
        if self.cipher is not None:
            data = self.cipher.encrypt(data)
        stored = _new(StoredEvent)  # (as new_stored_event, one call less per event)
        _set_originator_id(stored, originator_id)
        _set_originator_version(stored, originator_version)
        _set_topic(stored, topic)
        _set_state(stored, data)
        return stored

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        try:
            cls = resolve_topic(stored_event.topic)
        except TopicError as error:
            raise TopicError(
                f"{error} (stored event of originator {stored_event.originator_id}, "
                f"version {stored_event.originator_version})"
            ) from error
        try:
            state = self._decode_state(stored_event.state)
        except Exception as error:
            # Keep a more precise error (e.g. a failed decryption) as it is, with context.
            error_class = (
                type(error)
                if isinstance(error, MapperDeserialisationError)
                else MapperDeserialisationError
            )
            raise error_class(
                f"Cannot decode stored event of originator {stored_event.originator_id}, "
                f"version {stored_event.originator_version}, topic {stored_event.topic!r}: "
                f"{type(error).__name__}: {error}"
            ) from error
        class_version = state.pop("class_version", 1)
        if class_version < getattr(cls, "class_version", 1):
            state = _upcast(cls, state, class_version)
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        domain_event = object.__new__(cls)
        domain_event.__dict__.update(state)
        return domain_event

    def _decode_state(self, data: bytes) -> dict[str, Any]:
        if self.cipher is not None:
            data = self.cipher.decrypt(data)
        if self.compressor is not None:
            data = self.compressor.decompress(data)
        state = self.transcoder.decode(data)
        if not isinstance(state, dict):
            raise DataError(f"expected an object, got {type(state).__name__}")
        return state


def _upcast(cls: type, state: dict[str, Any], from_version: int) -> dict[str, Any]:
    """Apply ``upcast_vN_vM`` static methods so old state fits the current class."""
    try:
        upcast_state(cls, state, from_version)
    except ValueError as error:
        raise DataError(str(error)) from error
    return state


# ---------------------------------------------------------------------------
# Recorders: the interfaces each store implements.


def first_definer(cls: type, name: str) -> type | None:
    """The class in ``cls``'s MRO whose body defines ``name`` (a store checks with it
    whether a subclass of its recorders extends ``_insert_events``)."""
    return next((c for c in cls.__mro__ if name in vars(c)), None)


class Recorder(ABC):  # noqa: B024 (a marker base shared by every recorder)
    """Base class of every recorder."""


class AggregateRecorder(Recorder):
    """Records and selects the stored events of aggregates."""

    @abstractmethod
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Record all the events atomically, or none of them.

        Raises ``RecordConflictError`` if any (originator_id, originator_version)
        is already recorded.
        """

    @abstractmethod
    def select_events(
        self,
        originator_id: UUID | str,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """Return the originator's stored events, in version order (or reversed)."""

    def notifications_of(
        self, stored_events: Sequence[StoredEvent], ids: Sequence[int]
    ) -> list[Notification]:
        """The notifications that ``stored_events``, just inserted with ``ids``, became."""
        return [notification_of(s, nid) for s, nid in zip(stored_events, ids)]


class ApplicationRecorder(AggregateRecorder):
    """Also numbers events in order of recording: the notification log."""

    @abstractmethod
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Record events atomically and return their notification ids."""

    @abstractmethod
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        """Return up to ``limit`` notifications from ``start``, in id order.

        Never returns an id above one that some still-open transaction may take:
        a reader that follows the ids returned can never skip a notification.
        """

    @abstractmethod
    def max_notification_id(self) -> int | None:
        """Return the highest notification id a reader can see, or None if none."""

    def listen(self, callback: Callable[[], None]) -> Callable[[], None] | None:
        """Call ``callback`` whenever any process records events here.

        Returns a function that stops listening, or None where the store cannot
        tell other processes' writes (readers then poll).
        """
        return None

    # What ``subscribe`` returns: each store sets the one woken by its writes.
    subscription_class: type[Subscription] = Subscription

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription:
        """The notifications after position ``gt`` (of ``topics``, if given), in order.

        The iterator blocks when it has returned everything recorded, and goes on
        as soon as more is recorded; ``stop()`` (or leaving it as a context
        manager) ends it.
        """
        return self.subscription_class(self, gt=gt, topics=topics)


class TrackingRecorder(Recorder):
    """Records how far an upstream application's log was processed (its "tracking").

    A materialised view subclasses a store's tracking recorder, adds tables of its
    own, and writes its rows and the tracking record in one transaction: so each
    event changes the view exactly once, however often its processing is retried.
    """

    @abstractmethod
    def insert_tracking(self, tracking: Tracking) -> None:
        """Record the position; ``IntegrityError`` (recording nothing) if it is not
        past the position already recorded for that application."""

    @abstractmethod
    def max_tracking_id(self, application_name: str) -> int | None:
        """Return the position processed in ``application_name``'s log, or None."""

    def has_tracking_id(self, application_name: str, notification_id: int | None) -> bool:
        """Whether ``notification_id`` of ``application_name`` has been processed."""
        if notification_id is None:
            return True
        position = self.max_tracking_id(application_name)
        return position is not None and notification_id <= position

    def wait(
        self,
        application_name: str,
        notification_id: int | None,
        timeout: float = 1.0,
        interrupt: threading.Event | None = None,
    ) -> None:
        """Return once ``notification_id`` of ``application_name`` is processed.

        Raises ``TimeoutError`` after ``timeout`` seconds, or
        ``WaitInterruptedError`` once ``interrupt`` is set. A store that can tell
        when a tracking record commits wakes the wait at once (see ``_tracking_waker``).
        """
        deadline = time.monotonic() + timeout
        waker = self._tracking_waker()
        try:
            while True:
                waker.arm()
                if self.has_tracking_id(application_name, notification_id):
                    return
                if interrupt is not None and interrupt.is_set():
                    raise WaitInterruptedError(
                        f"Waiting for notification {notification_id} of {application_name!r} "
                        "was interrupted"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"Notification {notification_id} of {application_name!r} was not "
                        f"processed within {timeout}s (position "
                        f"{self.max_tracking_id(application_name)})"
                    )
                # Short slices while an interrupt may come: an Event cannot wake us.
                waker.wait(min(remaining, 0.02) if interrupt is not None else remaining)
        finally:
            waker.close()

    def _tracking_waker(self) -> Waker:
        """What ``wait`` sleeps on between checks (a store that knows when tracking
        records commit returns a waker woken by them)."""
        return BackoffWaker()


class ProcessRecorder(TrackingRecorder, ApplicationRecorder):
    """Also records how far upstream logs were processed, atomically with new events."""

    def insert_tracking(self, tracking: Tracking) -> None:
        """Move the position without recording events (as a batch of no new events)."""
        self.insert_events([], tracking=tracking)

    @abstractmethod
    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        tracking: Tracking | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """Record the events and the tracking position in one transaction.

        The position of an upstream application only moves forwards: a tracking
        record at or below the position already recorded raises
        ``TrackingConflictError`` (an ``IntegrityError``) and records nothing.
        """

    @abstractmethod
    def max_tracking_id(self, application_name: str) -> int | None:
        """Return the position processed in ``application_name``'s log, or None."""

    def tracking_positions(self) -> dict[str, int]:
        """Every tracking name recorded here, with its position."""
        raise NotImplementedError(f"{type(self).__name__} cannot list tracking positions")



# ---------------------------------------------------------------------------
# The event store.


@dataclass(frozen=True, slots=True)
class Recording(Generic[TDomainEvent]):
    """A domain event and the notification it became."""

    domain_event: TDomainEvent
    notification: Notification


_set_domain_event = _slot_setter(Recording, "domain_event")
_set_notification = _slot_setter(Recording, "notification")


def new_recording(domain_event: Any, notification: Notification) -> Recording[Any]:
    """A quick constructor (see ``new_stored_event``)."""
    recording: Recording[Any] = _new(Recording)
    _set_domain_event(recording, domain_event)
    _set_notification(recording, notification)
    return recording


class EventStore(Generic[TAggregateID]):
    """Stores and retrieves domain events, through a mapper and a recorder."""

    def __init__(self, mapper: Mapper[TAggregateID], recorder: AggregateRecorder):
        self.mapper = mapper
        self.recorder = recorder

    def put(
        self, domain_events: Sequence[Any], *, make_recordings: bool = True, **kwargs: Any
    ) -> list[Recording[Any]]:
        """Record the events atomically; return their recordings (unless not wanted)."""
        stored_events = [self.mapper.to_stored_event(e) for e in domain_events]
        ids = self.recorder.insert_events(stored_events, **kwargs)
        if not ids or not make_recordings:
            return []
        notifications = self.recorder.notifications_of(stored_events, ids)
        return list(map(new_recording, domain_events, notifications))

    def get(
        self,
        originator_id: TAggregateID,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Iterator[Any]:
        stored_events = self.recorder.select_events(
            originator_id,  # (stores take UUID or str ids)
            gt=gt,
            lte=lte,
            desc=desc,
            limit=limit,
        )
        return map(self.mapper.to_domain_event, stored_events)


# ---------------------------------------------------------------------------
# The infrastructure factory: builds a store's recorders from the environment.

PERSISTENCE_MODULE = "PERSISTENCE_MODULE"
TRANSCODER_TOPIC = "TRANSCODER_TOPIC"
MAPPER_TOPIC = "MAPPER_TOPIC"
CIPHER_TOPIC = "CIPHER_TOPIC"
CIPHER_KEY = "CIPHER_KEY"
DEFAULT_CIPHER_TOPIC = "eventsourcing.cipher:AESCipher"
COMPRESSOR_TOPIC = "COMPRESSOR_TOPIC"
IS_SNAPSHOTTING_ENABLED = "IS_SNAPSHOTTING_ENABLED"
APPLICATION_RECORDER_TOPIC = "APPLICATION_RECORDER_TOPIC"
PROCESS_RECORDER_TOPIC = "PROCESS_RECORDER_TOPIC"
TRACKING_RECORDER_TOPIC = "TRACKING_RECORDER_TOPIC"

TFactory = TypeVar("TFactory", bound="InfrastructureFactory")
# The type of view a factory's tracking_recorder() makes: user code may write
# InfrastructureFactory[MyView] (as with the 9.x library's generic factory).
TTrackingRecorder = TypeVar("TTrackingRecorder", bound="TrackingRecorder")


class InfrastructureFactoryError(TopicError):
    """PERSISTENCE_MODULE names no usable infrastructure factory (as raised by the 9.x
    library; a TopicError too, as this library raised before)."""


def setting_name(env: Environment, key: str) -> str:
    """The name under which ``key`` is set in ``env`` (``DOGS_KEY`` or ``KEY``), for
    errors; when unset, the names that would be read (``DOGS_KEY (or KEY)``)."""
    candidates = env.create_keys(key)
    for candidate in candidates:
        if dict.get(env, candidate) not in (None, ""):
            return candidate
    if len(candidates) == 1:
        return key
    return f"{candidates[0]} (or {' or '.join(candidates[1:])})"


class InfrastructureFactory(ABC, Generic[TTrackingRecorder]):
    """Builds the recorders, mapper and transcoder of one application.

    Generic in the type of the views (tracking recorders) it is asked for:
    ``InfrastructureFactory[MyView].construct(env).tracking_recorder(MyPostgresView)``.
    """

    # How long, in seconds, a follower that events keep reaching waits before its next
    # batch, so that more of them share one commit, or "auto" (as long as its last
    # batch took, a few ms at most); ``FOLLOWER_BATCH_DELAY`` overrides it. Nothing to
    # gain where a commit costs next to nothing, as in memory.
    follower_batch_delay: float | Literal["auto"] = 0.0

    # The names of the settings read here (the documented 9.x class attributes).
    PERSISTENCE_MODULE = PERSISTENCE_MODULE
    TRANSCODER_TOPIC = TRANSCODER_TOPIC
    MAPPER_TOPIC = MAPPER_TOPIC
    CIPHER_TOPIC = CIPHER_TOPIC
    CIPHER_KEY = CIPHER_KEY
    COMPRESSOR_TOPIC = COMPRESSOR_TOPIC
    IS_SNAPSHOTTING_ENABLED = IS_SNAPSHOTTING_ENABLED
    APPLICATION_RECORDER_TOPIC = APPLICATION_RECORDER_TOPIC
    PROCESS_RECORDER_TOPIC = PROCESS_RECORDER_TOPIC

    def __init__(self, env: Environment | None = None):
        self.env = env if env is not None else Environment()

    def setting_name(self, key: str) -> str:
        """The name under which ``key`` is set (``DOGS_KEY`` or ``KEY``), for errors."""
        return setting_name(self.env, key)

    @classmethod
    def construct(
        cls, env: Environment | None = None, *, application_name: str = ""
    ) -> InfrastructureFactory:
        """Return the factory that ``PERSISTENCE_MODULE`` names (in memory by default).

        The value is the topic of a factory class, or of a module
        (``eventsourcing.sqlite``): its ``Factory`` if it has one, else the one
        InfrastructureFactory subclass it defines or imports. Without ``env``,
        settings come from ``os.environ`` (for ``application_name``, if given).
        """
        if env is None:
            env = Environment(application_name, os.environ)
        topic = env.get(PERSISTENCE_MODULE) or "eventsourcing.popo"
        try:
            obj = resolve_topic(topic)
        except (TopicError, ImportError) as error:
            name = setting_name(env, PERSISTENCE_MODULE)
            raise InfrastructureFactoryError(f"Cannot resolve {name} {topic!r}: {error}") from error
        if isinstance(obj, ModuleType):
            factory_cls = getattr(obj, "Factory", None) or _factory_class_in(obj, topic)
        else:
            factory_cls = obj
        if not (isinstance(factory_cls, type) and issubclass(factory_cls, InfrastructureFactory)):
            raise InfrastructureFactoryError(
                f"PERSISTENCE_MODULE {topic!r} is not an InfrastructureFactory: {factory_cls!r}"
            )
        return cast(InfrastructureFactory, factory_cls(env))

    def transcoder(self) -> Transcoder:
        """``TRANSCODER_TOPIC``'s class, or a JSONTranscoder that knows UUID, Decimal
        and datetime (as an application registers them)."""
        topic = self.env.get(TRANSCODER_TOPIC)
        if topic:
            return cast(Transcoder, resolve_topic(topic)())
        transcoder = JSONTranscoder()
        for transcoding in default_transcodings():
            transcoder.register(transcoding)
        return transcoder

    def mapper(
        self, transcoder: Transcoder | None = None, mapper_class: type[Mapper] = Mapper
    ) -> Mapper:
        topic = self.env.get(MAPPER_TOPIC)
        if topic:
            mapper_class = resolve_topic(topic)
        return mapper_class(
            transcoder=transcoder if transcoder is not None else self.transcoder(),
            compressor=self.compressor(),
            cipher=self.cipher(),
        )

    def event_store(
        self, mapper: Mapper | None = None, recorder: AggregateRecorder | None = None
    ) -> EventStore:
        """An event store over ``mapper`` and ``recorder`` (by default, new ones)."""
        return EventStore(
            mapper=mapper if mapper is not None else self.mapper(),
            recorder=recorder if recorder is not None else self.application_recorder(),
        )

    def cipher(self) -> Cipher | None:
        """``CIPHER_TOPIC``'s cipher; the AES-GCM one if only ``CIPHER_KEY`` is set
        (a key given means the state is to be encrypted); else None."""
        topic = self.env.get(CIPHER_TOPIC)
        if not topic and self.env.get(CIPHER_KEY):
            topic = DEFAULT_CIPHER_TOPIC
        if not topic:
            return None
        cipher_cls = resolve_topic(topic)
        return cast(Cipher, cipher_cls(self.env))

    def compressor(self) -> Compressor | None:
        topic = self.env.get(COMPRESSOR_TOPIC)
        if not topic:
            return None
        compressor = resolve_topic(topic)
        # A module with compress/decompress (zlib) serves as it is; a class is instantiated.
        return cast(Compressor, compressor() if isinstance(compressor, type) else compressor)

    def is_snapshotting_enabled(self) -> bool:
        value = self.env.get(IS_SNAPSHOTTING_ENABLED, "no")
        try:
            return strtobool(value)
        except ValueError:
            name = self.setting_name(IS_SNAPSHOTTING_ENABLED)
            raise ValueError(f"{name} must be a boolean (yes or no), not {value!r}") from None

    @abstractmethod
    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        """A recorder for aggregate events (``purpose`` is "events" or "snapshots")."""

    @abstractmethod
    def application_recorder(self) -> ApplicationRecorder:
        """A recorder of events with a notification log."""

    @abstractmethod
    def process_recorder(self) -> ProcessRecorder:
        """A recorder of events, notification log and tracking positions."""

    # The store's tracking recorder (a view's base class), set by each store.
    tracking_recorder_class: type[Any] | None = None
    TRACKING_RECORDER_TOPIC = TRACKING_RECORDER_TOPIC

    def tracking_recorder(
        self, tracking_recorder_class: type[TTrackingRecorder] | None = None
    ) -> TTrackingRecorder:
        """A tracking recorder (a materialised view) of ``tracking_recorder_class``, or
        of the class ``TRACKING_RECORDER_TOPIC`` names, or the store's own."""
        cls = tracking_recorder_class
        if cls is None:
            topic = self.env.get(TRACKING_RECORDER_TOPIC)
            cls = resolve_topic(topic) if topic else self.tracking_recorder_class
        if cls is None:
            raise NotImplementedError(f"{type(self).__name__} makes no tracking recorders")
        base = self.tracking_recorder_class or TrackingRecorder
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(
                f"{cls!r} is not a {base.__name__} class, which this store's views derive from"
            )
        return cast(TTrackingRecorder, self._construct_tracking_recorder(cls))

    def _construct_tracking_recorder(self, cls: type[Any]) -> Any:
        return cls()

    def close(self) -> None:  # noqa: B027 (optional for stores with nothing to release)
        """Release connections and files."""

    def __enter__(self: TFactory) -> TFactory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def dcb_recorder(self) -> DCBRecorder:
        """A recorder of DCB events (see ``eventsourcing.dcb``) in this store."""
        raise NotSupportedError(f"{type(self).__name__} cannot build a DCB recorder")


def _factory_class_in(module: ModuleType, topic: str) -> type[InfrastructureFactory]:
    """The one concrete InfrastructureFactory subclass in ``module`` (the library's
    abstract bases excepted), or TopicError saying how many there are."""
    found = {
        member
        for member in vars(module).values()
        if isinstance(member, type)
        and not isinstance(member, GenericAlias)  # (a class on Python 3.10)
        and issubclass(member, InfrastructureFactory)
        and member not in _BASE_FACTORIES
        and not inspect.isabstract(member)
    }
    if len(found) != 1:
        names = ", ".join(sorted(cls.__name__ for cls in found)) or "none"
        raise InfrastructureFactoryError(
            f"PERSISTENCE_MODULE {topic!r} must define one InfrastructureFactory subclass "
            f"(or name one 'Factory'), found {len(found)}: {names}"
        )
    return found.pop()


CREATE_TABLE = "CREATE_TABLE"
# Seconds a datastore retries transient failures (a store's own setting, such as
# POSTGRES_RETRY_TIMEOUT, takes precedence).
RETRY_TIMEOUT = "RETRY_TIMEOUT"
DEFAULT_RETRY_TIMEOUT = 30.0


def table_names(application_name: str) -> dict[str, str]:
    """Tables of one application: ``<name>_events``, ``<name>_snapshots`` and
    ``<name>_tracking`` (lower-cased), so that applications can share one database;
    ``stored_events``, ``snapshots`` and ``notification_tracking`` without a name.
    """
    prefix = application_name.lower()
    if not prefix:
        return {
            "events": "stored_events",
            "snapshots": "snapshots",
            "tracking": "notification_tracking",
        }
    return {
        "events": f"{prefix}_events",
        "snapshots": f"{prefix}_snapshots",
        "tracking": f"{prefix}_tracking",
    }


class DatabaseFactory(InfrastructureFactory):
    """A factory of recorders that keep their records in tables of one database.

    Subclasses set the three recorder classes and, in ``__init__``, ``datastore``.
    Tables are created unless ``CREATE_TABLE`` is false.
    """

    aggregate_recorder_class: type[Any]
    application_recorder_class: type[Any]
    process_recorder_class: type[Any]
    datastore: Any

    # A follower that events keep reaching gathers for 0.6 of its typical batch (a
    # moving average): about one commit (see _follower.gather_seconds). A fixed 2 ms
    # made a threaded system on SQLite 40-60% faster but put 2 ms on every result where
    # commits take far less (the seed's threaded example, which reads its counts 10 ms
    # after its last command, failed 1 run in 4-10); a measured wait adds about one
    # batch at most, and nothing after a quiet spell.
    follower_batch_delay: float | Literal["auto"] = "auto"

    CREATE_TABLE = CREATE_TABLE
    RETRY_TIMEOUT = RETRY_TIMEOUT

    def __init__(self, env: Environment | None = None):
        super().__init__(env)
        self.table_names = table_names(self.env.name)

    def _setting(self, key: str, default: Any, parse: Callable[[str], Any], kind: str) -> Any:
        """The setting ``key`` parsed, ``default`` if unset; OSError naming it if bad."""
        value = self.env.get(key)
        if value in (None, ""):
            return default
        try:
            return parse(value)
        except ValueError:
            raise OSError(f"{self.setting_name(key)} must be {kind}, not {value!r}") from None

    def setting_retry_timeout(self, key: str) -> float:
        """Seconds a datastore retries transient failures: the store's own setting
        ``key``, else ``RETRY_TIMEOUT``, else 30; 0 means no retry."""
        name = key if self.env.get(key) not in (None, "") else RETRY_TIMEOUT
        timeout = self.setting_float(name, DEFAULT_RETRY_TIMEOUT)
        if timeout is None or timeout < 0:
            raise OSError(f"{self.setting_name(name)} must be a number of seconds, 0 or more")
        return timeout

    def setting_int(self, key: str, default: int) -> int:
        return cast(int, self._setting(key, default, int, "an integer"))

    def setting_float(self, key: str, default: float | None) -> float | None:
        return cast("float | None", self._setting(key, default, float, "a number"))

    def setting_choice(self, key: str, choices: Sequence[str]) -> str:
        """One of ``choices`` (any case; the first is the default)."""
        value = self.env.get(key) or choices[0]
        try:
            return checked_mode(value, choices, self.setting_name(key))
        except ValueError as error:
            raise OSError(str(error)) from None

    def setting_bool(self, key: str, default: bool) -> bool:
        return cast(bool, self._setting(key, default, strtobool, "a boolean"))

    def _created(self, recorder: Any) -> Any:
        if self.setting_bool(CREATE_TABLE, True):
            recorder.create_table()
        return recorder

    # Settings naming a recorder class of the store to use instead of its own.
    APPLICATION_RECORDER_TOPIC = APPLICATION_RECORDER_TOPIC
    PROCESS_RECORDER_TOPIC = PROCESS_RECORDER_TOPIC

    def _recorder_class(self, setting: str, default: type[Any]) -> type[Any]:
        """The class named by ``setting`` (a topic), else ``default``; TopicError naming
        the setting if it names no class derived from ``default``'s interface."""
        topic = self.env.get(setting)
        if not topic:
            return default
        cls = resolve_topic(topic)
        interface = ProcessRecorder if issubclass(default, ProcessRecorder) else ApplicationRecorder
        if not (isinstance(cls, type) and issubclass(cls, interface)):
            raise TopicError(f"{setting} {topic!r} names no {interface.__name__} class: {cls!r}")
        return cls

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        table = self.table_names["snapshots" if purpose == "snapshots" else "events"]
        recorder = self.aggregate_recorder_class(self.datastore, events_table_name=table)
        return cast(AggregateRecorder, self._created(recorder))

    def application_recorder(self) -> ApplicationRecorder:
        recorder_class = self._recorder_class(
            APPLICATION_RECORDER_TOPIC, self.application_recorder_class
        )
        recorder = recorder_class(self.datastore, events_table_name=self.table_names["events"])
        return cast(ApplicationRecorder, self._created(recorder))

    def process_recorder(self) -> ProcessRecorder:
        recorder_class = self._recorder_class(PROCESS_RECORDER_TOPIC, self.process_recorder_class)
        recorder = recorder_class(
            self.datastore,
            events_table_name=self.table_names["events"],
            tracking_table_name=self.table_names["tracking"],
        )
        return cast(ProcessRecorder, self._created(recorder))

    def _construct_tracking_recorder(self, cls: type[Any]) -> Any:
        recorder = cls(self.datastore, tracking_table_name=self.table_names["tracking"])
        return self._created(recorder)

    def close(self) -> None:
        self.datastore.close()


# Bases for stores' factories, not factories themselves (when found in a store's module).
_BASE_FACTORIES = (InfrastructureFactory, DatabaseFactory)
