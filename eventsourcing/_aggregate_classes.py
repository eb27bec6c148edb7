"""How an aggregate class is made from its body (the machinery behind ``MetaAggregate``).

The ``@event`` methods of a class body (``_EventMethod``), the event classes made for
them and for the class (its ``Event`` base and its created event), the ``__init__``
made from annotated fields, an ``id`` declared as a field, and the binding of a call's
arguments to a method's parameters. ``eventsourcing.domain`` is the public face: it
imports this module before it makes its event classes, then gives them here
(``_given_by_domain``), before any aggregate class is made. The classes made here
for a user's aggregate belong to the user's module, as if written in its body.
"""

from __future__ import annotations

import dataclasses
import inspect
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MethodType
from typing import Any, cast
from uuid import UUID

from eventsourcing.utils import _topic_holder

# ---------------------------------------------------------------------------
# What eventsourcing.domain gives (see the module's docstring).

ProgrammingError: type[Exception]
CanMutateAggregate: type
CanInitAggregate: type
MetaDomainEvent: type
_default_apply: Callable[..., Any]
_default_create_timestamp: Callable[..., Any]
_default_mutate: Callable[..., Any]


def _given_by_domain(
    *,
    programming_error: type[Exception],
    can_mutate_aggregate: type,
    can_init_aggregate: type,
    meta_domain_event: type,
) -> None:
    """Take the classes of ``eventsourcing.domain`` that making aggregate classes uses."""
    global ProgrammingError, CanMutateAggregate, CanInitAggregate, MetaDomainEvent
    global _default_apply, _default_create_timestamp, _default_mutate
    ProgrammingError = programming_error
    CanMutateAggregate = can_mutate_aggregate
    CanInitAggregate = can_init_aggregate
    MetaDomainEvent = meta_domain_event
    # The methods an event class has unless it defines its own.
    _default_apply = can_mutate_aggregate.apply  # type: ignore[attr-defined]
    _default_create_timestamp = can_mutate_aggregate.create_timestamp  # type: ignore[attr-defined]
    _default_mutate = can_mutate_aggregate.mutate  # type: ignore[attr-defined]


def _build_aggregate_class(
    cls: type, bases: tuple[type, ...], namespace: dict[str, Any], created_event_name: str | None
) -> None:
    """Equip an aggregate class just made (but for ``Aggregate`` itself) with its
    event classes, its ``__init__`` and its created event class."""
    _declare_id_field(cls, namespace)
    _define_init_from_annotations(cls, bases, namespace)
    _define_base_event(cls, bases, namespace)
    namespace = _adopt_event_classes(cls, namespace)
    _define_method_events(cls, namespace)
    _define_created_event(cls, bases, namespace, created_event_name)
    if "TOPIC" in cls.__dict__:
        _check_declared_topics(cls)


# ---------------------------------------------------------------------------
# Signatures, and the binding of call arguments to parameters.

_signatures: dict[Callable[..., Any], inspect.Signature] = {}


def _signature(func: Callable[..., Any]) -> inspect.Signature:
    try:
        return _signatures[func]
    except KeyError:
        sig = _signatures[func] = inspect.signature(func)
        return sig


class _ArgumentBinder:
    """Binds call arguments to a method's parameters (after ``self``), defaults applied.

    The usual case (named parameters, nothing missing or unknown) is done with a
    few dict operations; anything else goes to ``inspect.Signature.bind``, which
    also words the error.
    """

    def __init__(self, func: Callable[..., Any]):
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())[1:]
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        self.simple = all(p.kind in named for p in params)
        self.positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        self.names = frozenset(p.name for p in params)
        self.defaults = {p.name: p.default for p in params if p.default is not p.empty}

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any], qualname: str) -> dict[str, Any]:
        if self.simple and len(args) <= len(self.positional):
            arguments = dict(zip(self.positional, args))
            if not kwargs or (
                self.names.issuperset(kwargs) and arguments.keys().isdisjoint(kwargs)
            ):
                arguments.update(kwargs)
                if len(arguments) == len(self.names):
                    return arguments
                if self.names.difference(arguments).issubset(self.defaults):
                    return {**self.defaults, **arguments}
        return self._bind_slowly(args, kwargs, qualname)

    def _bind_slowly(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], qualname: str
    ) -> dict[str, Any]:
        try:
            bound = self.signature.bind(None, *args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{qualname}() {error}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(self.signature.parameters)))
        return arguments


