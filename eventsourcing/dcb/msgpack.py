"""Decisions declared by their fields and recorded as MessagePack (compatible with the
``eventsourcing.dcb.msgpack`` API of eventsourcing 9.5). Needs the ``msgpack``
package: ``pip install keel-eventsourcing[msgpack]``.

A :class:`Decision` subclass declares its fields as annotations, with defaults as
class attributes; it is made with them by keyword or in order::

    class StudentJoinedCourse(Decision):
        student_id: str
        course_id: str

:class:`MessagePackMapper` records a decision as a map of its fields, typed by the
class's topic. Besides what MessagePack holds natively (None, bool, int, float, str,
bytes, lists, dicts), UUID, Decimal, datetime and date values read back as they were,
and so do fields declared as tuples or sets. ``class X(Decision, frozen=True)`` makes
decisions that cannot be changed (and can be hashed); ``kw_only=True`` makes them
take their fields by keyword only.
"""

from __future__ import annotations

import inspect
import types
import typing
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

try:
    import msgpack
except ImportError as error:  # pragma: no cover (depends on the installation)
    raise ImportError(
        "eventsourcing.dcb.msgpack needs the 'msgpack' package: "
        "pip install 'keel-eventsourcing[msgpack]'"
    ) from error

from eventsourcing.dcb import domain
from eventsourcing.dcb.api import DCBEvent
from eventsourcing.dcb.persistence import DCBMapper
from eventsourcing.persistence import MapperDeserialisationError
from eventsourcing.utils import get_topic, resolve_topic

__all__ = ["Decision", "InitialDecision", "MessagePackMapper", "TDecision"]

_MISSING: Any = object()


