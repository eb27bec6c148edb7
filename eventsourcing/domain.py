"""The domain layer: aggregates, their events, and the ``@event`` decorator.

An aggregate changes only by events. Calling a command method decorated with
``@event`` creates an event object whose fields are the method's arguments; the
event is then *applied* (the method body runs with those arguments) and kept as
pending until the application saves it. Replaying stored events runs the same
method bodies again, so the state rebuilt is the state that was saved.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from operator import attrgetter
from types import GenericAlias
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    TypeVar,
    cast,
    get_args,
    get_origin,
    overload,
)
from uuid import UUID, uuid4

from eventsourcing._aggregate_classes import (
    _bind_init_arguments,
    _build_aggregate_class,
    _event_method,
    _EventMethod,
    _given_by_domain,
    _id_types,
    _id_types_named,
    _make_created_class,
    _note_plain_fields,
    _note_topic_clash,
    _own_applies,
    _set_created_class,
    _signature,
    _triggered_quickly,
)
from eventsourcing._protocols import (
    CanMutateProtocol,
    CollectEventsProtocol,
    DomainEventProtocol,
    ImmutableAggregateProtocol,
    MutableAggregateProtocol,
    MutableOrImmutableAggregate,
    SDomainEvent,
    SnapshotProtocol,
    TAggregateID,
    TAggregateID_co,
    TDomainEvent,
    TMutableOrImmutableAggregate,
)
from eventsourcing.utils import (
    EventSourcingError,
    TopicError,  # (exported here too, as documented)
    get_topic,
    register_topic,  # (importable from here too, as in the 9.x library)
    resolve_topic,
    upcast_state,
)

__all__ = [
    "AbstractDecision",
    "Aggregate",
    "AggregateCreated",
    "AggregateEvent",
    "BaseAggregate",
    "CanCreateTimestamp",
    "CanInitAggregate",
    "CanMutateAggregate",
    "CanMutateProtocol",
    "CanSnapshotAggregate",
    "CollectEventsProtocol",
    "CommandMethodDecorator",
    "DomainEvent",
    "DomainEventProtocol",
    "EventSourcingError",
    "HasOriginatorIDVersion",
    "ImmutableAggregateProtocol",
    "LogEvent",
    "MetaAggregate",
    "MetaDomainEvent",
    "MutableAggregateProtocol",
    "MutableOrImmutableAggregate",
    "OriginatorIDError",
    "OriginatorVersionError",
    "ProgrammingError",
    "SDomainEvent",
    "Snapshot",
    "SnapshotProtocol",
    "TAggregateID",
    "TAggregateID_co",
    "TDomainEvent",
    "TMutableOrImmutableAggregate",
    "TZINFO",
    "TopicError",
    "VersionError",
    "aggregate",
    "create_utc_datetime_now",
    "datetime_now_with_tzinfo",
    "event",
    "register_topic",
    "triggers",
]


class AbstractDecision:
    """Base of event classes that ``@event`` accepts besides aggregate events (the
    decisions of ``eventsourcing.dcb.domain``), whose classes apply them."""


class ProgrammingError(EventSourcingError):
    """A decorator or class was used in a way that cannot work."""


class OriginatorIDError(EventSourcingError):
    """An event was applied to an aggregate with a different id."""


class OriginatorVersionError(EventSourcingError):
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


def datetime_now_with_tzinfo() -> datetime:
    """The current time in the timezone ``TZINFO`` (UTC unless the environment says)."""
    return datetime.now(tz=TZINFO)


# ---------------------------------------------------------------------------
# Events.


class CanCreateTimestamp:
    """Gives an event class ``create_timestamp()``: the time an event happens, now."""

    @staticmethod
    def create_timestamp() -> datetime:
        return datetime.now(tz=TZINFO)


if TYPE_CHECKING:
    from typing import Generic as _GenericForTypeCheckers
else:

    class _GenericForTypeCheckers:
        """Generic for type checkers only: at run time ``_GenericForTypeCheckers[T]``
        adds no base class, so event classes do not have Generic in their MRO (each
        class more there costs attribute lookups on events, replayed by the thousand)."""

        def __class_getitem__(cls, _params: Any) -> Any:
            return _NoBase()

    class _NoBase:
        def __mro_entries__(self, _bases: tuple[Any, ...]) -> tuple[type, ...]:
            return ()


class HasOriginatorIDVersion(_GenericForTypeCheckers[TAggregateID]):
    """A mixin for event classes: an originator's id and the version it moved it to.

    ``originator_id_type`` is the id type given as the class's type argument (``UUID``
    or ``str``, as in ``CanMutateAggregate[str]``), inherited by subclasses; ``None``
    if no class in the hierarchy was given one.
    """

    originator_id: TAggregateID
    originator_version: int
    originator_id_type: ClassVar[type[UUID] | type[str] | None] = None

    if not TYPE_CHECKING:
        # CanMutateAggregate[str]: an alias that get_origin()/get_args() read, and
        # that, as a base class, stands for the class itself.
        __class_getitem__ = classmethod(GenericAlias)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "originator_id_type" not in cls.__dict__:
            id_type = _id_type_argument(cls)
            if id_type is not None:
                cls.originator_id_type = id_type


def _id_type_argument(cls: type) -> type[UUID] | type[str] | None:
    """The id type written as a type argument of one of ``cls``'s bases, if any."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if not (isinstance(origin, type) and issubclass(origin, HasOriginatorIDVersion)):
            continue
        for argument in get_args(base)[:1]:
            if argument is UUID or argument is str:
                return cast("type[UUID] | type[str]", argument)
            if argument is not Any and not isinstance(argument, TypeVar):
                raise TypeError(
                    f"{cls.__qualname__}: the aggregate id type {argument!r} given to "
                    f"{origin.__qualname__} is neither UUID nor str"
                )
    return None


