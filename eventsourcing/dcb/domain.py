"""Decision models for dynamic consistency boundaries (compatible with the
``eventsourcing.dcb.domain`` API of eventsourcing 9.5).

A *decision* is a domain event without an originator: it is recorded with tags
(:class:`Tagged`), and a *perspective* is a decision model built from the decisions that
its consistency boundary (a list of :class:`Selector`) selects. Three kinds of
perspective are given: :class:`EnduringObject` (much like an aggregate, its ID is its
tag), :class:`Group` (decisions across several enduring objects) and :class:`Slice`
(one use case with a boundary of its own).

Methods of a perspective decorated with ``@event(DecisionClass)`` (the decorator of
``eventsourcing.domain``) say how a decision of that class changes the perspective's
state; those not named ``_`` also trigger that decision when called.
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, ABCMeta, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast
from uuid import uuid4

from eventsourcing.domain import AbstractDecision, CommandMethodDecorator, ProgrammingError
from eventsourcing.utils import get_topic, resolve_topic

__all__ = [
    "Decision",
    "EnduringObject",
    "Group",
    "InitialDecision",
    "MetaEnduringObject",
    "MetaPerspective",
    "MetaSlice",
    "MetaSupportsEventDecorator",
    "Perspective",
    "Selector",
    "Slice",
    "TDecision",
    "TGroup",
    "TPerspective",
    "TSlice",
    "Tagged",
]


# The names of the parameters each handler takes by keyword (None: it takes **kwargs).
_parameter_names: dict[Callable[..., Any], frozenset[str] | None] = {}


def _names_taken(func: Callable[..., Any]) -> frozenset[str] | None:
    try:
        return _parameter_names[func]
    except KeyError:
        pass
    params = list(inspect.signature(func).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        names = None
    else:
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names = frozenset(p.name for p in params if p.kind in keyword)
    _parameter_names[func] = names
    return names


def _arguments_for(func: Callable[..., Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a decision that ``func`` names (all of them if it takes **kwargs)."""
    names = _names_taken(func)
    if names is None:
        return fields
    return {k: v for k, v in fields.items() if k in names}


def _call_handler(handler: Callable[..., Any], obj: Any, decision: Decision) -> None:
    kwargs = _arguments_for(handler, decision.as_dict())
    kwargs.pop("self", None)
    try:
        handler(obj, **kwargs)
    except TypeError as error:
        missing = _missing_arguments(handler, kwargs)
        if not missing:
            raise  # (raised by the method's body)
        raise TypeError(
            f"{type(decision).__qualname__} cannot be applied to {type(obj).__qualname__} "
            f"by {handler.__qualname__}(): the decision has no field {', '.join(missing)}"
        ) from error


def _missing_arguments(handler: Callable[..., Any], kwargs: dict[str, Any]) -> list[str]:
    """The parameters of a handler (after self) without a default that ``kwargs`` lacks."""
    params = list(inspect.signature(handler).parameters.values())[1:]
    return [
        p.name
        for p in params
        if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name not in kwargs
    ]


class Decision(AbstractDecision):
    """Root of the classes of decisions (the events of a DCB domain model).

    Subclasses define their fields, as data classes for example; :meth:`as_dict` gives
    them by name to the methods that apply the decision.
    """

    def as_dict(self) -> dict[str, Any]:
        """The decision's fields by name (a data class's fields, else its attributes)."""
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dict(vars(self))

    def mutate(self, obj: Any) -> Any:
        """Apply this decision to the perspective ``obj`` and return it."""
        if obj is None:
            raise ProgrammingError(
                f"{type(self).__qualname__} is not an initial decision: it cannot make "
                "an enduring object (there is nothing to apply it to)"
            )
        handler = _handler_for(type(obj), type(self))
        if handler is not None:
            _call_handler(handler, obj, self)
        self.apply(obj)
        return obj

    def apply(self, obj: Any) -> None:
        """Extension point: further changes to ``obj`` made by this decision."""