_binders: dict[Callable[..., Any], _ArgumentBinder] = {}


def _binder(func: Callable[..., Any]) -> _ArgumentBinder:
    binder = _binders.get(func)
    if binder is None:
        binder = _binders[func] = _ArgumentBinder(func)
    return binder


def _bind_init_arguments(
    cls: type,
    init: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    created_class: type,
) -> tuple[dict[str, Any], UUID | str | None]:
    """Bind a constructor call to ``__init__``; also return an explicit ``id=``, if given."""
    sig = _signature(init)
    takes_id = "id" in sig.parameters
    given_id = None
    if not takes_id and "id" in kwargs:
        kwargs = dict(kwargs)
        given_id = kwargs.pop("id")
    arguments = _binder(init).bind(args, kwargs, f"{cls.__qualname__}.__init__")
    for param in sig.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            arguments.update(arguments.pop(param.name, {}))
        elif param.kind is param.VAR_POSITIONAL:
            raise TypeError(f"{cls.__qualname__}.__init__() cannot take *{param.name}")
    if takes_id:
        given_id = arguments.get("id")
    id_types = _id_types(created_class)
    if given_id is not None and not isinstance(given_id, id_types):
        raise TypeError(
            f"{cls.__qualname__}() argument 'id' must be {_id_types_named(id_types)}, "
            f"not {type(given_id).__qualname__} {given_id!r}"
        )
    return arguments, cast("UUID | str | None", given_id)


def _id_types(event_class: type) -> tuple[type, ...]:
    """The types an id of an aggregate created by ``event_class`` may have: the event
    class's ``originator_id_type`` (say ``UUID`` for ``Aggregate.Created``, ``str`` for
    an event class derived from ``CanInitAggregate[str]``), else either."""
    id_type = getattr(event_class, "originator_id_type", None)
    return (id_type,) if id_type is not None else (UUID, str)


def _id_types_named(id_types: tuple[type, ...]) -> str:
    return " or ".join(f"a {t.__name__}" for t in id_types)


# ---------------------------------------------------------------------------
# What is noted of each event class as it is made (by MetaDomainEvent).

# Event classes whose declared TOPIC another class (not a redefinition of the same
# one) had already: an aggregate that declares its topics refuses them.
_topic_clashes: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()


def _other_class_holding(cls: type, topic: str) -> Any:
    """The class other than ``cls`` (and than its redefinitions) that ``topic`` is
    the topic of, if any."""
    holder = _topic_holder(topic)
    if holder is None or holder is cls or _same_place(holder, cls):
        return None
    return holder


def _same_place(one: Any, other: type) -> bool:
    place = (getattr(one, "__module__", None), getattr(one, "__qualname__", None))
    return place == (other.__module__, other.__qualname__)


def _note_topic_clash(cls: type) -> None:
    declared = cls.__dict__.get("TOPIC")
    if not isinstance(declared, str) or not declared:
        return
    holder = _topic_holder(declared)
    if holder is None or holder is cls:
        return
    if not _same_place(holder, cls):
        _topic_clashes[cls] = holder
    elif isinstance(holder, type) and holder in _topic_clashes:  # (remade from one that clashed)
        _topic_clashes[cls] = _topic_clashes[holder]


# Event classes whose __init__ only sets their fields (the dataclass's own, and no
# __post_init__), with those fields: triggering an event of one of them sets the
# fields directly, as the frozen dataclass __init__ is slow (object.__setattr__).
_plain_event_fields: dict[type, frozenset[str]] = {}


