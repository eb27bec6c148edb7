"""The application layer: save aggregates, get them back, read the notification log."""

from __future__ import annotations

import inspect
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from itertools import chain
from types import TracebackType
from typing import (
    Any,
    ClassVar,
    Generic,
    NamedTuple,
    TypeVar,
    cast,
    overload,
)
from uuid import UUID

from eventsourcing.domain import (
    Aggregate,
    CanInitAggregate,
    CanMutateAggregate,
    DomainEvent,
    LogEvent,
    MutableOrImmutableAggregate,
    ProgrammingError,
    Snapshot,
    TAggregateID,
    TDomainEvent,
    TMutableOrImmutableAggregate,
)
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DatetimeAsISO,
    DecimalAsStr,
    EventStore,
    InfrastructureFactory,
    JSONTranscoder,
    Mapper,
    Notification,
    Recording,
    StoredEvent,
    Tracking,
    Transcoder,
    UUIDAsHex,
)
from eventsourcing.utils import (
    Environment,
    EnvType,
    EventSourcingError,
    NamedAfterClass,
    strtobool,
)

__all__ = [
    "AggregateNotFound",
    "AggregateNotFoundError",
    "Cache",
    "Application",
    "CanMutateAggregate",
    "EnvType",
    "EventSourcedLog",
    "LogEvent",
    "MutableOrImmutableAggregate",
    "ProgrammingError",
    "ProjectorFunction",
    "Recording",
    "LocalNotificationLog",
    "MutatorFunction",
    "NotificationLog",
    "ProcessingEvent",
    "Repository",
    "Section",
    "project_aggregate",
]

# ---------------------------------------------------------------------------
# Names for typing applications (the documented 9.x API).

# A function that makes an aggregate (or None) from an aggregate (or None) and events:
# ``projector_func(None, events)`` reconstructs one from its snapshot and events.
ProjectorFunction = Callable[
    [TMutableOrImmutableAggregate | None, Iterable[TDomainEvent]],
    TMutableOrImmutableAggregate | None,
]
# A function that applies one event to an aggregate (or None), giving the aggregate.
MutatorFunction = Callable[
    [TDomainEvent, TMutableOrImmutableAggregate | None],
    TMutableOrImmutableAggregate | None,
]