class InitialDecision(Decision):
    """The first decision of an enduring object: it names the object's class by its
    topic, and the object's ID by a field named after the class (``student_id`` for
    ``Student``)."""

    originator_topic: str

    def mutate(self, obj: Any) -> Any:
        if obj is not None:
            # Another perspective (a slice, say) that projects this decision.
            return super().mutate(obj)
        return self._make_enduring_object()

    def _make_enduring_object(self) -> Any:
        fields = self.as_dict()
        topic = fields.pop("originator_topic", None)
        if topic is None:
            raise ProgrammingError(f"{type(self).__qualname__} has no originator_topic")
        originator_type = resolve_topic(topic)
        if not (isinstance(originator_type, type) and issubclass(originator_type, EnduringObject)):
            raise TypeError(f"Originator type not subclass of EnduringObject: {originator_type!r}")
        id_name = self.id_attr_name(originator_type)
        if id_name not in fields:
            raise ProgrammingError(
                f"{type(self).__qualname__} has no field {id_name!r} for the ID of "
                f"{originator_type.__qualname__}"
            )
        object_id = fields.pop(id_name)
        obj = originator_type.__new__(originator_type)
        obj.id = object_id
        init = type(obj).__init__
        if init is not object.__init__:
            kwargs = _arguments_for(init, fields)
            try:
                init(obj, **kwargs)
            except TypeError as error:
                raise TypeError(
                    f"{type(self).__qualname__} cannot __init__ "
                    f"{originator_type.__qualname__} with kwargs {kwargs}: {error}"
                ) from error
        self.apply(obj)
        return obj

    @classmethod
    def id_attr_name(cls, enduring_object_class: type[Any]) -> str:
        """The name of the field that holds the ID of an enduring object of a class."""
        return f"{enduring_object_class.__name__.lower()}_id"


TDecision = TypeVar("TDecision", bound=Decision)
"""Any subclass of :class:`Decision`."""


class Tagged(Generic[TDecision]):
    """A decision with its tags: what is recorded as one DCB event."""

    __slots__ = ("decision", "tags")

    def __init__(self, tags: list[str], decision: TDecision) -> None:
        self.tags = tags
        self.decision = decision

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tagged)
            and self.tags == other.tags
            and self.decision == other.decision
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Tagged(tags={self.tags!r}, decision={self.decision!r})"


@dataclass
class Selector:
    """One criterion of a consistency boundary: decisions of any of ``types`` (any type
    if none) that have all of ``tags``."""

    types: Sequence[type[Decision]] = ()
    tags: Sequence[str] = ()


# ---------------------------------------------------------------------------
# Perspectives.

_Handler = Callable[..., Any]


class _RecordingNamespace(dict[str, Any]):
    """A class body's namespace that remembers every decorated method assigned in it,
    also those that a later one of the same name (``_``) replaces."""

    def __init__(self) -> None:
        super().__init__()
        self.event_methods: list[tuple[str, CommandMethodDecorator]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, CommandMethodDecorator):
            self.event_methods.append((key, value))
        super().__setitem__(key, value)