# Our own aggregate classes (every class MetaAggregate makes). For their instances the
# library reads and writes the private attributes directly, found by one set lookup of
# the type (no call); any other object is used only through its public attributes.
_our_aggregate_classes: set[type] = set()


class CanMutateAggregate(HasOriginatorIDVersion[TAggregateID], CanCreateTimestamp):
    """A mixin for event classes: applied to an aggregate, the event moves it to its version.

    A plain class (no metaclass), so that events of any kind (dataclasses, models)
    may derive from it. The aggregate may be of any class with public ``id``,
    ``version`` and ``modified_on``: ``apply()`` changes it, then its ``version`` and
    ``modified_on`` are set, or, if it is immutable (a frozen dataclass or model), it
    is replaced by a copy with them. For such an aggregate ``apply()`` may also
    return the new aggregate that replaces it.
    """

    timestamp: datetime

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own_apply = _own_applies.get(getattr(cls, "apply", None))  # type: ignore[arg-type]
        if own_apply is not None and "apply" not in cls.__dict__:
            # A subclass of an event class that an @event method applies does not
            # inherit the method's body: it gets back the apply() the class had.
            type.__setattr__(cls, "apply", own_apply)

    def mutate(self, aggregate: Any) -> Any:
        if type(aggregate) not in _our_aggregate_classes:
            return self._mutate_other(aggregate)
        # (Usually the very same id object: "is" spares UUID's __eq__, written in Python.)
        if self.originator_id is not aggregate._id and self.originator_id != aggregate._id:
            raise _id_error(self, aggregate._id)
        if self.originator_version != aggregate._version + 1:
            raise _version_error(self, aggregate._id, aggregate._version)
        self.apply(aggregate)
        aggregate._version = self.originator_version
        aggregate._modified_on = self.timestamp
        return aggregate

    def _mutate_other(self, aggregate: Any) -> Any:
        if aggregate is None:
            raise OriginatorVersionError(
                f"{type(self).__qualname__} at version {self.originator_version} "
                "cannot be applied before the aggregate is created"
            )
        aggregate_id, version = aggregate.id, aggregate.version
        if self.originator_id != aggregate_id:
            raise _id_error(self, aggregate_id)
        if self.originator_version != version + 1:
            raise _version_error(self, aggregate_id, version)
        successor = self.apply(aggregate)
        if successor is not None:
            aggregate = successor
        changes = {"version": self.originator_version, "modified_on": self.timestamp}
        return _with_public_attributes(aggregate, changes)

    def apply(self, aggregate: Any) -> Any:
        """Change the aggregate (by default, nothing more than its version and time).

        An event class that a method decorated with ``@event`` triggers runs that
        method's body first, then the class's own ``apply()``, if it has one.
        """