def _note_plain_fields(cls: type, namespace: dict[str, Any]) -> None:
    fields = dataclasses.fields(cast(Any, cls))  # InitVars and ClassVars are not fields
    plain = (
        "__init__" not in namespace
        and not hasattr(cls, "__post_init__")
        and len(fields) == len(cast(Any, cls).__dataclass_fields__)
        and all(f.init for f in fields)
    )
    if plain:
        _plain_event_fields[cls] = frozenset(f.name for f in fields)


# ---------------------------------------------------------------------------
# Methods decorated with @event.

# Each event method's applier (see _applier), with the apply() its class had before.
_own_applies: dict[Callable[..., Any], Callable[..., Any]] = {}
# Which decorated method each generated (or explicitly named) event class applies.
_applied_methods: dict[type, _EventMethod] = {}
# Those of them whose class has plain fields (see _plain_event_fields), keeps the
# default create_timestamp() and mutate(), and has no apply() of its own, with those
# fields: triggered, such an event is made and applied straight away (see
# Aggregate.trigger_event).
_triggered_quickly: dict[type, tuple[frozenset[str], _EventMethod]] = {}


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
        # Parameters naming fields the event class's __init__ does not take: the event
        # makes those values itself (they are given to the method when it is applied).
        self.not_given: frozenset[str] = frozenset()
        # The TOPIC of the event class defined for the method (@event(..., topic=...)).
        self.event_topic: str | None = None
        self.__doc__ = func.__doc__
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self._trigger = self._make_trigger()

    @property
    def event_name(self) -> str:
        if isinstance(self.event_spec, str):
            return self.event_spec
        if self.func.__name__ == "__init__":
            return "Created"
        return "".join(part.capitalize() for part in self.func.__name__.split("_") if part)

    def _make_trigger(self) -> Callable[..., None]:
        """The function that an aggregate's method call runs: bind, then trigger the event."""
        method = self
        binder = _binder(self.func)
        qualname = self.func.__qualname__
        # When every parameter is positional-or-keyword, a call with all of them given
        # by position binds without the binder's call.
        positional = tuple(binder.positional)
        all_positional = binder.simple and len(positional) == len(binder.names)

        def trigger(aggregate: Any, *args: Any, **kwargs: Any) -> None:
            event_class = method.event_class
            assert event_class is not None
            if not kwargs and all_positional and len(args) == len(positional):
                arguments = dict(zip(positional, args))
            else:
                arguments = binder.bind(args, kwargs, qualname)
            for name in method.not_given:
                arguments.pop(name, None)
            aggregate.trigger_event(event_class, **arguments)

        trigger.__name__ = self.func.__name__
        trigger.__qualname__ = qualname
        trigger.__doc__ = self.func.__doc__
        trigger.__wrapped__ = self.func  # type: ignore[attr-defined]  # (its signature)
        return trigger

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        # A bound method of one function made once: cheaper than a closure per call.
        return MethodType(self._trigger, obj)

    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> None:
        # Called through the class: Dog.add_trick(dog, "roll over").
        return self.__get__(obj)(*args, **kwargs)


class _EventProperty(_EventMethod):
    """``@event("Name")`` over a property with a setter: assigning to the property
    triggers the event, whose one field is the setter's value parameter; the setter's
    body applies it. Reading the property reads it as usual."""

    def __init__(self, prop: property, event_spec: str | type | None):
        if prop.fset is None:
            raise ProgrammingError(
                f"@event cannot decorate the property {_property_name(prop)!r}, "
                "which has no setter: decorate its setter"
            )
        _require_event_spec_for_setter(prop.fset, event_spec)
        super().__init__(prop.fset, event_spec)
        _require_one_value_parameter(self)
        self.prop = prop

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self.prop.__get__(obj, objtype)

    def __set__(self, obj: Any, value: Any) -> None:
        self._trigger(obj, value)


def _event_method(func: Any, event_spec: str | type | None) -> _EventMethod:
    if isinstance(func, property):
        return _EventProperty(func, event_spec)
    return _EventMethod(func, event_spec)


def _property_name(prop: property) -> str:
    accessor = prop.fget or prop.fset
    return getattr(accessor, "__name__", "?")


