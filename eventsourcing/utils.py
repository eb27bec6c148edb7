"""Small tools every layer uses: topics, environment lookup, retries."""

from __future__ import annotations

import importlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from functools import wraps
from types import ModuleType
from typing import Any, ClassVar, TypeVar

__all__ = [
    "EnvType",
    "Environment",
    "EventSourcingError",
    "TopicError",
    "clear_topic_cache",
    "construct_topic",
    "get_method_name",
    "get_topic",
    "register_topic",
    "resolve_topic",
    "retry",
    "reversed_keys",
    "strtobool",
    "upcast_state",
]


class EventSourcingError(Exception):
    """Base class of the errors this library raises."""


class TopicError(EventSourcingError, ImportError):
    """A topic could not be resolved to a module or class."""


# Topics already computed or resolved. Classes register themselves when they are
# defined, so a class redefined in ``__main__`` (or defined where no module can
# be imported, as under ``exec``) still resolves to its latest definition.
_topic_cache: dict[str, Any] = {}
# Old topics (or old module names, or old module:qualname prefixes) that were
# renamed, mapped to what they mean now.
_renamed_topics: dict[str, Any] = {}
_topic_lock = threading.Lock()
# The topic of each class seen, so that mapping an event does not format it again.
_topics_of: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def get_topic(obj: Any) -> str:
    """Return the topic of a class, function or module: ``module:qualname``, or the
    ``TOPIC`` a class declares in its own body (which then resolves to it)."""
    try:
        return _topics_of[obj]
    except (KeyError, TypeError):  # not seen yet, or not hashable
        pass
    if isinstance(obj, ModuleType):
        return obj.__name__
    declared = _declared_topic(obj)
    topic = declared if declared is not None else f"{obj.__module__}:{obj.__qualname__}"
    _topic_cache[topic] = obj
    try:
        _topics_of[obj] = topic
    except TypeError:
        pass
    return topic


def _topic_holder(topic: str) -> Any:
    """The object ``topic`` resolves to without importing anything (None if not known)."""
    holder = _renamed_topics.get(topic)
    return holder if holder is not None else _topic_cache.get(topic)


def _declared_topic(obj: Any) -> str | None:
    """The ``TOPIC`` string of an object: of a class, only one set in its own body
    (a subclass does not take its base's)."""
    if isinstance(obj, type):
        declared = obj.__dict__.get("TOPIC")
    else:
        declared = getattr(obj, "TOPIC", None)
    return declared if isinstance(declared, str) else None


def construct_topic(obj: Any, /) -> str:
    """The topic of a class or function, made anew: its ``TOPIC`` attribute if it
    declares one, else ``module:qualname`` (``get_topic`` remembers what it made)."""
    declared = _declared_topic(obj)
    if declared is not None:
        return declared
    try:
        return f"{obj.__module__}:{obj.__qualname__}"
    except AttributeError:
        raise TypeError(f"Cannot make a topic for {obj!r}: it has no module or qualname") from None


def register_topic(topic: str, obj: Any) -> None:
    """Make ``topic`` (an old one) resolve to ``obj``, after a class or module was renamed.

    ``topic`` may name a class (``oldmodule:OldName``), a module
    (``oldmodule``), a package whose modules follow (``oldpackage``, so that
    ``oldpackage.sub:Name`` resolves in ``obj``'s ``sub``), or a nested path
    prefix (``oldmodule:Outer``).
    """
    with _topic_lock:
        existing = _renamed_topics.get(topic)
        if existing is not None and existing is not obj:
            raise TopicError(f"Topic {topic!r} is already registered for {existing!r}")
        _renamed_topics[topic] = obj
        _topic_cache.pop(topic, None)


def clear_topic_cache() -> None:
    """Forget resolved topics (renamed topics stay registered)."""
    _topic_cache.clear()


def resolve_topic(topic: str) -> Any:
    """Return the module, class or function that ``topic`` names."""
    try:
        return _topic_cache[topic]
    except KeyError:
        pass
    obj = _resolve_uncached(topic)
    _topic_cache[topic] = obj
    return obj


def _resolve_uncached(topic: str) -> Any:
    if topic in _renamed_topics:
        return _renamed_topics[topic]
    module_name, _, qualname = topic.partition(":")
    # A renamed module, or a renamed outer class whose nested names follow.
    parts = qualname.split(".") if qualname else []
    for cut in range(len(parts), -1, -1):
        prefix = module_name + (":" + ".".join(parts[:cut]) if cut else "")
        if prefix in _renamed_topics:
            return _get_attrs(_renamed_topics[prefix], parts[cut:], topic)
    renamed_module = _renamed_package_module(module_name)
    if renamed_module is not None:
        return resolve_topic(renamed_module + (":" + qualname if qualname else ""))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise TopicError(
            f"Cannot resolve topic {topic!r}: module {module_name!r} not found"
            " (if the class moved, call register_topic() with the old topic)"
        ) from error
    return _get_attrs(module, parts, topic)