def _id_error(event: Any, aggregate_id: Any) -> OriginatorIDError:
    return OriginatorIDError(
        f"{type(event).__qualname__} of originator {event.originator_id} "
        f"cannot be applied to aggregate {aggregate_id}"
    )


def _version_error(event: Any, aggregate_id: Any, version: int) -> OriginatorVersionError:
    return OriginatorVersionError(
        f"{type(event).__qualname__} at version {event.originator_version} cannot be "
        f"applied to aggregate {aggregate_id} at version {version}"
    )


def _with_public_attributes(aggregate: Any, changes: dict[str, Any]) -> Any:
    """Set public attributes of an aggregate not of ours; an immutable one is copied."""
    params = getattr(type(aggregate), "__dataclass_params__", None)
    if params is not None and params.frozen:
        return dataclasses.replace(aggregate, **changes)
    model_copy = getattr(aggregate, "model_copy", None)  # a model with pydantic's interface
    if model_copy is not None and getattr(aggregate, "model_config", {}).get("frozen"):
        return model_copy(update=changes)
    for name, value in changes.items():
        setattr(aggregate, name, value)
    return aggregate


_default_create_timestamp = CanCreateTimestamp.create_timestamp
_default_mutate = CanMutateAggregate.mutate
_default_apply = CanMutateAggregate.apply


class CanInitAggregate(CanMutateAggregate[TAggregateID]):
    """A mixin for the first event of an aggregate: it names the aggregate's class by topic.

    Applied, it makes the aggregate: ``__init__`` is given the event's fields that it
    takes by name (all of them if it takes ``**kwargs``), then the event's ``apply()``
    runs. An aggregate class not of ours is called with them, and with its public
    ``id``, ``version``, ``created_on`` and ``modified_on`` if it takes them; those of
    the four the new object lacks are set on it before ``apply()`` runs.
    """

    originator_topic: str

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is not None:
            raise OriginatorVersionError(
                f"{type(self).__qualname__} can only start an aggregate, "
                f"but aggregate {aggregate.id} exists"
            )
        aggregate_class = resolve_topic(self.originator_topic)
        if aggregate_class not in _our_aggregate_classes:
            return self._create_other(aggregate_class)
        new = object.__new__(aggregate_class)
        new._id = self.originator_id
        new._version = self.originator_version
        new._created_on = self.timestamp
        new._modified_on = self.timestamp
        new._pending_events = []
        init = aggregate_class.__init__
        kwargs = _arguments_taken(init, vars(self))
        if "id" not in kwargs and _init_takes_id(aggregate_class):
            kwargs["id"] = self.originator_id  # a declared id field is not stored twice
        init(new, **kwargs)
        if type(self).apply is not _default_apply:
            self.apply(new)
        return new

    def _create_other(self, aggregate_class: type) -> Any:
        public = {
            "id": self.originator_id,
            "version": self.originator_version,
            "created_on": self.timestamp,
            "modified_on": self.timestamp,
        }
        fields = {**vars(self), **public}
        new = aggregate_class(**_arguments_taken(aggregate_class, fields))
        missing = {name: value for name, value in public.items() if not hasattr(new, name)}
        if missing:
            new = _with_public_attributes(new, missing)
        successor = self.apply(new)
        return new if successor is None else successor