def _require_event_spec_for_setter(setter: Any, event_spec: Any) -> None:
    # A class name derived from a property's name would not say what happened.
    if event_spec is None:
        raise ProgrammingError(
            f"@event on the setter of property {setter.__name__!r} needs an event "
            "name or class: @event('NameChanged')"
        )


def _require_one_value_parameter(setter: _EventMethod) -> None:
    if len(setter.param_names) != 1:
        raise ProgrammingError(
            f"the property setter {setter.func.__qualname__}() must take one value "
            f"(it takes {', '.join(setter.param_names) or 'none'})"
        )


# ---------------------------------------------------------------------------
# Making an aggregate class's event classes, __init__ and created event class.


class _DeclaredId:
    """Stands in for an ``id: UUID`` field declared on an aggregate class.

    The aggregate's id is its created event's ``originator_id``, so the field reads
    ``_id``. The ``__init__`` made for the fields assigns ``self.id``: the created event
    sets ``_id`` first, so the assignment is accepted only when it repeats that id.
    Looked up on the class it raises AttributeError, which tells ``@dataclass`` the
    field has no default (the base class's ``id`` property would be taken as one).
    """

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            name = objtype.__qualname__ if objtype is not None else "aggregate"
            raise AttributeError(f"{name}.id is the id of each aggregate, not a class attribute")
        return obj._id

    def __set__(self, obj: Any, value: Any) -> None:
        current = obj.__dict__.get("_id")
        if value != current:
            raise AttributeError(
                f"{type(obj).__qualname__}.id is read-only: cannot change {current} to {value!r}"
            )


def _declare_id_field(cls: type, namespace: dict[str, Any]) -> None:
    """Make an ``id`` annotation a field that holds the aggregate's id."""
    if "id" not in namespace.get("__annotations__", {}):
        return
    if "id" in namespace:
        raise ProgrammingError(
            f"{cls.__qualname__}.id cannot have a default: it is the aggregate's id, "
            "given when the aggregate is created"
        )
    type.__setattr__(cls, "id", _DeclaredId())


def _declares_id(cls: type) -> bool:
    for base in cls.__mro__:
        if "id" in base.__dict__:
            return isinstance(base.__dict__["id"], _DeclaredId)
    return False


def _fields_templates(bases: tuple[type, ...]) -> tuple[type, ...]:
    """The field templates of the bases, so a subclass's fields follow its bases' fields."""
    templates = (getattr(b, "_fields_template", None) for b in bases)
    return _mro_safe(_unique(t for t in templates if t is not None))


def _define_init_from_annotations(
    cls: type, bases: tuple[type, ...], namespace: dict[str, Any]
) -> None:
    """Give a class that declares fields but no ``__init__`` a dataclass-style ``__init__``.

    The ``__init__`` is made on a throwaway copy of the class (its "fields template"),
    so that the class itself is left as it was written: ``@dataclass`` may still be
    applied to it afterwards, and does not replace the ``__init__`` made here. The
    template derives from the bases' templates, so that, as with dataclasses, inherited
    fields come first. It has a name of its own (``<qualname>._fields_template``, by
    which its topic resolves to it) and no ``TOPIC``: asked for its topic, it would
    otherwise take the class's, which would then resolve to the template.
    """
    annotations = namespace.get("__annotations__", {})
    if "__init__" in namespace or not annotations:
        return
    # Not "__classcell__": making the template would point zero-argument super() at it.
    skipped = ("__dict__", "__weakref__", "__classcell__", "__init_subclass__", "__class_getitem__")
    copied = {k: v for k, v in namespace.items() if k not in skipped}
    if "TOPIC" not in annotations:  # (a field named so stays a field)
        copied.pop("TOPIC", None)
    copied["__qualname__"] = f"{cls.__qualname__}._fields_template"
    try:
        template: Any = dataclass(eq=False, repr=False)(
            type(cls.__name__, _fields_templates(bases), copied)
        )
    except TypeError as error:
        raise TypeError(f"{cls.__qualname__}: {error}") from None
    init = template.__init__
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    type.__setattr__(cls, "__init__", init)
    type.__setattr__(cls, "_fields_template", template)


