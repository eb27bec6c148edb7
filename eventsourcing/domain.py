"""The domain layer: aggregates, their events, and the ``@event`` decorator.

An aggregate changes only by events. Calling a command method decorated with
``@event`` creates an event object whose fields are the method's arguments; the
event is then *applied* (the method body runs with those arguments) and kept as
pending until the application saves it. Replaying stored events runs the same
method bodies again, so the state rebuilt is the state that was saved.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timezone, tzinfo
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID, uuid4

from eventsourcing.utils import get_topic, resolve_topic

__all__ = [
    "Aggregate",
    "AggregateCreated",
    "AggregateEvent",
    "CanMutateAggregate",
    "DomainEvent",
    "MetaAggregate",
    "MetaDomainEvent",
    "OriginatorIDError",
    "OriginatorVersionError",
    "ProgrammingError",
    "Snapshot",
    "TZINFO",
    "VersionError",
    "aggregate",
    "create_utc_datetime_now",
    "event",
    "triggers",
]


class ProgrammingError(Exception):
    """A decorator or class was used in a way that cannot work."""


class OriginatorIDError(Exception):
    """An event was applied to an aggregate with a different id."""


class OriginatorVersionError(Exception):
    """An event was applied out of sequence (its version is not the next one)."""


VersionError = OriginatorVersionError


def _tzinfo_from_env() -> tzinfo:
    name = os.environ.get("TZINFO", "UTC")
    if name.upper() == "UTC":
        return timezone.utc
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


TZINFO: tzinfo = _tzinfo_from_env()


def create_utc_datetime_now() -> datetime:
    return datetime.now(tz=timezone.utc)


# ---------------------------------------------------------------------------
# Events.


class MetaDomainEvent(type):
    """Makes every event class an immutable dataclass, registered by topic."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kw: Any):
        cls = super().__new__(mcs, name, bases, namespace, **kw)
        dataclass(frozen=True)(cast(Any, cls))  # turns the class into a dataclass in place
        get_topic(cls)  # register, so a redefinition resolves to the latest class
        return cls


class DomainEvent(metaclass=MetaDomainEvent):
    """Something that happened to an originator, at a version and a time."""

    originator_id: UUID
    originator_version: int
    timestamp: datetime

    @staticmethod
    def create_timestamp() -> datetime:
        return datetime.now(tz=TZINFO)


TAggregate = TypeVar("TAggregate", bound="Aggregate")


class CanMutateAggregate(DomainEvent):
    """An event that, applied to an aggregate, moves it to the event's version."""

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is None:
            raise OriginatorVersionError(
                f"{type(self).__qualname__} at version {self.originator_version} "
                "cannot be applied before the aggregate is created"
            )
        if self.originator_id != aggregate._id:
            raise OriginatorIDError(
                f"{type(self).__qualname__} of originator {self.originator_id} "
                f"cannot be applied to aggregate {aggregate._id}"
            )
        if self.originator_version != aggregate._version + 1:
            raise OriginatorVersionError(
                f"{type(self).__qualname__} at version {self.originator_version} cannot be "
                f"applied to aggregate {aggregate._id} at version {aggregate._version}"
            )
        self.apply(aggregate)
        aggregate._version = self.originator_version
        aggregate._modified_on = self.timestamp
        return aggregate

    def apply(self, aggregate: Any) -> None:
        """Change the aggregate; by default, run the method decorated with ``@event``."""
        method = _applied_methods.get(type(self))
        if method is not None:
            method.apply(aggregate, self)


class AggregateEvent(CanMutateAggregate):
    """Base class of aggregate events."""


class AggregateCreated(AggregateEvent):
    """The first event of an aggregate: it names the aggregate's class by topic."""

    originator_topic: str

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is not None:
            raise OriginatorVersionError(
                f"{type(self).__qualname__} can only start an aggregate, "
                f"but aggregate {aggregate._id} exists"
            )
        aggregate_class = resolve_topic(self.originator_topic)
        new = object.__new__(aggregate_class)
        new._id = self.originator_id
        new._version = self.originator_version
        new._created_on = self.timestamp
        new._modified_on = self.timestamp
        new._pending_events = []
        kwargs = {k: v for k, v in self.__dict__.items() if k not in _CREATED_FIELDS}
        aggregate_class.__init__(new, **kwargs)
        return new


_CREATED_FIELDS = frozenset(
    ["originator_id", "originator_version", "timestamp", "originator_topic"]
)


# ---------------------------------------------------------------------------
# The @event decorator.

# Which decorated method each generated (or explicitly named) event class applies.
_applied_methods: dict[type, _EventMethod] = {}