def _refuse_setattr(event: object, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(
        f"cannot assign to field {name!r} of {type(event).__qualname__}: events are immutable"
    )


def _refuse_delattr(event: object, name: str) -> None:
    raise dataclasses.FrozenInstanceError(
        f"cannot delete field {name!r} of {type(event).__qualname__}: events are immutable"
    )


_REFUSALS = (_refuse_setattr, _refuse_delattr)


class _ImmutableEvent:
    """The last base given to a user's own root event class (one made with
    MetaDomainEvent that derives from no event class of this library, which inherit
    their refusals from DomainEvent): its events refuse changes through it, which
    leaves the class's own namespace free for an explicit @dataclass(frozen=True)."""

    __slots__ = ()
    __setattr__ = _refuse_setattr
    __delattr__ = _refuse_delattr


def _refusal_in(bases: tuple[type, ...]) -> bool:
    return any(k.__dict__.get("__setattr__") in _REFUSALS for b in bases for k in b.__mro__)


def _frozen_without_own(cls: type, name: str) -> bool:
    """Whether instances of ``cls`` would still refuse ``name`` (__setattr__ or
    __delattr__) without the class's own: a base refuses it, reached through nothing
    but the methods of frozen dataclasses (they pass other names on to the next
    class, and they are all a frozen dataclass can have)."""
    for k in cls.__mro__[1:]:
        if name not in k.__dict__:
            continue
        if k.__dict__[name] in _REFUSALS:
            return True
        params = k.__dict__.get("__dataclass_params__")
        if params is None or not params.frozen:
            return False
    return False


class MetaDomainEvent(type):
    """Makes every event class an immutable dataclass, registered by topic."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kw: Any):
        if "DomainEvent" in globals() and not _refusal_in(bases):
            bases = (*bases, _ImmutableEvent)
        cls = super().__new__(mcs, name, bases, namespace, **kw)
        dataclass(frozen=True)(cast(Any, cls))  # turns the class into a dataclass in place
        # The refusals dataclass just added are inherited instead, so that the class
        # may still be decorated with @dataclass(frozen=True) explicitly (dataclass
        # will not overwrite a __setattr__ in the class's own namespace).
        for refusal in ("__setattr__", "__delattr__"):
            if refusal not in namespace and _frozen_without_own(cls, refusal):
                type.__delattr__(cls, refusal)
        _note_topic_clash(cls)
        get_topic(cls)  # register, so a redefinition resolves to the latest class
        _note_plain_fields(cls, namespace)
        return cls


class DomainEvent(CanCreateTimestamp, metaclass=MetaDomainEvent):
    """Something that happened to an originator, at a version and a time."""

    originator_id: UUID
    originator_version: int
    timestamp: datetime

    def __class_getitem__(cls, _id_type: Any) -> Any:
        # DomainEvent[UUID] is the class itself.
        return cls


# (Set after the class is made: dataclass refuses to replace ones written in its body.)
type.__setattr__(DomainEvent, "__setattr__", _refuse_setattr)
type.__setattr__(DomainEvent, "__delattr__", _refuse_delattr)


class AggregateEvent(CanMutateAggregate[UUID], DomainEvent):
    """Base class of aggregate events."""


class AggregateCreated(CanInitAggregate[UUID], AggregateEvent):
    """The first event of an aggregate (see CanInitAggregate)."""

    originator_topic: str


class LogEvent(DomainEvent):
    """An event of an event-sourced log (a DomainEvent: the documented name kept)."""


# The classes of this module that making aggregate classes uses (it is done by
# eventsourcing._aggregate_classes, imported before they were made).
_given_by_domain(
    programming_error=ProgrammingError,
    can_mutate_aggregate=CanMutateAggregate,
    can_init_aggregate=CanInitAggregate,
    meta_domain_event=MetaDomainEvent,
)


_CREATED_FIELDS = frozenset(
    ["originator_id", "originator_version", "timestamp", "originator_topic"]
)

# For each __init__ (or class, for classes not of ours): the names of the parameters it
# takes by keyword, or None if it takes **kwargs.
_keyword_names: dict[Callable[..., Any], frozenset[str] | None] = {}


def _arguments_taken(func: Callable[..., Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The fields that ``func`` takes: those it names; all but the created event's own
    fields if it takes ``**kwargs``."""
    try:
        names = _keyword_names[func]
    except KeyError:
        names = _keyword_names[func] = _keyword_names_of(func)
    if names is None:
        return {k: v for k, v in fields.items() if k not in _CREATED_FIELDS}
    return {k: v for k, v in fields.items() if k in names}


def _keyword_names_of(func: Callable[..., Any]) -> frozenset[str] | None:
    params = _signature(func).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in params if p.kind in named)


