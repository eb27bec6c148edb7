"""Dispatch on the type of a method's first argument, as used by policies."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["singledispatchmethod"]


class singledispatchmethod(functools.singledispatchmethod):  # noqa: N801 (public name)
    """``functools.singledispatchmethod`` that also says which types it handles.

    Use ``@policy.register(Dog.TrickAdded)`` to add an implementation for one
    event class; the undecorated function is the default for all others.
    """

    def handled_types(self) -> tuple[type, ...]:
        """The classes registered explicitly (``object``, the default, excluded)."""
        return tuple(cls for cls in self.dispatcher.registry if cls is not object)

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        method = super().__get__(obj, cls)
        method.handled_types = self.handled_types  # type: ignore[attr-defined]
        return method