class _EventMethod:
    """A command method decorated with ``@event``: calling it triggers an event."""

    def __init__(self, func: Callable[..., Any], event_spec: str | type | None):
        if isinstance(func, (classmethod, staticmethod)):
            raise ProgrammingError("@event cannot decorate a classmethod or staticmethod")
        if not callable(func):
            raise ProgrammingError(f"@event must decorate a function, not {func!r}")
        self.func = func
        self.event_spec = event_spec
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())[1:]
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ProgrammingError(
                    f"@event method {func.__qualname__}() cannot take *{param.name}: "
                    "an event needs named fields"
                )
        self.param_names = [p.name for p in params]
        self.event_class: type | None = None  # set when the aggregate class is made
        self.__doc__ = func.__doc__
        self.__name__ = func.__name__

    @property
    def event_name(self) -> str:
        if isinstance(self.event_spec, str):
            return self.event_spec
        if self.func.__name__ == "__init__":
            return "Created"
        return "".join(part.capitalize() for part in self.func.__name__.split("_") if part)

    def apply(self, aggregate: Any, domain_event: Any) -> None:
        kwargs = {name: getattr(domain_event, name) for name in self.param_names}
        self.func(aggregate, **kwargs)

    def bind_arguments(
        self, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            bound = self.signature.bind(obj, *args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{self.func.__qualname__}() {error}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(self.signature.parameters)))
        return arguments

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        method = self

        def trigger(*args: Any, **kwargs: Any) -> None:
            assert method.event_class is not None
            obj.trigger_event(method.event_class, **method.bind_arguments(obj, args, kwargs))

        trigger.__name__ = self.func.__name__
        trigger.__qualname__ = self.func.__qualname__
        trigger.__doc__ = self.func.__doc__
        return trigger

    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> None:
        # Called through the class: Dog.add_trick(dog, "roll over").
        return self.__get__(obj)(*args, **kwargs)


def event(arg: Any = None) -> Any:
    """Decorate a command method (or ``__init__``) so that calling it triggers an event.

    ``@event('Name')`` names the event class; ``@event`` alone derives it from the
    method name (``add_trick`` -> ``AddTrick``; ``__init__`` -> ``Created``);
    ``@event(EventClass)`` uses a class defined explicitly.
    """
    if isinstance(arg, _EventMethod):
        raise ProgrammingError("@event applied twice to one method")
    if inspect.isfunction(arg):
        return _EventMethod(arg, None)
    if (
        arg is None
        or isinstance(arg, str)
        or (isinstance(arg, type) and issubclass(arg, CanMutateAggregate))
    ):
        spec = arg

        def decorator(func: Callable[..., Any]) -> _EventMethod:
            if isinstance(func, _EventMethod):
                raise ProgrammingError("@event applied twice to one method")
            return _EventMethod(func, spec)

        return decorator
    raise ProgrammingError(f"@event takes an event name, an event class or a method, not {arg!r}")


triggers = event


# ---------------------------------------------------------------------------
# Aggregates.