def _init_takes_id(cls: type) -> bool:
    return "id" in _signature(cls.__init__).parameters  # type: ignore[misc]


TAggregate = TypeVar("TAggregate", bound="Aggregate")


# ---------------------------------------------------------------------------
# The @event decorator.


# The documented name of the class of decorated methods.
CommandMethodDecorator = _EventMethod


# The decorated method keeps its signature for type checkers (calls are checked as
# calls of the method); at run time the decorator returns an _EventMethod.
_F = TypeVar("_F", bound=Callable[..., Any] | property)


@overload
def event(arg: str, /, *, topic: str | None = None) -> Callable[[_F], _F]: ...


@overload
def event(arg: type[CanMutateAggregate], /, *, topic: str | None = None) -> Callable[[_F], _F]: ...


@overload
def event(arg: type[AbstractDecision], /, *, topic: str | None = None) -> Callable[[_F], _F]: ...


@overload
def event(arg: None = None, /, *, topic: str | None = None) -> Callable[[_F], _F]: ...


@overload
def event(arg: _F, /) -> _F: ...


def event(arg: Any = None, /, *, topic: str | None = None) -> Any:
    """Decorate a command method (or ``__init__``) so that calling it triggers an event.

    ``@event('Name')`` names the event class; ``@event`` alone derives it from the
    method name (``add_trick`` -> ``AddTrick``; ``__init__`` -> ``Created``);
    ``@event(EventClass)`` uses a class defined explicitly. ``topic`` gives the
    event class that the decorator defines a topic of its own (its ``TOPIC``), so
    that stored events keep resolving if the class moves or is renamed.
    """
    if isinstance(arg, _EventMethod):
        raise ProgrammingError("@event applied twice to one method")
    if inspect.isfunction(arg) or isinstance(arg, property):
        return _event_method(arg, None)
    if (
        arg is None
        or isinstance(arg, str)
        or (isinstance(arg, type) and issubclass(arg, (CanMutateAggregate, AbstractDecision)))
    ):
        spec = arg

        def decorator(func: Callable[..., Any]) -> _EventMethod:
            if isinstance(func, _EventMethod):
                raise ProgrammingError("@event applied twice to one method")
            method = _event_method(func, spec)
            method.event_topic = topic
            return method

        return decorator
    raise ProgrammingError(f"@event takes an event name, an event class or a method, not {arg!r}")


triggers = event


# ---------------------------------------------------------------------------
# Aggregates.


class MetaAggregate(type):
    """Builds each aggregate class's event classes from its decorated methods.

    Takes the class argument ``created_event_name`` to name the event that
    creates the aggregate: ``class Dog(Aggregate, created_event_name="Registered")``.
    """

    def __new__(
        mcs,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        *,
        created_event_name: str | None = None,
        **kw: Any,
    ):
        cls = super().__new__(mcs, name, bases, namespace, **kw)
        _our_aggregate_classes.add(cls)
        if namespace.get("_is_base_aggregate"):
            return cls
        _build_aggregate_class(cls, bases, namespace, created_event_name)
        get_topic(cls)
        return cls

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kw: Any):
        super().__init__(name, bases, namespace)


def _construct(cls: type, /, *args: Any, **kwargs: Any) -> Any:
    """MetaAggregate.__call__: make an aggregate by triggering its created event.

    Set on the metaclass after it is made, so that type checkers check a call of an
    aggregate class against its ``__init__`` and see an instance of it returned.
    """
    created_class = _created_event_class_of(cls)
    init = cls.__init__  # type: ignore[misc]
    arguments, given_id = _bind_init_arguments(cls, init, args, kwargs, created_class)
    if "id" in arguments and not _has_field(created_class, "id"):
        # An id declared as a field is the event's originator_id, not another field.
        del arguments["id"]
    originator_id = given_id if given_id is not None else _create_id(cls, arguments)
    # Not through _create(): an explicit __init__ may take "id", which then stays a field.
    return _start(cls, created_class, originator_id, arguments)