def _renamed_package_module(module_name: str) -> str | None:
    """The module's name now, if a package above it was renamed (``old`` registered
    for a package turns ``old.domain`` into ``<package>.domain``); else None."""
    parts = module_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        package = _renamed_topics.get(".".join(parts[:cut]))
        if isinstance(package, ModuleType):
            return ".".join([package.__name__, *parts[cut:]])
    return None


def _get_attrs(obj: Any, names: list[str], topic: str) -> Any:
    for name in names:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise TopicError(
                f"Cannot resolve topic {topic!r}: {name!r} not found"
                " (if the class moved, call register_topic() with the old topic)"
            ) from None
    return obj


def upcast_state(cls: type, state: dict[str, Any], from_version: int) -> None:
    """Bring ``state`` saved at ``from_version`` up to ``cls.class_version``, in place,
    with the class's ``upcast_vN_vM`` static methods (raises ``ValueError`` if one is missing).
    """
    to_version = getattr(cls, "class_version", 1)
    for version in range(from_version, to_version):
        upcast = getattr(cls, f"upcast_v{version}_v{version + 1}", None)
        if upcast is None:
            raise ValueError(
                f"{cls.__qualname__} has class_version {to_version} but no "
                f"upcast_v{version}_v{version + 1}() for state of version {from_version}"
            )
        upcast(state)


_TRUE = {"y", "yes", "t", "true", "on", "1"}
_FALSE = {"n", "no", "f", "false", "off", "0"}


def strtobool(val: str) -> bool:
    """Interpret a setting such as ``"yes"`` or ``"0"`` as a boolean."""
    value = val
    lowered = str(value).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"Invalid truth value {value!r}: expected one of {sorted(_TRUE | _FALSE)}")


# The settings given to an application (the documented 9.x name).
EnvType = Mapping[str, str]


class Environment(dict[str, str]):
    """Settings for one named application.

    ``get(key)`` tries ``<NAME>_<KEY>`` first (upper-cased application name),
    then ``<KEY>``, so one setting can target one application only.
    """

    def __init__(self, name: str = "", env: Mapping[str, str] | None = None):
        super().__init__(env or {})
        self.name = name

    def create_keys(self, key: str) -> list[str]:
        keys = []
        if self.name:
            keys.append(self.name.upper().replace(".", "_").replace("-", "_") + "_" + key)
        keys.append(key)
        return keys

    def get(self, key: str, default: Any = None) -> Any:
        for candidate in self.create_keys(key):
            value = super().get(candidate)
            if value is not None:
                return value
        return default

    @classmethod
    def for_application(
        cls, name: str, class_env: Mapping[str, str], given: Mapping[str, str] | None
    ) -> Environment:
        """Merge settings: the given ``env`` > ``os.environ`` > the class's ``env``."""
        merged: dict[str, str] = dict(class_env)
        merged.update(os.environ)
        if given:
            merged.update(given)
        return cls(name, merged)


class NamedAfterClass:
    """A class whose ``name`` is each subclass's own name, unless the subclass gives
    one (applications: the prefix of their settings)."""

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__


def reversed_keys(d: Mapping[Any, Any]) -> Iterator[Any]:
    """The keys of ``d``, last first (dicts keep their insertion order)."""
    return reversed(list(d.keys()))


F = TypeVar("F", bound=Callable[..., Any])


def retry(
    exc: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    max_attempts: int = 1,
    wait: float = 0,
    stall: float = 0,
) -> Callable[[F], F]:
    """Retry the decorated function when it raises ``exc``.

    Tries at most ``max_attempts + 1`` times, sleeping ``wait`` seconds (doubling
    each time) between attempts, after an initial ``stall``.
    """
    if isinstance(exc, type) and not issubclass(exc, BaseException):
        raise TypeError(f"retry() expects an exception class, got {exc!r}")
    if callable(exc) and not isinstance(exc, type):
        # Used bare, as @retry: exc is the decorated function.
        return retry()(exc)

    def decorator(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if stall:
                time.sleep(stall)
            delay = wait
            attempts = 0
            while True:
                try:
                    return func(*args, **kwargs)
                except exc:
                    attempts += 1
                    if attempts > max_attempts:
                        raise
                    if delay:
                        time.sleep(delay)
                        delay *= 2

        return wrapper  # type: ignore[return-value]

    return decorator


def get_method_name(method: Any) -> str:
    """The qualified name of a function or method ("Dog.add_trick")."""
    return str(method.__qualname__)