def project_aggregate(aggregate: Any, domain_events: Iterable[Any]) -> Any:
    """The default projector: each event's ``mutate()`` applied in turn."""
    for domain_event in domain_events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class AggregateNotFoundError(EventSourcingError, KeyError):
    """No aggregate has this id (or none existed at the requested version)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "aggregate not found"


AggregateNotFound = AggregateNotFoundError


# ---------------------------------------------------------------------------
# Copying aggregates: each caller of the cache gets its own copy.

# Values of these types cannot change, so a copy may share them.
_IMMUTABLE: frozenset[type] = frozenset(
    {str, int, float, bool, bytes, complex, type(None), UUID, Decimal, datetime, date, time}
)


def copy_aggregate(aggregate: Any) -> Any:
    """A deep copy of an aggregate, made quickly for the usual kinds of state.

    Lists, dicts and sets of immutable values are copied at C speed instead of
    value by value; anything else goes to ``copy.deepcopy``. Containers shared
    between attributes stay shared in the copy, as ``deepcopy`` would keep them.
    """
    return copy_and_plan(aggregate)[0]


class CopyPlan(NamedTuple):
    """How to copy an aggregate: the attributes holding lists, sets or dicts of
    immutable values only (``shallow``), and the others that may change (``deep``).

    Looking at every value is most of a copy's cost. The cache keeps a plan with
    its copy of an aggregate, which nothing changes, so that copies made from it
    need not look again.
    """

    shallow: tuple[str, ...]
    deep: tuple[str, ...]
    # No deep ones, and no container under two names: copies need no memo.
    separate: bool = False


def plan_copying(aggregate: Any) -> CopyPlan:
    return copy_and_plan(aggregate)[1]


def copy_and_plan(aggregate: Any) -> tuple[Any, CopyPlan]:
    """A copy of an aggregate and the plan for copying it again, in one pass over its
    state (the cache does both with every aggregate it is given)."""
    state = aggregate.__dict__.copy()  # immutable values are shared
    shallow: list[str] = []
    deep: list[str] = []
    memo: dict[int, Any] = {}
    for name, value in state.items():  # (values are replaced, no key is added)
        kind = type(value)
        if kind in _IMMUTABLE:
            continue
        if kind is list or kind is set:
            holds_immutables = _IMMUTABLE.issuperset(map(type, value))
        else:
            holds_immutables = kind is dict and _holds_immutables(value)
        if holds_immutables:
            shallow.append(name)
            copied = memo.get(id(value))  # (one container under two names stays one)
            if copied is None:
                copied = memo[id(value)] = value.copy()
            state[name] = copied
        else:
            deep.append(name)
            state[name] = _copy_value(value, memo)
    new = object.__new__(type(aggregate))
    _set_attribute(new, "__dict__", state)  # (past any __setattr__ of the class)
    separate = not deep and len(memo) == len(shallow)
    return new, _new_plan(CopyPlan, (tuple(shallow), tuple(deep), separate))


def copy_planned(aggregate: Any, plan: CopyPlan) -> Any:
    """A copy of an aggregate, unchanged since ``copy_and_plan`` made ``plan``."""
    state = aggregate.__dict__.copy()  # immutable values are shared
    shallow, deep, separate = plan
    if separate:
        for name in shallow:
            state[name] = state[name].copy()
    else:
        memo: dict[int, Any] = {}
        for name in shallow:
            value = state[name]
            copied = memo.get(id(value))  # (one container under two names stays one)
            if copied is None:
                copied = memo[id(value)] = value.copy()
            state[name] = copied
        for name in deep:
            state[name] = _copy_value(state[name], memo)
    new = object.__new__(type(aggregate))
    _set_attribute(new, "__dict__", state)  # (past any __setattr__ of the class)
    return new


_set_attribute = object.__setattr__
_new_plan = tuple.__new__  # (a NamedTuple's own __new__ is a Python function)


def _holds_immutables(container: Any) -> bool:
    values = container.values() if type(container) is dict else container
    return _IMMUTABLE.issuperset(map(type, values))


def _copy_value(value: Any, memo: dict[int, Any]) -> Any:
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    copied = memo.get(id(value))
    if copied is not None:
        return copied
    if kind is list or kind is set:
        if _IMMUTABLE.issuperset(map(type, value)):
            copied = value.copy()
        else:
            copied = kind(_copy_value(v, memo) for v in value)
    elif kind is dict:
        if _IMMUTABLE.issuperset(map(type, value.values())):
            copied = value.copy()
        else:
            copied = {k: _copy_value(v, memo) for k, v in value.items()}
    elif kind is tuple and _IMMUTABLE.issuperset(map(type, value)):
        return value
    else:
        copied = deepcopy(value, memo)
    memo[id(value)] = copied
    return copied


# Whether instances of a class may be copied by ``copy_and_plan`` (by class).
_copies_quickly: dict[type, bool] = {}


def _may_copy_quickly(cls: type) -> bool:
    """Whether ``copy_and_plan`` copies instances of ``cls`` as ``deepcopy`` would.

    So it does for a class (ours or not) whose instances keep their whole state in
    ``__dict__`` (no ``__slots__`` anywhere, made by ``object.__new__``) and that
    does not say how to copy or pickle itself: ``deepcopy`` then makes a bare
    instance and gives it a deep copy of the ``__dict__``. Decided once per class.
    """
    quick = (
        cls.__new__ is object.__new__
        and not any("__slots__" in vars(klass) for klass in cls.__mro__)
        and all(getattr(cls, name, None) is getattr(object, name, None) for name in _COPY_HOOKS)
    )
    _copies_quickly[cls] = quick
    return quick


# What a class defines to be copied (or pickled) its own way.
_COPY_HOOKS = (
    "__copy__",
    "__deepcopy__",
    "__reduce__",
    "__reduce_ex__",
    "__getstate__",
    "__setstate__",
    "__getnewargs__",
    "__getnewargs_ex__",
)


# ---------------------------------------------------------------------------
# Whether saved events read back as they were: only then may a cache keep the
# aggregate they were saved from, as it is the aggregate a replay would make.

# Values that our JSON transcoding reads back as the very same values (with UUID,
# Decimal and datetime transcodings registered, as applications register them).
_READ_BACK_EXACTLY: frozenset[type] = frozenset({str, int, float, bool, type(None), UUID, Decimal})
_UTC = timezone.utc


# The library's mutate(): replayed, an event of a class with one of these changes the
# aggregate as trigger_event() changed it. A subclass of our event classes with its
# own mutate() may give back another aggregate, or None for one discarded (the 9.x
# docs' "discarded" events), where trigger_event() keeps the aggregate it changed:
# a replay then differs. (Events of other classes, with aggregates of other classes,
# are trusted to change their aggregates as their replay does.)
_LIBRARY_MUTATES = frozenset({CanMutateAggregate.mutate, CanInitAggregate.mutate})
_mutates_as_triggered: dict[type, bool] = {}


def events_replay_as_triggered(events: Iterable[Any]) -> bool:
    """Whether each of ``events`` is applied in a replay as it was when triggered
    (unless its class derives from ours and has a ``mutate()`` of its own)."""
    for domain_event in events:
        kind = type(domain_event)
        as_triggered = _mutates_as_triggered.get(kind)
        if as_triggered is None:
            as_triggered = (
                not issubclass(kind, CanMutateAggregate) or kind.mutate in _LIBRARY_MUTATES
            )
            _mutates_as_triggered[kind] = as_triggered
        if not as_triggered:
            return False
    return True


def events_read_back_as_saved(events: Iterable[Any]) -> bool:
    """Whether our mapper gives back each of ``events`` with values equal to and of
    the same types as its own (a tuple reads back as a list, a datetime in another
    zone with a fixed offset, a value of a registered type as whatever its
    transcoding makes: those do not)."""
    for domain_event in events:
        state = getattr(domain_event, "__dict__", None)
        if state is None:
            return False
        for value in state.values():
            kind = type(value)
            if kind in _READ_BACK_EXACTLY:
                continue
            if kind is datetime:
                if value.tzinfo is not _UTC and value.tzinfo is not None:
                    return False
            elif not _reads_back_as_it_is(value):
                return False
    return True


def _reads_back_as_it_is(value: Any) -> bool:
    kind = type(value)
    if kind in _READ_BACK_EXACTLY:
        return True
    if kind is datetime:
        return value.tzinfo is _UTC or value.tzinfo is None
    if kind is list:
        return all(map(_reads_back_as_it_is, value))
    if kind is dict:
        return all(type(key) is str for key in value) and all(
            map(_reads_back_as_it_is, value.values())
        )
    return False


def _checks_read_back(event_store: EventStore) -> bool:
    """Whether ``events_read_back_as_saved`` speaks for this store's mapper: ours,
    with our JSON transcoder (another may read back anything)."""
    mapper = getattr(event_store, "mapper", None)
    return type(mapper) is Mapper and type(mapper.transcoder) is JSONTranscoder


# ---------------------------------------------------------------------------
# The repository.


class LRUCache:
    """A small thread-safe least-recently-used cache of aggregates, by id.

    Held by the id's number (hashing a UUID is a call of Python code); ids
    that are not UUIDs are held as they are.
    """

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: UUID) -> Any:
        held = key.int if isinstance(key, UUID) else key
        with self._lock:
            value = self._items.get(held)
            if value is not None:
                self._items.move_to_end(held)
            return value

    def put(self, key: UUID, value: Any) -> None:
        held = key.int if isinstance(key, UUID) else key
        with self._lock:
            self._items[held] = value
            self._items.move_to_end(held)
            if self.maxsize > 0:
                while len(self._items) > self.maxsize:
                    self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def discard(self, key: UUID) -> None:
        held = key.int if isinstance(key, UUID) else key
        with self._lock:
            self._items.pop(held, None)


# The documented name of the aggregate cache's class.
Cache = LRUCache


class AggregateCache(LRUCache):
    """A repository's cache (``repository.cache``). Its ``get`` and ``put`` take and
    give aggregates, as the 9.x library's cache does: ``get`` gives the cached
    aggregate itself (not a copy: change it and the cache shows the change) and
    raises ``KeyError`` for an id it does not hold. The repository keeps each
    aggregate with its plan for copying (``entry`` and ``put_entry``).
    """

    def get(self, key: Any, *, evict: bool = False) -> Any:
        entry = LRUCache.get(self, key)
        if entry is None:
            raise KeyError(key)
        if evict:
            self.discard(key)
        return entry[0]

    def put(self, key: Any, value: Any) -> None:
        if value is not None:
            LRUCache.put(self, key, (value, None))  # (no plan: copied as deepcopy copies)

    # The aggregate held for a key with its plan for copying, or None; and keeping
    # one so. (The base class's own methods: no further call on the repository's
    # every get.)
    entry = LRUCache.get
    put_entry = LRUCache.put


class Repository(Generic[TAggregateID]):
    """Reconstructs aggregates from their events (starting from a snapshot if any).

    ``id_type`` is the type of the store's ids (``UUID``, or ``str`` where
    ``ORIGINATOR_ID_TYPE=text``; None where the store keeps either, as in memory):
    ``get`` takes a UUID or its string form on every store, and gives any other kind
    of id a ``TypeError`` naming it (unless the store keeps either).
    """

    def __init__(
        self,
        event_store: EventStore,
        snapshot_store: EventStore | None = None,
        cache_maxsize: int | None = None,
        fastforward: bool = True,
        id_type: type | None = UUID,
        *,
        fastforward_skipping: bool = False,
        deepcopy_from_cache: bool = True,
    ):
        # ``fastforward_skipping`` is taken, as documented, and changes nothing:
        # fast-forwarding takes no lock to skip. ``deepcopy_from_cache`` (also read
        # from this attribute at each get): False gives callers the cached aggregate
        # itself, for queries that only read it (see ``get``).
        self.fastforward_skipping = fastforward_skipping
        self.deepcopy_from_cache = deepcopy_from_cache
        self.event_store = event_store
        # Whether saved aggregates may be cached as they are (see cache_saved).
        self.checks_read_back = _checks_read_back(event_store)
        self.snapshot_store = snapshot_store
        # A maxsize of 0 means no limit; None, no cache.
        self.cache = AggregateCache(cache_maxsize) if cache_maxsize is not None else None
        self.fastforward = fastforward
        self.id_type: type = id_type or UUID  # (compared with each id given to get)
        self.keeps_any_id = id_type is None

    @overload
    def get(
        self,
        aggregate_id: TAggregateID | str,
        version: int | None = None,
        projector_func: None = None,
        *,
        fastforward_skipping: bool = False,
        deepcopy_from_cache: bool = True,
    ) -> Any: ...

    @overload
    def get(
        self,
        aggregate_id: TAggregateID | str,
        version: int | None = None,
        *,
        projector_func: ProjectorFunction[TMutableOrImmutableAggregate, Any],
        fastforward_skipping: bool = False,
        deepcopy_from_cache: bool = True,
    ) -> TMutableOrImmutableAggregate: ...

    def get(
        self,
        aggregate_id: Any,
        version: int | None = None,
        projector_func: Any = None,
        fastforward_skipping: bool = False,  # (positional defaults cost less per call)
        deepcopy_from_cache: bool = True,
    ) -> Any:
        """Return the aggregate with this id, at ``version`` if given (else the latest).

        With ``projector_func``, the aggregate is ``projector_func(None, events)``,
        where ``events`` yields the latest snapshot (at or before ``version``), if
        any, then the later events; a cached aggregate is brought up to date with
        ``projector_func(aggregate, newer_events)``. Raises ``AggregateNotFound`` if
        there is no such aggregate.

        From the cache, each caller gets its own copy, unless ``deepcopy_from_cache``
        (the argument or the repository's attribute) is False: the caller then gets
        the cached aggregate itself, which a change would change for every later
        caller (for queries that only read it, and for immutable aggregates).
        (``fastforward_skipping`` changes nothing: see ``__init__``.)
        """
        if type(aggregate_id) is not self.id_type:
            aggregate_id = self.store_id(aggregate_id)
        if self.cache is not None and version is None:
            copies = deepcopy_from_cache and self.deepcopy_from_cache
            cached = self._get_cached(aggregate_id, projector_func, copies)
            if cached is not None:
                return cached
            aggregate = self._reconstruct(aggregate_id, version, projector_func)
            if copies:
                self._cache(aggregate_id, aggregate)
            else:
                self._keep(aggregate_id, aggregate)
            return aggregate
        return self._reconstruct(aggregate_id, version, projector_func)

    def store_id(self, aggregate_id: Any) -> Any:
        """``aggregate_id`` as the store holds ids: a UUID, or on a text-id store a str.

        A UUID and its string form find the same aggregate on every store.
        """
        if self.id_type is UUID:
            if isinstance(aggregate_id, UUID):
                return aggregate_id
            if isinstance(aggregate_id, str):
                try:
                    return UUID(aggregate_id)
                except ValueError:
                    if self.keeps_any_id:
                        return aggregate_id
            raise TypeError(
                f"Aggregate id {aggregate_id!r} ({type(aggregate_id).__name__}) is neither a "
                "UUID nor the string form of one (this store's ids are UUIDs; set "
                "ORIGINATOR_ID_TYPE=text for string ids)"
            )
        if isinstance(aggregate_id, (str, UUID)):
            return str(aggregate_id)
        raise TypeError(
            f"Aggregate id {aggregate_id!r} ({type(aggregate_id).__name__}) is neither a "
            "str nor a UUID (this store's ids are text)"
        )

    def _get_cached(self, aggregate_id: UUID, projector_func: Any, copies: bool) -> Any:
        """The cached aggregate (fast-forwarded), or None to reconstruct it: a copy of
        it if ``copies``, else the cached aggregate itself.

        The cache holds private copies of aggregates as reconstructed (or, without
        fast-forwarding, as saved), each with its plan for copying (``copy_and_plan``,
        or None: ``deepcopy``). An aggregate handed out itself is no longer private:
        it is kept without a plan (see ``_keep``).
        """
        assert self.cache is not None
        entry = self.cache.entry(aggregate_id)
        if entry is None:
            return None
        newer = self._events_after(aggregate_id, entry[0].version) if self.fastforward else []
        return self._from_cache(aggregate_id, entry, newer, projector_func, copies)

    def _from_cache(
        self,
        aggregate_id: Any,
        entry: tuple[Any, Any],
        newer: list[Any] | None,
        projector_func: Any,
        copies: bool,
    ) -> Any:
        """What ``_get_cached`` gives for the cache's ``entry``, once the events
        recorded after it (``newer``: None if its last event is not recorded; empty
        if none, or not fast-forwarding) are read (the async repository's too)."""
        assert self.cache is not None
        cached, plan = entry
        if newer is None:
            self.cache.discard(aggregate_id)
            return None
        if newer:
            # (A copy is brought up to date: another thread may be copying the
            # cached one, or holding it, given out itself.)
            aggregate = copy_planned(cached, plan) if plan is not None else deepcopy(cached)
            if projector_func is None:
                for domain_event in newer:
                    aggregate = domain_event.mutate(aggregate)
            else:
                aggregate = projector_func(aggregate, newer)
            if aggregate is None:  # (discarded: an event's own mutate() gave None)
                self.cache.discard(aggregate_id)
                return None  # (the replay says it is not found)
            if copies:
                self._cache(aggregate_id, aggregate)
            else:
                self._keep(aggregate_id, aggregate)
            return aggregate
        if not copies:
            if plan is not None:
                self._keep(aggregate_id, cached)
            return cached
        return copy_planned(cached, plan) if plan is not None else deepcopy(cached)

    def _events_after(self, aggregate_id: Any, version: int) -> list[Any] | None:
        """The events recorded after ``version``, or None if the event at ``version`` is
        not recorded: read together, in one query. A cached aggregate whose last event
        is not recorded (saved in a transaction rolled back afterwards, as a session of
        an extension's store can be) is then reconstructed, not shown."""
        stored = list(self.event_store.recorder.select_events(aggregate_id, gt=version - 1))
        return self._newer_events(stored, version)

    def _newer_events(self, stored: Sequence[StoredEvent], version: int) -> list[Any] | None:
        """The events of ``stored`` (from ``version`` on) after ``version``, or None if
        the first is not the event at ``version`` (the async repository's too)."""
        if not stored or stored[0].originator_version != version:
            return None
        return [self.event_store.mapper.to_domain_event(s) for s in stored[1:]]

    def _cache(self, aggregate_id: UUID, aggregate: Any) -> None:
        """Keep a private copy of ``aggregate``, with its plan for copying."""
        assert self.cache is not None
        quick = _copies_quickly.get(type(aggregate))
        if quick is None:
            quick = _may_copy_quickly(type(aggregate))
        if quick:
            self.cache.put_entry(aggregate_id, copy_and_plan(aggregate))
        else:
            # Any other kind of aggregate (slots, pydantic...): copied as
            # ``copy.deepcopy`` copies it, so that the cache changes nothing it sees.
            self.cache.put_entry(aggregate_id, (deepcopy(aggregate), None))

    def _keep(self, aggregate_id: UUID, aggregate: Any) -> None:
        """Keep ``aggregate`` itself (given out to a caller that asked for no copy).

        Without a plan: the caller may change it (at its own risk, as documented),
        and a plan made before would then copy it wrongly. Copies for other callers
        are made by ``deepcopy``, until the aggregate is next brought up to date."""
        assert self.cache is not None
        self.cache.put_entry(aggregate_id, (aggregate, None))

    def _reconstruct(self, aggregate_id: Any, version: int | None, projector_func: Any) -> Any:
        snapshots: list[Any] = []
        if self.snapshot_store is not None:
            snapshots = list(self.snapshot_store.get(aggregate_id, lte=version, desc=True, limit=1))
        gt = snapshots[0].originator_version if snapshots else None
        events = self.event_store.get(aggregate_id, gt=gt, lte=version)
        if projector_func is not None:
            aggregate = projector_func(None, chain(snapshots, events))
        else:
            aggregate = snapshots[0].mutate(None) if snapshots else None
            for domain_event in events:
                aggregate = domain_event.mutate(aggregate)
        if aggregate is None:
            at = f" at version {version}" if version is not None else ""
            raise AggregateNotFoundError(f"Aggregate {aggregate_id}{at} not found")
        return aggregate

    def cache_saved(self, aggregates: Mapping[UUID, Any], events: Sequence[Any] = ()) -> None:
        """Remember aggregates just saved, where the cache is not fast-forwarded.

        A fast-forwarded cache takes nothing from a save: what it holds is made only
        from recorded events (by replaying them, or bringing a cached aggregate up to
        date), never from an aggregate as a command left it (which a command may
        have changed past its events: a replay would not show that change).

        Without fast-forwarding (the cache is then all there is), a copy of each saved
        aggregate is kept (the aggregate itself where ``deepcopy_from_cache`` is
        False), if its ``events`` read back as they were saved: otherwise the
        aggregate a replay makes may differ from the one in memory (a tuple the events
        held is a list after a replay), and it is forgotten instead.
        """
        if self.cache is None or self.fastforward:
            return
        if not (
            self.checks_read_back
            and events_read_back_as_saved(events)
            and events_replay_as_triggered(events)
        ):
            for aggregate_id in aggregates:
                self.cache.discard(aggregate_id)
            return
        keep = self._cache if self.deepcopy_from_cache else self._keep
        for aggregate_id, aggregate in aggregates.items():
            # (A copy: the caller may change its aggregate and fail to save it next time.)
            keep(aggregate_id, aggregate)

    def forget_others(self, domain_events: Iterable[Any], saved: Mapping[Any, Any]) -> None:
        """Forget the cached aggregates of events saved without their aggregate."""
        assert self.cache is not None
        for domain_event in domain_events:
            if domain_event.originator_id not in saved:
                self.cache.discard(domain_event.originator_id)

    def clear_cache(self) -> None:
        """Forget cached aggregates (after a conflict showed one is stale)."""
        if self.cache is not None:
            self.cache.clear()

    def __contains__(self, aggregate_id: object) -> bool:
        try:
            self.get(cast(Any, aggregate_id))
        except AggregateNotFoundError:
            return False
        return True


# ---------------------------------------------------------------------------
# The notification log.


@dataclass(frozen=True)
class Section:
    """A page of the notification log: ``id`` is ``"first,last"``."""

    id: str | None
    items: list[Notification]
    next_id: str | None


class NotificationLog:
    """Base class of notification logs."""

    def __getitem__(self, section_id: str) -> Section:
        raise NotImplementedError

    def select(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        raise NotImplementedError


class LocalNotificationLog(NotificationLog):
    """The notification log of an application in this process."""

    DEFAULT_SECTION_SIZE = 10

    @staticmethod
    def format_section_id(first_id: int, last_id: int) -> str:
        """The ID of the section from ``first_id`` to ``last_id`` ("1,10")."""
        return f"{first_id},{last_id}"

    def __init__(self, recorder: ApplicationRecorder, section_size: int = DEFAULT_SECTION_SIZE):
        self.recorder = recorder
        self.section_size = section_size

    def __getitem__(self, requested_section_id: str) -> Section:
        first_str, _, last_str = requested_section_id.partition(",")
        try:
            first, last = int(first_str), int(last_str)
        except ValueError:
            raise ValueError(
                f"Section id {requested_section_id!r} is not of the form 'first,last'"
            ) from None
        first = max(first, 1)
        limit = min(max(0, last - first + 1), self.section_size)
        notifications = self.recorder.select_notifications(first, limit)
        if not notifications:
            return Section(id=None, items=[], next_id=None)
        section_id = self.format_section_id(notifications[0].id, notifications[-1].id)
        next_id = None
        if len(notifications) == limit:
            next_first = notifications[-1].id + 1
            next_id = self.format_section_id(next_first, next_first + limit - 1)
        return Section(id=section_id, items=notifications, next_id=next_id)

    def select(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        """Return up to ``limit`` notifications from ``start`` (up to ``stop``), in id order."""
        return self.recorder.select_notifications(
            start, limit, stop=stop, topics=topics, inclusive_of_start=inclusive_of_start
        )

    def max_notification_id(self) -> int | None:
        return self.recorder.max_notification_id()


# ---------------------------------------------------------------------------
# Processing events: what one save (or one processed upstream event) records.


class ProcessingEvent(Generic[TAggregateID]):
    """Collects the new events of a unit of work, and where it came from (tracking)."""

    def __init__(self, tracking: Tracking | None = None):
        self.tracking = tracking
        self.events: list[Any] = []
        self.aggregates: dict[Any, Any] = {}
        self.saved_kwargs: dict[str, Any] = {}

    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        """Take the new events of aggregates, and domain events given directly.

        An event is any object with ``originator_id`` and ``originator_version``
        (and ``timestamp``); an aggregate, any object with an ``id`` (and ``version``):
        its ``collect_events()`` gives its new events, if it has that method (an
        immutable aggregate does not: save its new events with it).
        """
        for obj in objs:
            if isinstance(obj, Aggregate):  # (our own: the usual case, first)
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            elif isinstance(obj, DomainEvent):
                self.events.append(obj)
            elif obj is not None:
                self._collect_other(obj)
        self.saved_kwargs.update(kwargs)

    def _collect_other(self, obj: Any) -> None:
        """Collect an event or an aggregate that is not of our own classes."""
        if hasattr(obj, "originator_id") and hasattr(obj, "originator_version"):
            self.events.append(obj)
            return
        if not hasattr(obj, "id"):
            raise TypeError(
                f"Cannot save {obj!r}: neither an aggregate (no 'id') nor a domain event "
                "(no 'originator_id' and 'originator_version')"
            )
        collect_events = getattr(obj, "collect_events", None)
        if collect_events is not None:
            self.events.extend(collect_events())
        self.aggregates[obj.id] = obj

    def save(self, *objs: Any, **kwargs: Any) -> None:
        """Deprecated (as in the documented 9.x API): use ``collect_events()``."""
        warnings.warn(
            "ProcessingEvent.save() is deprecated: use collect_events()",
            DeprecationWarning,
            stacklevel=2,
        )
        self.collect_events(*objs, **kwargs)


# ---------------------------------------------------------------------------
# The application.


class Application(NamedAfterClass, Generic[TAggregateID]):
    """An event-sourced application: commands and queries over aggregates.

    Class attributes: ``name`` (default: the class name), ``env`` (default settings),
    ``is_snapshotting_enabled``, ``snapshotting_intervals`` (``{Dog: 5}``: a snapshot
    at every 5th version), ``snapshotting_projectors`` (``{Dog: project_dog}``: how
    to reconstruct an aggregate whose events have no ``mutate()`` for a snapshot),
    ``snapshot_class`` (used unless the aggregate class has a nested ``Snapshot``).

    A context manager: ``with DogSchool() as app:`` closes the application on exit.
    """

    name: ClassVar[str] = "Application"
    env: ClassVar[Mapping[str, str]] = {}
    is_snapshotting_enabled: ClassVar[bool] = False
    # (Keyed by the documented type, so that users' annotations of them check.)
    snapshotting_intervals: ClassVar[
        Mapping[type[MutableOrImmutableAggregate[Any]], int] | None
    ] = None
    snapshotting_projectors: ClassVar[
        Mapping[type[MutableOrImmutableAggregate[Any]], ProjectorFunction[Any, Any]] | None
    ] = None
    snapshot_class: ClassVar[type[Any] | None] = Snapshot
    log_section_size: ClassVar[int] = 10
    # In a system, the topics of the events this application's followers are told of
    # and process (all if empty): see Leader.
    notify_topics: Sequence[str] = ()

    AGGREGATE_CACHE_MAXSIZE = "AGGREGATE_CACHE_MAXSIZE"
    DEFAULT_CACHE_MAXSIZE = 1000
    CACHE_OFF = "off"
    AGGREGATE_CACHE_FASTFORWARD = "AGGREGATE_CACHE_FASTFORWARD"
    # Documented settings that change nothing here (see Repository.__init__).
    AGGREGATE_CACHE_FASTFORWARD_SKIPPING = "AGGREGATE_CACHE_FASTFORWARD_SKIPPING"
    DEEPCOPY_FROM_AGGREGATE_CACHE = "DEEPCOPY_FROM_AGGREGATE_CACHE"
    ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"

    project_aggregate = staticmethod(project_aggregate)

    def __init__(self, env: EnvType | None = None):
        self.env = self.construct_env(self.name, env)  # type: ignore[misc]
        self.factory = self._call_construct_factory()
        self.mapper = self.construct_mapper()
        self.recorder = self.construct_recorder()
        self.events = self.construct_event_store()
        self.snapshots = self.construct_snapshot_store()
        self.repository = self.construct_repository()
        self.notification_log = self.construct_notification_log()
        self.closing = threading.Event()

    # -- construction hooks ------------------------------------------------

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment.for_application(name, type(self).env, env)

    def construct_factory(self, env: Environment | None = None) -> InfrastructureFactory:
        """The factory that ``PERSISTENCE_MODULE`` names, for ``env`` (the application's
        environment, which the 9.x library passes, as this class does)."""
        return InfrastructureFactory.construct(
            env if env is not None else cast(Environment, self.env)
        )

    def _call_construct_factory(self) -> InfrastructureFactory:
        # An override may take the environment (as in 9.x) or not.
        construct = self.construct_factory
        try:
            takes_env = bool(inspect.signature(construct).parameters)
        except (TypeError, ValueError):
            takes_env = True
        return construct(cast(Environment, self.env)) if takes_env else construct()

    def construct_transcoder(self) -> Transcoder:
        transcoder = self.factory.transcoder()
        # (A transcoder that takes no transcodings is left as it is.)
        if type(transcoder).register is not Transcoder.register:
            self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: Transcoder) -> None:
        """Register the transcodings of the types in events: UUID, Decimal and datetime.

        Extend it (calling ``super()``) to register custom ``Transcoding``s.
        """
        transcoder.register(UUIDAsHex())
        transcoder.register(DecimalAsStr())
        transcoder.register(DatetimeAsISO())

    def construct_mapper(self) -> Mapper:
        return self.factory.mapper(transcoder=self.construct_transcoder())

    def construct_recorder(self) -> ApplicationRecorder:
        return self.factory.application_recorder()

    def construct_event_store(self) -> EventStore:
        return self.factory.event_store(mapper=self.mapper, recorder=self.recorder)

    def construct_snapshot_store(self) -> EventStore | None:
        if not self._snapshotting_enabled():
            return None
        recorder: AggregateRecorder = self.factory.aggregate_recorder("snapshots")
        return EventStore(self.mapper, recorder)

    def _snapshotting_enabled(self) -> bool:
        setting = self.env.get("IS_SNAPSHOTTING_ENABLED")
        if setting is not None:
            return strtobool(setting)
        return bool(type(self).is_snapshotting_enabled or type(self).snapshotting_intervals)

    def construct_repository(self) -> Repository[TAggregateID]:
        return Repository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=self._cache_maxsize(),
            fastforward=self._cache_fastforward(),
            id_type=self._id_type(),
            fastforward_skipping=strtobool(
                self.env.get(self.AGGREGATE_CACHE_FASTFORWARD_SKIPPING, "n")
            ),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")),
        )

    def _id_type(self) -> type | None:
        """The type of the store's ids: str where ``ORIGINATOR_ID_TYPE=text``, else
        UUID; None (either) unset on a store that keeps both kinds (in memory)."""
        setting = self.env.get(self.ORIGINATOR_ID_TYPE)
        if not setting and getattr(self.recorder, "originator_id_type", UUID) is None:
            return None
        return str if (setting or "uuid").lower() == "text" else UUID

    def _cache_fastforward(self) -> bool:
        return strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y"))

    def _cache_maxsize(self) -> int | None:
        """The aggregate cache's size (None: no cache), from ``AGGREGATE_CACHE_MAXSIZE``.

        A positive number: a least-recently-used cache of that many aggregates;
        "0": a cache without limit; "off": no cache. Unset, a cache of
        ``DEFAULT_CACHE_MAXSIZE`` is used, because a cached aggregate fast-forwarded
        from the store (one cheap read of newer events) is always the same as one
        replayed in full. Without fast-forwarding, a cache is used only when asked
        for: it cannot see other processes' writes.
        """
        setting = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        if setting in (None, ""):
            return self.DEFAULT_CACHE_MAXSIZE if self._cache_fastforward() else None
        if setting.strip().lower() == self.CACHE_OFF:
            return None
        try:
            maxsize = int(setting)
        except ValueError:
            maxsize = -1
        if maxsize < 0:
            raise ValueError(
                f"AGGREGATE_CACHE_MAXSIZE must be a number of aggregates (0 for no limit) "
                f"or '{self.CACHE_OFF}', not {setting!r}"
            )
        return maxsize

    def construct_notification_log(self) -> LocalNotificationLog:
        return LocalNotificationLog(self.recorder, section_size=self.log_section_size)

    @property
    def log(self) -> LocalNotificationLog:
        """Deprecated (as in 9.x): use ``notification_log``."""
        warnings.warn(
            "'log' is deprecated, use 'notification_log' instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.notification_log

    # -- commands ----------------------------------------------------------

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        """Record the pending events of all given aggregates in one atomic write.

        Raises ``RecordConflictError`` (and records nothing) if any aggregate is stale.
        """
        processing_event: ProcessingEvent[Any] = ProcessingEvent()
        processing_event.collect_events(*objs, **kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)
        return recordings

    def _record(
        self, processing_event: ProcessingEvent[Any], make_recordings: bool = True
    ) -> list[Recording[Any]]:
        recordings = self.events.put(
            processing_event.events,
            make_recordings=make_recordings,
            tracking=processing_event.tracking,
            **processing_event.saved_kwargs,
        )
        repository = self.repository
        repository.cache_saved(processing_event.aggregates, processing_event.events)
        if repository.cache is not None and not repository.fastforward:
            # Events saved without their aggregate leave its cached copy behind.
            repository.forget_others(processing_event.events, processing_event.aggregates)
        return recordings

    def _take_snapshots(self, processing_event: ProcessingEvent[Any]) -> None:
        """Snapshot each saved aggregate at every version its interval divides."""
        intervals = type(self).snapshotting_intervals
        if not intervals or self.snapshots is None:
            return
        aggregates = {
            aggregate_id: aggregate
            for aggregate_id, aggregate in processing_event.aggregates.items()
            if type(aggregate) in intervals
        }
        if not aggregates:
            return
        for domain_event in processing_event.events:
            aggregate = aggregates.get(domain_event.originator_id)
            if aggregate is None:
                continue
            interval = intervals[type(aggregate)]
            if interval and domain_event.originator_version % interval == 0:
                self._take_interval_snapshot(aggregate, domain_event)

    def _take_interval_snapshot(self, aggregate: Any, domain_event: Any) -> None:
        """Snapshot ``aggregate`` at the version of ``domain_event`` (just saved)."""
        version = domain_event.originator_version
        projectors = type(self).snapshotting_projectors or {}
        projector_func = projectors.get(type(aggregate))
        if projector_func is None:
            if isinstance(aggregate, Aggregate) and aggregate.version == version:
                # What a replay to this version would make: this very aggregate, saved.
                assert self.snapshots is not None
                self.snapshots.put([self._snapshot_class(aggregate).take(aggregate)])
                return
            if not callable(getattr(domain_event, "mutate", None)):
                raise ProgrammingError(
                    f"Cannot take snapshot of {type(aggregate).__qualname__} {aggregate.id} "
                    f"at version {version}: its event {type(domain_event).__qualname__} "
                    "has no mutate() method to reconstruct it with. Map "
                    f"{type(aggregate).__qualname__} to its projector function in "
                    f"{type(self).__qualname__}.snapshotting_projectors"
                )
        self.take_snapshot(domain_event.originator_id, version, projector_func)

    def take_snapshot(
        self,
        aggregate_id: TAggregateID | str,
        version: int | None = None,
        projector_func: ProjectorFunction[Any, Any] | None = None,
    ) -> None:
        """Record a snapshot of the aggregate as recorded (at ``version``, if given).

        ``projector_func`` reconstructs it as in ``repository.get``.
        """
        if self.snapshots is None:
            raise AssertionError(
                f"Snapshotting is not enabled for application {self.name!r}: set "
                "is_snapshotting_enabled = True or IS_SNAPSHOTTING_ENABLED=y"
            )
        aggregate = self.repository.get(
            aggregate_id, version=version, projector_func=projector_func
        )
        self.snapshots.put([self._snapshot_class(aggregate).take(aggregate)])

    def _snapshot_class(self, aggregate: Any) -> Any:
        """The aggregate class's nested ``Snapshot`` class, else ``snapshot_class``.

        Our Snapshot, inherited by an aggregate whose events are of its own hierarchy
        (the documented BaseAggregate[str] with its own Event and Created classes),
        does not count as nested: the 9.x library's BaseAggregate has none, so the
        application's ``snapshot_class`` (for such ids) is the one used."""
        aggregate_class = type(aggregate)
        nested = getattr(aggregate_class, "Snapshot", None)
        if nested is Snapshot and not _has_our_events(aggregate_class):
            nested = None
        snapshot_class = nested or type(self).snapshot_class
        if snapshot_class is None:
            raise AssertionError(
                f"No snapshot class for {type(aggregate).__qualname__}: define a nested "
                f"'Snapshot' class on it, or set {type(self).__qualname__}.snapshot_class"
            )
        return snapshot_class

    def notify(self, new_events: Sequence[Any]) -> None:
        """Called after new events are recorded (override to react)."""

    def _notify(self, recordings: Sequence[Recording[Any]]) -> None:
        """Called after new events are recorded, with their notifications (for leaders)."""

    def _is_followed(self) -> bool:
        """Whether followers in this process take its recordings (leaders that lead)."""
        return False

    def close(self) -> None:
        self.closing.set()
        self.factory.close()

    def __enter__(self: TApplication) -> TApplication:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


TApplication = TypeVar("TApplication", bound=Application[Any])


class EventSourcedLog(Generic[TDomainEvent]):
    """An append-only sequence of events, one logged item each (for example, ids).

    ``trigger_event(**fields)`` makes the next item (an instance of ``logged_cls``,
    for example a ``LogEvent`` or ``DomainEvent`` subclass), to be saved;
    ``get_first``/``get_last``/``get(gt, lte, desc, limit)`` read them back.
    """

    def __init__(
        self, events: EventStore, originator_id: UUID | str, logged_cls: type[TDomainEvent]
    ):
        self.events = events
        self.originator_id = originator_id
        self.logged_cls = logged_cls

    def trigger_event(
        self, next_originator_version: int | None = None, **kwargs: Any
    ) -> TDomainEvent:
        if next_originator_version is None:
            last: Any = self.get_last()
            next_originator_version = 1 if last is None else last.originator_version + 1
        create_timestamp = getattr(self.logged_cls, "create_timestamp", None)
        if create_timestamp is None:
            create_timestamp = DomainEvent.create_timestamp
        logged: TDomainEvent = cast(Any, self.logged_cls)(
            originator_id=self.originator_id,
            originator_version=next_originator_version,
            timestamp=create_timestamp(),
            **kwargs,
        )
        return logged

    def get_first(self) -> TDomainEvent | None:
        return next(self.get(limit=1), None)

    def get_last(self) -> TDomainEvent | None:
        return next(self.get(desc=True, limit=1), None)

    def get(
        self,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Iterator[TDomainEvent]:
        return cast(
            Iterator[TDomainEvent],
            self.events.get(cast(Any, self.originator_id), gt=gt, lte=lte, desc=desc, limit=limit),
        )


def _has_our_events(aggregate_class: type) -> bool:
    """Whether an aggregate class's events derive from our Aggregate.Event."""
    event_class = getattr(aggregate_class, "Event", None)
    return isinstance(event_class, type) and issubclass(event_class, Aggregate.Event)