type.__setattr__(MetaAggregate, "__call__", _construct)


def _has_field(event_class: type, name: str) -> bool:
    return name in getattr(event_class, "__dataclass_fields__", {})


def _check_topic_of_triggered(aggregate_class: type, event_class: type) -> None:
    """On an aggregate that declares its TOPIC, only event classes that declare theirs
    are triggered (so that every event it records has a declared topic)."""
    if event_class.__dict__.get("TOPIC"):
        return
    if event_class.__name__ == "Event":
        reason = "its base Event class is not triggered (define an event class of it)"
    else:
        reason = f"{event_class.__qualname__} declares no TOPIC"
    raise ProgrammingError(f"{aggregate_class.__qualname__} declares its TOPIC: {reason}")


def _created_event_class_of(cls: type) -> type:
    """The class of the event that creates ``cls``, made for its current ``__init__``.

    Remade if ``__init__``'s parameters changed since the class was defined, because
    ``@dataclass`` replaces ``__init__`` after the class exists.
    """
    created = cast(type, cls._created_event_class)  # type: ignore[attr-defined]
    if not cls.__dict__.get("_created_generated"):
        return created
    signature = _signature(cls.__init__)  # type: ignore[misc]
    if cls.__dict__.get("_created_for_signature") == signature:
        return created
    bases = tuple(b for b in cls.__bases__ if isinstance(b, MetaAggregate))
    remade = _make_created_class(cls, created.__name__, bases, topic=created.__dict__.get("TOPIC"))
    _set_created_class(cls, remade, generated=True)
    return remade


# ---------------------------------------------------------------------------
# Snapshots.


_TSnapshot = TypeVar("_TSnapshot", bound="CanSnapshotAggregate[Any]")