def _define_base_event(cls: type, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
    """Give each aggregate class its own ``Event`` base class."""
    if "Event" not in namespace:
        event_bases = _unique(b.Event for b in bases if hasattr(b, "Event"))
        cls.Event = _make_event_class(cls, "Event", event_bases, {})  # type: ignore[attr-defined]


def _adopt_event_classes(cls: type, namespace: dict[str, Any]) -> dict[str, Any]:
    """Make each event class written in the class body a subclass of its ``Event``.

    As documented, ``isinstance(e, Dog.Event)`` holds for every event of ``Dog``,
    even one whose class was written on ``Aggregate.Event``, and a base ``Event``'s
    ``apply()`` applies to it. Such a class is replaced, on the aggregate class, by a
    subclass of it and of ``Event`` with the same name; ``@event`` given the class
    written uses its replacement. Returns the namespace with the replacements.
    """
    base_event = cls.Event  # type: ignore[attr-defined]
    adopted: dict[type, type] = {}
    for name, value in namespace.items():
        if (
            name == "Event"
            or not isinstance(value, type)
            or not issubclass(value, CanMutateAggregate)
            or issubclass(value, base_event)
        ):
            continue
        # Adopted bases too, so that the classes written keep their hierarchy.
        bases = (value, *(adopted[b] for b in value.__bases__ if b in adopted), base_event)
        topic = value.__dict__.get("TOPIC")  # (the class adopted answers to it now)
        adopted[value] = _make_event_class(cls, name, _mro_safe(bases), {}, topic=topic)
        type.__setattr__(cls, name, adopted[value])
    if not adopted:
        return namespace
    for value in namespace.values():
        if isinstance(value, _EventMethod) and value.event_spec in adopted:
            value.event_spec = adopted[value.event_spec]
    return {k: adopted.get(v, v) if isinstance(v, type) else v for k, v in namespace.items()}


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
    owner: type,
    name: str,
    bases: tuple[type, ...],
    annotations: dict[str, Any],
    topic: str | None = None,
) -> type:
    namespace: dict[str, Any] = {
        "__annotations__": annotations,
        "__qualname__": f"{owner.__qualname__}.{name}",
        "__module__": owner.__module__,
    }
    if topic is not None:
        namespace["TOPIC"] = topic
    return _most_derived_metaclass(bases)(name, bases, namespace)


def _check_declared_topics(cls: type) -> None:
    """An aggregate class that declares its ``TOPIC`` (so that its stored events do
    not depend on where its code is) must declare one for each event class of its
    body too, each topic its own (as the 9.x library requires): ProgrammingError."""
    topic = cls.__dict__["TOPIC"]
    if not topic:
        return
    if not isinstance(topic, str):
        raise ProgrammingError(f"{cls.__qualname__}.TOPIC must be a str, not {topic!r}")
    holder = _other_class_holding(cls, topic)
    if holder is not None:
        raise ProgrammingError(
            f"{cls.__qualname__}.TOPIC {topic!r} is already the topic of {holder!r}"
        )
    taken = {topic: cls.__qualname__}
    for name, value in cls.__dict__.items():
        if name in ("Event", "_created_event_class") or not _is_event_class(value):
            continue
        event_topic = value.__dict__.get("TOPIC")
        if not isinstance(event_topic, str) or not event_topic:
            raise ProgrammingError(
                f"{cls.__qualname__} declares its TOPIC: its event class {name} must "
                f"declare one too (a TOPIC in its body, or @event({name!r}, topic=...))"
            )
        other = taken.get(event_topic)
        if other is None and value in _topic_clashes:
            other = repr(_topic_clashes[value])
        if other is not None:
            raise ProgrammingError(
                f"{cls.__qualname__}.{name}.TOPIC {event_topic!r} is already the topic of {other}"
            )
        taken[event_topic] = f"{cls.__qualname__}.{name}"