class MetaAggregate(type):
    """Builds each aggregate class's event classes from its decorated methods."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kw: Any):
        cls = super().__new__(mcs, name, bases, namespace, **kw)
        if namespace.get("_is_base_aggregate"):
            return cls
        _define_base_events(cls, bases, namespace)
        _define_method_events(cls, namespace)
        cls._created_event_class = None  # type: ignore[attr-defined]
        cls._created_for_init = None  # type: ignore[attr-defined]
        _define_created_event(cls, namespace)
        _created_event_class_of(cls)
        get_topic(cls)
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        created_class = _created_event_class_of(cls)
        init = cls.__init__  # type: ignore[misc]
        arguments, given_id = _bind_init_arguments(cls, init, args, kwargs)
        return cls._create(created_class, id=given_id, **arguments)  # type: ignore[attr-defined]


_signatures: dict[Callable[..., Any], inspect.Signature] = {}


def _signature(func: Callable[..., Any]) -> inspect.Signature:
    try:
        return _signatures[func]
    except KeyError:
        sig = _signatures[func] = inspect.signature(func)
        return sig


def _bind_init_arguments(
    cls: type, init: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[dict[str, Any], UUID | None]:
    """Bind a constructor call to ``__init__``; also return an explicit ``id=``, if given."""
    sig = _signature(init)
    call_kwargs = dict(kwargs)
    takes_id = "id" in sig.parameters
    given_id = None if takes_id else call_kwargs.pop("id", None)
    try:
        bound = sig.bind(None, *args, **call_kwargs)
    except TypeError as error:
        raise TypeError(f"{cls.__qualname__}.__init__() {error}") from None
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop(next(iter(sig.parameters)))
    for param in sig.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            arguments.update(arguments.pop(param.name, {}))
        elif param.kind is param.VAR_POSITIONAL:
            raise TypeError(f"{cls.__qualname__}.__init__() cannot take *{param.name}")
    if takes_id:
        given_id = arguments.get("id")
    return arguments, given_id


def _define_base_events(cls: type, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
    """Give each aggregate class its own ``Event`` and ``Created`` base classes."""
    if "Event" not in namespace:
        event_bases = _unique(b.Event for b in bases if hasattr(b, "Event"))
        cls.Event = _make_event_class(cls, "Event", event_bases, {})  # type: ignore[attr-defined]
    if "Created" not in namespace:
        created_bases = _unique(b.Created for b in bases if hasattr(b, "Created"))
        bases_ = tuple(created_bases) + (cls.Event,)  # type: ignore[attr-defined]
        cls.Created = _make_event_class(cls, "Created", _mro_safe(bases_), {})  # type: ignore[attr-defined]


def _unique(classes: Iterable[type]) -> tuple[type, ...]:
    seen: list[type] = []
    for c in classes:
        if c not in seen:
            seen.append(c)
    return tuple(seen)


def _mro_safe(bases: tuple[type, ...]) -> tuple[type, ...]:
    # Drop a base that another base already derives from, to keep the MRO consistent.
    return tuple(b for b in bases if not any(o is not b and issubclass(o, b) for o in bases))


def _make_event_class(
    owner: type, name: str, bases: tuple[type, ...], annotations: dict[str, Any]
) -> type:
    namespace = {
        "__annotations__": annotations,
        "__qualname__": f"{owner.__qualname__}.{name}",
        "__module__": owner.__module__,
    }
    metaclass = type(bases[0]) if bases else MetaDomainEvent
    return metaclass(name, bases, namespace)


def _annotations_of(method: _EventMethod) -> dict[str, Any]:
    return {name: Any for name in method.param_names}


def _define_method_events(cls: type, namespace: dict[str, Any]) -> None:
    for attr, value in namespace.items():
        if not isinstance(value, _EventMethod) or attr == "__init__":
            continue
        spec = value.event_spec
        if isinstance(spec, type):
            event_class = spec
        else:
            name = value.event_name
            if name in namespace and not isinstance(namespace[name], _EventMethod):
                raise ProgrammingError(
                    f"{cls.__qualname__}.{attr}: the event class name {name!r} is taken; "
                    "pass the class itself to @event"
                )
            event_class = _make_event_class(
                cls,
                name,
                (cls.Event,),  # type: ignore[attr-defined]
                _annotations_of(value),
            )
            setattr(cls, name, event_class)
        value.event_class = event_class
        _applied_methods[event_class] = value


def _define_created_event(cls: type, namespace: dict[str, Any]) -> None:
    init = namespace.get("__init__")
    if isinstance(init, _EventMethod):
        spec = init.event_spec
        # The class keeps the plain function as __init__, run when Created is applied.
        type.__setattr__(cls, "__init__", init.func)
        if isinstance(spec, type):
            created = spec
        else:
            created = _make_created_class(cls, init.event_name, init.func)
        cls._created_event_class = created  # type: ignore[attr-defined]
        cls._created_for_init = init.func  # type: ignore[attr-defined]


def _make_created_class(cls: type, name: str, init: Callable[..., Any]) -> type:
    params = list(_signature(init).parameters.values())[1:]
    annotations = {p.name: Any for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if name == "Created" and "Created" in cls.__dict__ and not annotations:
        return cast(type, cls.Created)  # type: ignore[attr-defined]
    base = cls.Created  # type: ignore[attr-defined]
    created = _make_event_class(cls, name, (base,), annotations)
    setattr(cls, name, created)
    return created


def _created_event_class_of(cls: type) -> type:
    """The class of the event that creates ``cls``, made for its current ``__init__``.

    Remade when ``__init__`` changed since, because ``@dataclass`` adds ``__init__``
    after the class exists.
    """
    init = cls.__init__  # type: ignore[misc]
    created = cls.__dict__.get("_created_event_class")
    if created is not None and cls.__dict__.get("_created_for_init") is init:
        return cast(type, created)
    name = _inherited_created_name(cls) or "Created"
    created = _make_created_class(cls, name, init)
    type.__setattr__(cls, "_created_event_class", created)
    type.__setattr__(cls, "_created_for_init", init)
    return created


def _inherited_created_name(cls: type) -> str | None:
    for base in cls.__mro__[1:]:
        created = base.__dict__.get("_created_event_class")
        if created is not None:
            return cast(str, created.__name__)
    return None


class Aggregate(metaclass=MetaAggregate):
    """Base class of event-sourced aggregates."""

    _is_base_aggregate: ClassVar[bool] = True

    class Event(AggregateEvent):
        pass

    class Created(Event, AggregateCreated):
        pass

    _id: UUID
    _version: int
    _created_on: datetime
    _modified_on: datetime
    _pending_events: list[Any]

    def __init__(self) -> None:
        pass

    @classmethod
    def create_id(cls, *args: Any, **kwargs: Any) -> UUID:
        """Return the id of a new aggregate; override to derive it from arguments."""
        return uuid4()

    @classmethod
    def _create(
        cls: type[TAggregate], event_class: type, *, id: UUID | None = None, **kwargs: Any
    ) -> TAggregate:
        originator_id = id if id is not None else _create_id(cls, kwargs)
        if not isinstance(originator_id, UUID):
            raise TypeError(
                f"{cls.__qualname__}.create_id() returned {originator_id!r}, not a UUID"
            )
        created = event_class(
            originator_id=originator_id,
            originator_version=1,
            timestamp=event_class.create_timestamp(),  # type: ignore[attr-defined]
            originator_topic=get_topic(cls),
            **kwargs,
        )
        new = created.mutate(None)
        new._pending_events.append(created)
        return cast(TAggregate, new)

    @property
    def id(self) -> UUID:
        return self._id

    @property
    def version(self) -> int:
        return self._version

    @version.setter
    def version(self, value: int) -> None:
        self._version = value

    @property
    def created_on(self) -> datetime:
        return self._created_on

    @property
    def modified_on(self) -> datetime:
        return self._modified_on

    @property
    def pending_events(self) -> list[Any]:
        return list(self._pending_events)

    def trigger_event(self, event_class: type, **kwargs: Any) -> None:
        """Create an event of ``event_class`` with the next version, apply it, keep it pending."""
        new_event = event_class(
            originator_id=self._id,
            originator_version=self._version + 1,
            timestamp=event_class.create_timestamp(),  # type: ignore[attr-defined]
            **kwargs,
        )
        new_event.mutate(self)
        self._pending_events.append(new_event)

    def collect_events(self) -> list[Any]:
        """Return the pending events and forget them (the application records them)."""
        collected, self._pending_events = self._pending_events, []
        return collected

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and _state(self) == _state(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        attrs = [f"id={self._id!r}", f"version={self._version!r}"]
        attrs += [f"{k}={v!r}" for k, v in _state(self).items() if not k.startswith("_")]
        return f"{type(self).__qualname__}({', '.join(attrs)})"


def _state(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in obj.__dict__.items() if k != "_pending_events"}


def _create_id(cls: type, init_arguments: dict[str, Any]) -> UUID:
    create_id = cls.create_id  # type: ignore[attr-defined]
    params = _signature(create_id).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return cast(UUID, create_id(**init_arguments))
    wanted = {k: v for k, v in init_arguments.items() if k in params}
    try:
        return cast(UUID, create_id(**wanted))
    except TypeError as error:
        raise TypeError(
            f"{cls.__qualname__}.create_id() {error}: its parameters are taken by name "
            "from the arguments of __init__"
        ) from None


def aggregate(cls: Any = None, *, created_event_name: str | None = None) -> Any:
    """Class decorator: make an event-sourced aggregate of a class not derived from Aggregate."""

    def decorate(original: type) -> type:
        if issubclass(original, Aggregate):
            return original
        namespace = {
            k: v for k, v in original.__dict__.items() if k not in ("__dict__", "__weakref__")
        }
        init = namespace.get("__init__")
        if created_event_name and init is not None and not isinstance(init, _EventMethod):
            namespace["__init__"] = _EventMethod(init, created_event_name)
        return MetaAggregate(original.__name__, (original, Aggregate), namespace)

    return decorate(cls) if cls is not None else decorate


# ---------------------------------------------------------------------------
# Snapshots.


class Snapshot(DomainEvent):
    """The whole state of an aggregate at a version, to start a replay from."""

    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Any) -> Snapshot:
        state = _state(aggregate)
        class_version = getattr(type(aggregate), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        state.pop("_id")
        state.pop("_version")
        return cls(  # type: ignore[call-arg]
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=state,
        )

    def mutate(self, _: Any = None) -> Any:
        aggregate_class = resolve_topic(self.topic)
        state = dict(self.state)
        from_version = state.pop("class_version", 1)
        to_version = getattr(aggregate_class, "class_version", 1)
        for version in range(from_version, to_version):
            getattr(aggregate_class, f"upcast_v{version}_v{version + 1}")(state)
        new = object.__new__(aggregate_class)
        new.__dict__.update(state)
        new._id = self.originator_id
        new._version = self.originator_version
        new._pending_events = []
        return new


def event_field_names(event_class: type) -> list[str]:
    """The names of an event class's fields, in order."""
    return [f.name for f in fields(event_class)]