class CanSnapshotAggregate(HasOriginatorIDVersion[TAggregateID], CanCreateTimestamp):
    """A mixin for snapshot classes: the whole state of an aggregate at a version.

    Any aggregate with public ``id`` and ``version`` can be taken: its state is its
    attributes (``__dict__`` and ``__slots__``), or ``model_dump()`` for a model
    that has one; ``mutate()`` makes it again without calling ``__init__`` (a model
    with ``model_validate()`` is validated from the state instead).
    """

    topic: str
    state: Any

    @classmethod
    def take(cls: type[_TSnapshot], aggregate: Any) -> _TSnapshot:
        if type(aggregate) in _our_aggregate_classes:
            state = _state(aggregate)
            state.pop("_id")
            state.pop("_version")
        else:
            state = _public_state(aggregate)
        state = deepcopy(state)  # the snapshot must not change with the aggregate
        class_version = getattr(type(aggregate), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        return cls(  # type: ignore[call-arg]
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=state,
        )

    def mutate(self, _: Any = None) -> Any:
        aggregate_class = resolve_topic(self.topic)
        state = deepcopy(dict(self.state))  # each aggregate made from it is independent
        try:
            upcast_state(aggregate_class, state, state.pop("class_version", 1))
        except ValueError as error:
            raise ProgrammingError(
                f"Snapshot of {self.originator_id} at version {self.originator_version}: {error}"
            ) from None
        if aggregate_class not in _our_aggregate_classes:
            return _restore(aggregate_class, state)
        new = object.__new__(aggregate_class)
        new.__dict__.update(state)
        new._id = self.originator_id
        new._version = self.originator_version
        new._pending_events = []
        return new


class Snapshot(CanSnapshotAggregate[UUID], DomainEvent):
    """The snapshot class of our aggregates (``Aggregate.Snapshot``)."""

    topic: str
    state: dict[str, Any]


def _public_state(aggregate: Any) -> dict[str, Any]:
    """The state of an aggregate not of ours, from its public interface."""
    model_dump = getattr(aggregate, "model_dump", None)
    if callable(model_dump):
        return dict(model_dump())
    state = dict(getattr(aggregate, "__dict__", {}))
    for name in _slot_names(type(aggregate)):
        if name not in ("__dict__", "__weakref__") and hasattr(aggregate, name):
            state[name] = getattr(aggregate, name)
    return state


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return names


def _restore(aggregate_class: type, state: dict[str, Any]) -> Any:
    """Make an aggregate not of ours from a snapshot's state, without its __init__."""
    model_validate = getattr(aggregate_class, "model_validate", None)
    if callable(model_validate):
        return model_validate(state)
    new: Any = object.__new__(aggregate_class)
    for name, value in state.items():
        object.__setattr__(new, name, value)  # (also past a frozen dataclass's refusal)
    return new


def _set_version(aggregate: Any, value: int) -> None:
    aggregate._version = value


_TBaseAggregate = TypeVar("_TBaseAggregate", bound="BaseAggregate[Any]")

if TYPE_CHECKING:

    class BaseAggregate(Generic[TAggregateID], metaclass=MetaAggregate):
        """The documented generic base, as type checkers see it: ``BaseAggregate[str]``
        has ``str`` ids, and ``Aggregate`` is ``BaseAggregate[UUID]``. At run time
        ``BaseAggregate`` is ``Aggregate`` (``BaseAggregate[str]`` too): the id type of
        an aggregate is that of its created event class (its ``originator_id_type``)."""

        INITIAL_VERSION: ClassVar[int]

        @classmethod
        def create_id(cls, *args: Any, **kwargs: Any) -> TAggregateID: ...

        @classmethod
        def _create(
            cls: type[_TBaseAggregate],
            event_class: type,
            *,
            id: TAggregateID | None = None,
            **kwargs: Any,
        ) -> _TBaseAggregate: ...

        @property
        def id(self) -> TAggregateID: ...

        @property
        def version(self) -> int: ...

        @version.setter
        def version(self, value: int) -> None: ...

        @property
        def created_on(self) -> datetime: ...

        @property
        def modified_on(self) -> datetime: ...

        @property
        def pending_events(self) -> list[Any]: ...

        def trigger_event(self, event_class: type, **kwargs: Any) -> None: ...

        def collect_events(self) -> list[Any]: ...

    _TypedAggregateBase = BaseAggregate
else:
    _TypedAggregateBase = _GenericForTypeCheckers  # ([UUID] adds no base class)


class Aggregate(_TypedAggregateBase[UUID], metaclass=MetaAggregate):
    """Base class of event-sourced aggregates."""

    _is_base_aggregate: ClassVar[bool] = True
    INITIAL_VERSION: ClassVar[int] = 1

    class Event(AggregateEvent):
        pass

    class Created(Event, AggregateCreated):
        pass

    Snapshot = Snapshot

    _id: UUID
    _version: int
    _created_on: datetime
    _modified_on: datetime
    _pending_events: list[Any]

    def __init__(self) -> None:
        pass

    def __class_getitem__(cls, _id_type: Any) -> Any:
        # BaseAggregate[UUID] (the documented generic form) is the class itself.
        return cls

    @classmethod
    def create_id(cls, *args: Any, **kwargs: Any) -> UUID:
        """Return the id of a new aggregate; override to derive it from arguments."""
        return uuid4()

    @classmethod
    def _create(
        cls: type[TAggregate], event_class: type, *, id: UUID | None = None, **kwargs: Any
    ) -> TAggregate:
        """Create a new aggregate by triggering ``event_class`` (a created event)."""
        originator_id = id if id is not None else _create_id(cls, kwargs)
        return cast(TAggregate, _start(cls, event_class, originator_id, kwargs))

    if not TYPE_CHECKING:  # (typed in BaseAggregate)
        # Read in C (attrgetter), without a Python call: the library reads them on
        # every save and get.
        id = property(attrgetter("_id"), doc="The aggregate's id (a UUID).")
        version = property(
            attrgetter("_version"), _set_version, doc="The version of the last event applied."
        )
        created_on = property(attrgetter("_created_on"), doc="When it was created.")
        modified_on = property(attrgetter("_modified_on"), doc="When its last event happened.")

    @property
    def pending_events(self) -> list[Any]:
        return list(self._pending_events)

    def trigger_event(self, event_class: type, **kwargs: Any) -> None:
        """Create an event of ``event_class`` with the next version, apply it, keep it pending."""
        quick = _triggered_quickly.get(event_class)
        if quick is not None and len(kwargs) + 3 == len(quick[0]) and quick[0].issuperset(kwargs):
            # What the event's class would do, without its frozen __init__ (slow) and
            # without mutate()'s checks: the event is made here for the next version.
            timestamp = datetime.now(tz=TZINFO)  # (DomainEvent.create_timestamp)
            version = self._version + 1
            new_event: Any = object.__new__(event_class)
            fields = new_event.__dict__
            fields["originator_id"] = self._id
            fields["originator_version"] = version
            fields["timestamp"] = timestamp
            fields.update(kwargs)
            quick[1].func(self, **kwargs)
            self._version = version
            self._modified_on = timestamp
            self._pending_events.append(new_event)
            return
        if type(self).__dict__.get("TOPIC"):
            _check_topic_of_triggered(type(self), event_class)
        if kwargs.get("timestamp") is None:  # (an event method may take a timestamp)
            kwargs["timestamp"] = event_class.create_timestamp()  # type: ignore[attr-defined]
        new_event = event_class(
            originator_id=self._id, originator_version=self._version + 1, **kwargs
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
        # As documented: the class's name, its id, version and times, then the rest
        # of its state (names without their leading underscore).
        state = _state(self)
        first = ("_id", "_version", "_created_on", "_modified_on")
        attrs = [f"{k[1:]}={state[k]!r}" for k in first if k in state]
        attrs += [f"{k.lstrip('_')}={v!r}" for k, v in state.items() if k not in first]
        return f"{type(self).__name__}({', '.join(attrs)})"


# The base class is made before the metaclass's machinery applies: set it by hand.
Aggregate._created_event_class = Aggregate.Created  # type: ignore[attr-defined]
Aggregate._created_generated = False  # type: ignore[attr-defined]


if not TYPE_CHECKING:
    BaseAggregate = Aggregate  # (see _TypedAggregateBase)


def _state(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in obj.__dict__.items() if k != "_pending_events"}


def _start(cls: type, event_class: type, originator_id: Any, kwargs: dict[str, Any]) -> Any:
    """Trigger the created event of a new aggregate and return the aggregate."""
    id_types = _id_types(event_class)
    if not isinstance(originator_id, id_types):
        raise TypeError(
            f"{cls.__qualname__}: the aggregate id {originator_id!r} is not "
            f"{_id_types_named(id_types)} (the id type of {event_class.__qualname__})"
        )
    if kwargs.get("timestamp") is None:  # (__init__ may take a timestamp)
        kwargs = {**kwargs, "timestamp": event_class.create_timestamp()}  # type: ignore[attr-defined]
    created = event_class(
        originator_id=originator_id,
        originator_version=cls.INITIAL_VERSION,  # type: ignore[attr-defined]
        originator_topic=get_topic(cls),
        **kwargs,
    )
    new = created.mutate(None)
    new._pending_events.append(created)
    return new


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
    """Class decorator: make an event-sourced aggregate of a class not derived from Aggregate.

    ``@aggregate`` or ``@aggregate(created_event_name="Started")``.
    """

    def decorate(original: type) -> type:
        if issubclass(original, Aggregate):
            raise ProgrammingError(f"{original.__qualname__} is already an Aggregate")
        bases = tuple(b for b in original.__bases__ if b is not object) + (Aggregate,)
        namespace = {
            k: v for k, v in original.__dict__.items() if k not in ("__dict__", "__weakref__")
        }
        return MetaAggregate(
            original.__name__, bases, namespace, created_event_name=created_event_name
        )

    return decorate(cls) if cls is not None else decorate
