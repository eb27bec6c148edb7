"""Dispatch on the type of a method's first argument, as used by policies."""

from __future__ import annotations

import functools
import threading
from typing import Any

__all__ = ["singledispatchmethod"]


class singledispatchmethod(functools.singledispatchmethod):  # noqa: N801 (public name)
    """``functools.singledispatchmethod`` that also says which types it handles.

    Use ``@policy.register(Dog.TrickAdded)`` to add an implementation for one
    event class; the undecorated function is the default for all others.
    """

    def __init__(self, func: Any):
        super().__init__(func)
        # The implementation for each event class seen: functools keeps such a cache
        # too, but weakly keyed, and a WeakKeyDictionary lookup is slow on a hot path.
        # (Event classes live as long as the program: their topics refer to them.)
        self.implementations: dict[type, Any] = {}
        # Functions registered by an annotation naming a class not defined yet (such
        # as the enclosing aggregate's event, ``"Dog.Registered"``): registered on
        # first use, when the names resolve.
        self.deferred: list[Any] = []
        self._deferred_lock = threading.Lock()

    def register(self, cls: Any, method: Any = None) -> Any:
        self.implementations.clear()
        try:
            return super().register(cls, method)
        except (NameError, TypeError):
            if method is None and _has_forward_reference(cls):
                self.deferred.append(cls)
                return cls
            raise

    def register_deferred(self) -> None:
        """Register the functions whose annotations did not resolve when defined.

        Raises NameError, naming the function, if one still does not resolve.
        """
        with self._deferred_lock:
            while self.deferred:
                func = self.deferred[0]
                try:
                    super().register(func)
                except NameError as error:
                    raise NameError(
                        f"Cannot register {func.__qualname__}() with "
                        f"{getattr(self.func, '__qualname__', 'the policy')}: "
                        f"its annotation {_annotation_text(func)} does not resolve ({error})"
                    ) from error
                del self.deferred[0]
            self.implementations.clear()

    def handled_types(self) -> tuple[type, ...]:
        """The classes registered explicitly (``object``, the default, excluded)."""
        if self.deferred:
            self.register_deferred()
        return tuple(cls for cls in self.dispatcher.registry if cls is not object)

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        # A light bound method: functools builds a wrapper (update_wrapper) on every
        # access, which costs more than the dispatch itself on a hot path.
        return _BoundDispatch(self, obj, cls)


class _BoundDispatch:
    __slots__ = ("method", "obj", "cls")

    def __init__(self, method: singledispatchmethod, obj: Any, cls: Any):
        self.method = method
        self.obj = obj
        self.cls = cls

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args:
            raise TypeError(f"{self.__name__}() needs at least one positional argument")
        event_class = args[0].__class__
        implementations = self.method.implementations
        implementation = implementations.get(event_class)
        if implementation is None:
            if self.method.deferred:
                self.method.register_deferred()
            implementation = self.method.dispatcher.dispatch(event_class)
            implementations[event_class] = implementation
        return implementation.__get__(self.obj, self.cls)(*args, **kwargs)

    def handled_types(self) -> tuple[type, ...]:
        return self.method.handled_types()

    def register(self, cls: Any, method: Any = None) -> Any:
        return self.method.register(cls, method)

    @property
    def __name__(self) -> str:
        return str(getattr(self.method.func, "__name__", "policy"))

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self.method.func.__doc__


def _has_forward_reference(func: Any) -> bool:
    """Whether ``func`` is annotated with a name as text (a forward reference)."""
    annotations = getattr(func, "__annotations__", None) or {}
    return any(isinstance(a, str) for a in annotations.values())


def _annotation_text(func: Any) -> str:
    annotations = {k: v for k, v in func.__annotations__.items() if k != "return"}
    return ", ".join(f"{name}: {value}" for name, value in annotations.items())