def _is_event_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, CanMutateAggregate)


def _most_derived_metaclass(bases: tuple[type, ...]) -> type:
    """The metaclass a class with ``bases`` gets (events may be models, with their own)."""
    winner: type = MetaDomainEvent if not bases else type(bases[0])
    for base in bases[1:]:
        if issubclass(type(base), winner):
            winner = type(base)
    return winner


def _annotations_of(method: _EventMethod, base: type) -> dict[str, Any]:
    """The event's fields: the method's parameters, with their annotations (an event
    class that converts its fields, such as a pydantic model, needs them to read its
    values back from storage), but for fields of ``base`` not set by its __init__."""
    parameters = method.signature.parameters
    not_given = _fields_not_given(base)
    return {
        name: _annotation(parameters[name]) for name in method.param_names if name not in not_given
    }


_not_given: dict[type, frozenset[str]] = {}


def _fields_not_given(event_class: type) -> frozenset[str]:
    """The fields of an event class that its __init__ does not take (``field(init=False)``,
    say one whose default factory reads a context variable): an event method may name
    one as a parameter, to be given the event's value when the event is applied."""
    try:
        return _not_given[event_class]
    except KeyError:
        pass
    names: frozenset[str] = frozenset()
    if dataclasses.is_dataclass(event_class):
        names = frozenset(f.name for f in dataclasses.fields(event_class) if not f.init)
    _not_given[event_class] = names
    return names


def _annotation(parameter: inspect.Parameter) -> Any:
    return Any if parameter.annotation is parameter.empty else parameter.annotation


def _define_method_events(cls: type, namespace: dict[str, Any]) -> None:
    for attr, value in _event_methods_of(namespace):
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
                _annotations_of(value, cls.Event),  # type: ignore[attr-defined]
                topic=value.event_topic,
            )
            setattr(cls, name, event_class)
        if event_class in _applied_methods:
            raise ProgrammingError(
                f"{cls.__qualname__}.{attr}: the event class {event_class.__qualname__} "
                "is already applied by another @event method"
            )
        value.event_class = event_class
        value.not_given = _fields_not_given(event_class).intersection(value.param_names)
        _applied_methods[event_class] = value
        own_apply = getattr(event_class, "apply", _default_apply)
        applier = _applier(value, own_apply)
        type.__setattr__(event_class, "apply", applier)
        _own_applies[applier] = own_apply
        _keep_own_apply_in_subclasses(event_class, applier)
        _note_quick_trigger(event_class, value, has_own_apply=own_apply is not _default_apply)


def _event_methods_of(namespace: dict[str, Any]) -> list[tuple[str, _EventMethod]]:
    """The class body's @event methods, including property setters decorated with
    ``@event`` under ``@name.setter`` (each once), but not ``__init__``."""
    found: dict[_EventMethod, str] = {}
    for attr, value in namespace.items():
        if isinstance(value, property) and isinstance(value.fset, _EventMethod):
            if value.fset not in found:  # (not also in the body, as property(get, set) may)
                _require_event_spec_for_setter(value.fset.func, value.fset.event_spec)
                _require_one_value_parameter(value.fset)
                found[value.fset] = attr
        elif isinstance(value, _EventMethod) and attr != "__init__":
            found[value] = attr
    return [(attr, method) for method, attr in found.items()]


def _applier(method: _EventMethod, own_apply: Callable[..., Any]) -> Callable[..., None]:
    """The apply() of an event class that ``method`` applies: the method's body runs
    with the event's fields, then the class's own apply() (say, of a base ``Event``
    class written in the aggregate), as the documented API orders them."""
    func = method.func
    names = method.param_names

    def apply(event: Any, aggregate: Any) -> None:
        # A loop, not a comprehension: on Python 3.11 that is a call of its own.
        kwargs = {}
        for name in names:
            kwargs[name] = getattr(event, name)
        func(aggregate, **kwargs)

    def apply_then_own(event: Any, aggregate: Any) -> None:
        apply(event, aggregate)
        own_apply(event, aggregate)

    return apply if own_apply is _default_apply else apply_then_own