def _is_class_var(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _declared_fields(cls: type) -> dict[str, Any]:
    """The fields a decision class declares (its own and inherited annotations, base
    classes' first) with their defaults (_MISSING for none)."""
    fields: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not issubclass(klass, domain.Decision):
            continue
        for name, annotation in inspect.get_annotations(klass).items():
            if _is_class_var(annotation):
                continue
            fields.pop(name, None)  # a redeclared field keeps the place of its last declaration
            fields[name] = klass.__dict__.get(name, _MISSING)
    return fields


def _check_defaults_last(cls: type, fields: dict[str, Any]) -> None:
    seen_default = ""
    for name, default in fields.items():
        if default is not _MISSING:
            seen_default = name
        elif seen_default:
            raise TypeError(
                f"{cls.__qualname__}: field {name!r} without a default follows field "
                f"{seen_default!r} with one"
            )


class Decision(domain.Decision):
    """A decision declared by its fields (see the module's documentation)."""

    __struct_fields__: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _frozen: ClassVar[bool] = False
    _kw_only: ClassVar[bool] = False

    def __init_subclass__(
        cls, *, frozen: bool | None = None, kw_only: bool | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        fields = _declared_fields(cls)
        _check_defaults_last(cls, fields)
        cls.__struct_fields__ = tuple(fields)
        cls._defaults = {k: v for k, v in fields.items() if v is not _MISSING}
        for name in fields:
            # The class attribute was only the default: instances hold the value.
            if name in cls.__dict__ and not callable(cls.__dict__[name]):
                delattr(cls, name)
        # Options as a subclass states them, else as its base has them.
        if frozen is not None:
            cls._frozen = frozen
        if kw_only is not None:
            cls._kw_only = kw_only
        cls.__hash__ = _hash_of_fields if cls._frozen else None  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self.__struct_fields__
        if args and self._kw_only:
            raise TypeError(f"{type(self).__qualname__} takes its fields by keyword only")
        if len(args) > len(names):
            raise TypeError(
                f"{type(self).__qualname__} takes at most {len(names)} positional "
                f"arguments ({len(args)} given)"
            )
        values = dict(zip(names, args))
        for name, value in kwargs.items():
            if name in values:
                raise TypeError(f"{type(self).__qualname__} got field {name!r} twice")
            values[name] = value
        unknown = [name for name in values if name not in names]
        if unknown:
            raise TypeError(
                f"{type(self).__qualname__} has no field {', '.join(map(repr, unknown))}"
            )
        for name in names:
            if name in values:
                self.__dict__[name] = values[name]
            elif name in self._defaults:
                self.__dict__[name] = _fresh(self._defaults[name])
            else:
                raise TypeError(f"{type(self).__qualname__} missing required field {name!r}")

    def as_dict(self) -> dict[str, Any]:
        return {name: self.__dict__[name] for name in self.__struct_fields__}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.as_dict() == cast(Decision, other).as_dict()

    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen:
            raise AttributeError(f"{type(self).__qualname__} is frozen: cannot set {name!r}")
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if self._frozen:
            raise AttributeError(f"{type(self).__qualname__} is frozen: cannot delete {name!r}")
        super().__delattr__(name)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"{type(self).__qualname__}({fields})"


def _hash_of_fields(decision: Decision) -> int:
    return hash((type(decision), tuple(decision.as_dict().values())))


def _fresh(default: Any) -> Any:
    # A mutable default is copied so that decisions do not share it.
    if isinstance(default, (list, dict, set)):
        return type(default)(default)
    return default


TDecision = TypeVar("TDecision", bound=Decision)


class InitialDecision(Decision, domain.InitialDecision):
    """The first decision of an enduring object, declared by its fields."""

    originator_topic: str


# MessagePack extension type codes of the values that read back as they were.
_EXT_UUID = 1
_EXT_DECIMAL = 2
_EXT_DATETIME = 3
_EXT_DATE = 4


def _encode_other(value: Any) -> Any:
    if isinstance(value, UUID):
        return msgpack.ExtType(_EXT_UUID, value.bytes)
    if isinstance(value, Decimal):
        return msgpack.ExtType(_EXT_DECIMAL, str(value).encode())
    if isinstance(value, datetime):
        return msgpack.ExtType(_EXT_DATETIME, value.isoformat().encode())
    if isinstance(value, date):
        return msgpack.ExtType(_EXT_DATE, value.isoformat().encode())
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"cannot record a value of type {type(value).__qualname__}: {value!r}")


def _decode_ext(code: int, data: bytes) -> Any:
    if code == _EXT_UUID:
        return UUID(bytes=data)
    if code == _EXT_DECIMAL:
        return Decimal(data.decode())
    if code == _EXT_DATETIME:
        return datetime.fromisoformat(data.decode())
    if code == _EXT_DATE:
        return date.fromisoformat(data.decode())
    return msgpack.ExtType(code, data)


# For each decision class: its fields annotated as tuples or sets (which MessagePack
# records as arrays, read back as lists), with the type to make of them.
_collection_fields: dict[type, dict[str, type]] = {}


def _restore_collections(decision_class: type, fields: dict[str, Any]) -> None:
    try:
        kinds = _collection_fields[decision_class]
    except KeyError:
        kinds = _collection_fields[decision_class] = _collection_kinds(decision_class)
    for name, kind in kinds.items():
        value = fields.get(name)
        if isinstance(value, list):
            fields[name] = kind(value)


def _collection_kinds(decision_class: type) -> dict[str, type]:
    try:
        hints = typing.get_type_hints(decision_class)
    except Exception:  # (a hint that does not resolve here: values are left as read)
        return {}
    kinds = {}
    for name in getattr(decision_class, "__struct_fields__", ()):
        kind = _collection_kind(hints.get(name))
        if kind is not None:
            kinds[name] = kind
    return kinds


def _collection_kind(hint: Any) -> type | None:
    origin = typing.get_origin(hint) or hint
    if origin in (tuple, set, frozenset):
        return cast(type, origin)
    if origin in (typing.Union, types.UnionType):  # (Optional, or X | None)
        kinds = {_collection_kind(arg) for arg in typing.get_args(hint)} - {None}
        if len(kinds) == 1:
            return kinds.pop()
    return None


class MessagePackMapper(DCBMapper[Decision]):
    """Maps tagged decisions to DCB events of MessagePack data, typed by the topic of
    the decision's class."""

    def to_dcb_event(self, event: domain.Tagged[Any]) -> DCBEvent:
        decision = event.decision
        try:
            data = msgpack.packb(decision.as_dict(), default=_encode_other, use_bin_type=True)
        except TypeError as error:
            raise TypeError(f"{type(decision).__qualname__}: {error}") from error
        return DCBEvent(type=get_topic(type(decision)), data=data, tags=list(event.tags))

    def to_domain_event(self, event: DCBEvent) -> domain.Tagged[Decision]:
        decision_class = resolve_topic(event.type)
        try:
            fields = msgpack.unpackb(
                event.data, ext_hook=_decode_ext, raw=False, strict_map_key=False
            )
            _restore_collections(decision_class, fields)
            decision = decision_class(**fields)
        except (ValueError, TypeError, msgpack.UnpackException) as error:
            raise MapperDeserialisationError(
                f"cannot read a {event.type} decision from its recorded data: {error}"
            ) from error
        return domain.Tagged(tags=list(event.tags), decision=decision)