class MetaPerspective(ABCMeta):
    """Learns from the ``@event`` methods of a perspective class which decisions it
    projects, and which method applies each."""

    _decision_handlers: dict[type[Decision], _Handler]
    projected_types: list[type[Decision]]

    @classmethod
    def __prepare__(mcs, name: str, bases: tuple[type, ...], **kwds: Any) -> Any:  # type: ignore[override]
        return _RecordingNamespace()

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> Any:
        event_methods = getattr(namespace, "event_methods", [])
        cls = super().__new__(mcs, name, bases, dict(namespace), **kwargs)
        handlers: dict[type[Decision], _Handler] = {}
        for base in reversed(cls.__mro__[1:]):
            handlers.update(base.__dict__.get("_decision_handlers", {}))
        own_types: list[type[Decision]] = []
        for attr_name, method in event_methods:
            decision_class = _decision_class_of(cls, attr_name, method)
            handlers[decision_class] = method.func
            own_types.append(decision_class)
            mcs._install(cls, attr_name, method, decision_class)
        cls._decision_handlers = handlers
        cls.projected_types = own_types
        return cls

    def __init__(
        cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(name, bases, namespace, **kwargs)

    @staticmethod
    def _install(
        cls: type, attr_name: str, method: CommandMethodDecorator, decision_class: type
    ) -> None:
        if attr_name == "__init__":
            # Making the object runs the plain __init__ (see InitialDecision.mutate).
            type.__setattr__(cls, "__init__", method.func)
        elif attr_name == "_":
            # Only applies decisions: not a method to call.
            if isinstance(cls.__dict__.get("_"), CommandMethodDecorator):
                type.__delattr__(cls, "_")
        else:
            # Calling it triggers the decision (via the perspective's trigger_event).
            method.event_class = decision_class


def _decision_class_of(cls: type, attr_name: str, method: CommandMethodDecorator) -> type:
    spec = method.event_spec
    if not (isinstance(spec, type) and issubclass(spec, Decision)):
        raise ProgrammingError(
            f"@event on {cls.__qualname__}.{attr_name}() must name a Decision class "
            f"(a perspective's methods apply decisions), not {spec!r}"
        )
    return spec


def _handler_for(perspective_class: type, decision_class: type) -> _Handler | None:
    handlers: dict[type, _Handler] = getattr(perspective_class, "_decision_handlers", {})
    handler = handlers.get(decision_class)
    if handler is None and handlers:
        # A subclass of a projected decision class is applied like it.
        for base in decision_class.__mro__[1:]:
            handler = handlers.get(base)
            if handler is not None:
                break
    return handler


class Perspective(ABC, Generic[TDecision], metaclass=MetaPerspective):
    """A decision model: the state made by the decisions its consistency boundary
    selects, and the new decisions it makes (to be saved with that boundary as the
    append condition, after :attr:`last_known_position`)."""

    last_known_position: int | None
    new_decisions: list[Tagged[TDecision]]
    # The decision classes this class's @event methods name (set by the metaclass).
    projected_types: ClassVar[list[type[Decision]]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        self.last_known_position = None
        self.new_decisions = []
        return self

    @abstractmethod
    def consistency_boundary(self) -> Selector | Sequence[Selector]:
        """The selectors of the decisions this perspective's decisions depend on."""

    def trigger_event(
        self,
        decision_cls: Callable[..., TDecision],
        tags: Sequence[str] = (),
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Make a decision of ``decision_cls`` with ``tags``, apply it, keep it to save."""
        tagged = Tagged[TDecision](tags=list(tags), decision=decision_cls(*args, **kwargs))
        tagged.decision.mutate(self)
        self.new_decisions.append(tagged)

    def append_new_decision(self, *tagged: Tagged[TDecision]) -> None:
        """Keep already made tagged decisions to save (they are not applied)."""
        self.new_decisions.extend(tagged)

    def collect_events(self) -> list[Tagged[TDecision]]:
        """Take the new decisions (leaving none)."""
        collected, self.new_decisions = self.new_decisions, []
        return collected

    collect_new_decisions = collect_events


TPerspective = TypeVar("TPerspective", bound=Perspective[Any])

# The documented 9.5 name of the metaclass that reads the @event methods.
MetaSupportsEventDecorator = MetaPerspective


class MetaEnduringObject(MetaPerspective):
    """Makes an enduring object when its class is called: by its initial decision."""

    _initial_decision_class: type[InitialDecision] | None

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> Any:
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        cls._initial_decision_class = _initial_decision_class_of(cls, namespace)
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        initial = cls._initial_decision_class
        if initial is None:
            raise ProgrammingError(
                f"Enduring object class {cls.__name__} has no InitialDecision class: "
                f"define a subclass of InitialDecision as a nested class of {cls.__name__} "
                "(or decorate __init__ with @event(ItsClass))"
            )
        if args:
            kwargs = _bind_positionally(cls, args, kwargs)
        return cast(Any, cls)._create(decision_cls=initial, **kwargs)


def _initial_decision_class_of(
    cls: type, namespace: dict[str, Any]
) -> type[InitialDecision] | None:
    for attr_name, method in getattr(namespace, "event_methods", []):
        spec = method.event_spec
        if attr_name == "__init__" and isinstance(spec, type) and issubclass(spec, InitialDecision):
            return spec
    for value in namespace.values():
        if isinstance(value, type) and issubclass(value, InitialDecision):
            return value
    for base in cls.__mro__[1:]:
        inherited = base.__dict__.get("_initial_decision_class")
        if inherited is not None:
            return cast(type[InitialDecision], inherited)
    return None


def _init_of(cls: type) -> Callable[..., Any]:
    return next(k.__dict__["__init__"] for k in cls.__mro__ if "__init__" in k.__dict__)


def _bind_positionally(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a call of an enduring object class with positional ones."""
    signature = inspect.signature(_init_of(cls))
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError as error:
        raise TypeError(f"{cls.__qualname__}(): {error}") from error
    arguments = dict(bound.arguments)
    arguments.pop(next(iter(signature.parameters)), None)
    return arguments


if TYPE_CHECKING:
    # For type checkers, EnduringObject[Decision] means EnduringObject[Decision, str].
    from typing_extensions import TypeVar as _TypeVarWithDefault

    TID = _TypeVarWithDefault("TID", bound=str, default=str)
else:
    TID = TypeVar("TID", bound=str)


class EnduringObject(Perspective[TDecision], Generic[TDecision, TID], metaclass=MetaEnduringObject):
    """A perspective with an identity, much like an aggregate: its decisions are
    tagged with its ID, which is also its consistency boundary.

    Calling the class triggers its initial decision (the nested InitialDecision
    subclass, or the one that decorates ``__init__``).
    """

    id: TID
    _initial_decision_class: ClassVar[type[InitialDecision] | None]

    def __class_getitem__(cls, params: Any) -> Any:
        # EnduringObject[Decision] means EnduringObject[Decision, str].
        if not isinstance(params, tuple):
            params = (params, str)
        return super().__class_getitem__(params)  # type: ignore[misc]

    @classmethod
    def _create(cls, decision_cls: type[InitialDecision], **kwargs: Any) -> Any:
        object_id = cls._create_id()
        id_name = decision_cls.id_attr_name(cls)
        for reserved in (id_name, "originator_topic", "tags"):
            if reserved in kwargs:
                raise ProgrammingError(
                    f"{cls.__qualname__}() cannot be given {reserved!r}: it is set by the library"
                )
        fields: dict[str, Any] = {id_name: object_id, "originator_topic": get_topic(cls)}
        fields.update(kwargs)
        try:
            decision = decision_cls(**fields)
        except TypeError as error:
            raise TypeError(
                f"Unable to construct {decision_cls.__qualname__} event with kwargs "
                f"{fields}: {error}"
            ) from error
        tagged = Tagged[Any](tags=[object_id], decision=decision)
        obj = decision.mutate(None)
        obj.new_decisions.append(tagged)
        return obj

    @classmethod
    def _create_id(cls) -> TID:
        return cast(TID, f"{cls.__name__.lower()}-{uuid4()}")

    def consistency_boundary(self) -> list[Selector]:
        return [Selector(tags=[self.id])]

    def trigger_event(
        self,
        decision_cls: Callable[..., TDecision],
        tags: Sequence[str] = (),
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().trigger_event(decision_cls, [self.id, *tags], *args, **kwargs)


class Group(Perspective[TDecision]):
    """Decisions across several enduring objects (given when it is made): each is
    tagged with all their IDs and applied to each of them; the boundary is the union
    of theirs."""

    _enduring_objects: list[EnduringObject[TDecision, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls, *args, **kwargs)
        members = [*args, *kwargs.values()]
        self._enduring_objects = [m for m in members if isinstance(m, EnduringObject)]
        return self

    def consistency_boundary(self) -> list[Selector]:
        selectors: list[Selector] = []
        for obj in self._enduring_objects:
            boundary = obj.consistency_boundary()
            for selector in [boundary] if isinstance(boundary, Selector) else boundary:
                selectors.append(Selector(types=selector.types, tags=selector.tags))
        return selectors

    def trigger_event(
        self,
        decision_cls: Callable[..., TDecision],
        tags: Sequence[str] = (),
        *args: Any,
        **kwargs: Any,
    ) -> None:
        members = self._enduring_objects
        tagged = Tagged[TDecision](
            tags=[o.id for o in members] + list(tags),
            decision=decision_cls(*args, **kwargs),
        )
        for obj in members:
            tagged.decision.mutate(obj)
        self.new_decisions.append(tagged)


class MetaSlice(MetaPerspective):
    """Notes whether a slice projects any decisions (else it need not read any)."""

    do_projection: bool

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> Any:
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        cls.do_projection = bool(cls._decision_handlers)
        return cls


class Slice(Perspective[TDecision], metaclass=MetaSlice):
    """One use case: a boundary, the projection of the decisions it selects (its
    ``@event`` methods) and :meth:`execute`, which may make new decisions."""

    do_projection: ClassVar[bool]

    def execute(self) -> None:
        """The command: check the rules against the projected state, trigger decisions."""


TSlice = TypeVar("TSlice", bound=Slice[Any])
TGroup = TypeVar("TGroup", bound=Group[Any])