def _keep_own_apply_in_subclasses(event_class: type, applier: Callable[..., Any]) -> None:
    """A method's body applies events of its class only: a subclass that would inherit
    the applier gets back the apply() it had (see also MetaDomainEvent)."""
    subclass: type
    for subclass in event_class.__subclasses__():
        if getattr(subclass, "apply", None) is applier:
            type.__setattr__(subclass, "apply", _own_applies[applier])


def _note_quick_trigger(event_class: type, method: _EventMethod, *, has_own_apply: bool) -> None:
    names = _plain_event_fields.get(event_class)
    own = (getattr(event_class, "create_timestamp", None), getattr(event_class, "mutate", None))
    defaults = (_default_create_timestamp, _default_mutate)
    if names is not None and not has_own_apply and own == defaults:
        _triggered_quickly[event_class] = (names, method)


def _define_created_event(
    cls: type, bases: tuple[type, ...], namespace: dict[str, Any], created_event_name: str | None
) -> None:
    """Decide which class of event creates ``cls``, defining it if need be.

    In order: a class given to ``@event`` on ``__init__``; the class named by
    ``@event("Name")`` or ``created_event_name``, if defined in the class body, else
    defined from ``__init__``'s parameters; the one "created" class in the class body;
    otherwise one named as the base aggregate's (``Created`` by default).
    """
    init = namespace.get("__init__")
    if isinstance(init, _EventMethod):
        # The class keeps the plain function as __init__, run when Created is applied.
        type.__setattr__(cls, "__init__", init.func)
        if isinstance(init.event_spec, type):
            _set_created_class(cls, init.event_spec, generated=False)
            return
        created_event_name = init.event_name
        created_topic = init.event_topic
    else:
        created_topic = None
    declared = {
        k: v
        for k, v in namespace.items()
        if isinstance(v, type) and issubclass(v, CanInitAggregate)
    }
    if created_event_name is not None:
        if created_event_name in declared:
            _set_created_class(cls, declared[created_event_name], generated=False)
            return
        name = created_event_name
    elif len(declared) == 1:
        _set_created_class(cls, next(iter(declared.values())), generated=False)
        return
    elif len(declared) > 1:
        raise ProgrammingError(
            f"{cls.__qualname__} defines several created event classes "
            f"({', '.join(sorted(declared))}): say which one creates it with "
            f"created_event_name=..."
        )
    else:
        name = _inherited_created_name(cls) or "Created"
    created = _make_created_class(cls, name, bases, topic=created_topic)
    _set_created_class(cls, created, generated=True)


def _set_created_class(cls: type, created: type, *, generated: bool) -> None:
    type.__setattr__(cls, "_created_event_class", created)
    type.__setattr__(cls, "_created_generated", generated)
    type.__setattr__(cls, "_created_for_signature", _signature(cls.__init__))  # type: ignore[misc]


def _make_created_class(
    cls: type, name: str, bases: tuple[type, ...], topic: str | None = None
) -> type:
    """Define the created event class ``name`` with ``__init__``'s parameters as fields."""
    params = list(_signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    if _declares_id(cls):
        params = [p for p in params if p.name != "id"]  # the id is the event's originator_id
    annotations = {
        p.name: _annotation(p) for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    inherited = _unique(_created_class_of_base(b) for b in bases if hasattr(b, "Created"))
    event_bases = _mro_safe(inherited + (cls.Event,))  # type: ignore[attr-defined]
    created = _make_event_class(cls, name, event_bases, annotations, topic=topic)
    type.__setattr__(cls, name, created)
    return created


def _created_class_of_base(base: type) -> type:
    return cast(type, base.__dict__.get("_created_event_class") or base.Created)  # type: ignore[attr-defined]


def _inherited_created_name(cls: type) -> str | None:
    for base in cls.__mro__[1:]:
        created = base.__dict__.get("_created_event_class")
        if created is not None:
            return cast(str, created.__name__)
    return None
