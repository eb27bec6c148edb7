"""The async application: written like ``Application``, its I/O awaited.

Aggregates, events, the mapper, transcodings, snapshots' classes, settings and
the aggregate cache are the sync API's own; only reading and recording await.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar, cast
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    ProjectorFunction,
    Repository,
    Section,
)
from eventsourcing.asyncio._factory import AsyncFactory
from eventsourcing.asyncio._recorders import (
    AsyncAggregateRecorder,
    AsyncApplicationRecorder,
    AsyncSubscription,
)
from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.persistence import (
    AggregateRecorder,
    EventStore,
    Mapper,
    Notification,
    ProgrammingError,
    Recording,
    Tracking,
    Transcoder,
    new_recording,
)
from eventsourcing.utils import Environment, EnvType, NamedAfterClass, strtobool

TAggregateID = TypeVar("TAggregateID", bound="UUID | str")


class AsyncEventStore:
    """Stores and retrieves domain events through a mapper and an async recorder."""

    def __init__(self, mapper: Mapper, recorder: AsyncAggregateRecorder):
        self.mapper = mapper
        self.recorder = recorder

    async def put(
        self, domain_events: Sequence[Any], *, make_recordings: bool = True, **kwargs: Any
    ) -> list[Recording[Any]]:
        """Record the events atomically; return their recordings (unless not wanted)."""
        stored_events = [self.mapper.to_stored_event(e) for e in domain_events]
        ids = await self.recorder.insert_events(stored_events, **kwargs)
        if not ids or not make_recordings:
            return []
        notifications = self.recorder.notifications_of(stored_events, ids)
        return list(map(new_recording, domain_events, notifications))

    async def get(
        self,
        originator_id: Any,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[Any]:
        stored = await self.recorder.select_events(
            originator_id, gt=gt, lte=lte, desc=desc, limit=limit
        )
        return list(map(self.mapper.to_domain_event, stored))


class AsyncRepository:
    """Reconstructs aggregates (from a snapshot if any), with the sync API's cache and
    its options (``deepcopy_from_cache``, ``fastforward_skipping``: see ``Repository``)."""

    def __init__(
        self,
        event_store: AsyncEventStore,
        snapshot_store: AsyncEventStore | None = None,
        cache_maxsize: int | None = None,
        fastforward: bool = True,
        id_type: type | None = UUID,
        *,
        fastforward_skipping: bool = False,
        deepcopy_from_cache: bool = True,
    ):
        self.event_store = event_store
        self.snapshot_store = snapshot_store
        # The sync repository keeps the cache and its rules (it reads nothing here).
        self._keeper: Repository[Any] = Repository(
            EventStore(event_store.mapper, cast(AggregateRecorder, None)),
            cache_maxsize=cache_maxsize,
            fastforward=fastforward,
            id_type=id_type,
            fastforward_skipping=fastforward_skipping,
            deepcopy_from_cache=deepcopy_from_cache,
        )
        self.cache = self._keeper.cache
        self.fastforward = fastforward

    @property
    def deepcopy_from_cache(self) -> bool:
        """False: every ``get`` gives the cached aggregate itself (as the sync
        repository's attribute; also what a save without fast-forwarding keeps)."""
        return self._keeper.deepcopy_from_cache

    @deepcopy_from_cache.setter
    def deepcopy_from_cache(self, value: bool) -> None:
        self._keeper.deepcopy_from_cache = value

    @property
    def fastforward_skipping(self) -> bool:
        """Taken, as documented; changes nothing (as the sync repository's)."""
        return self._keeper.fastforward_skipping

    @fastforward_skipping.setter
    def fastforward_skipping(self, value: bool) -> None:
        self._keeper.fastforward_skipping = value

    async def get(
        self,
        aggregate_id: Any,
        version: int | None = None,
        projector_func: ProjectorFunction[Any, Any] | None = None,
        *,
        fastforward_skipping: bool = False,
        deepcopy_from_cache: bool = True,
    ) -> Any:
        """The aggregate with this id, at ``version`` if given; ``AggregateNotFound``
        if there is none. As the sync repository's ``get``: with ``projector_func``,
        a cached aggregate is brought up to date by ``projector_func(aggregate,
        newer_events)``; from the cache, each caller gets its own copy, unless
        ``deepcopy_from_cache`` (the argument or the attribute) is False: then the
        cached aggregate itself. (``fastforward_skipping`` changes nothing.)"""
        keeper = self._keeper
        if type(aggregate_id) is not keeper.id_type:
            aggregate_id = keeper.store_id(aggregate_id)
        if self.cache is not None and version is None:
            copies = deepcopy_from_cache and keeper.deepcopy_from_cache
            entry = self.cache.entry(aggregate_id)
            if entry is not None:
                newer = await self._events_after(aggregate_id, entry[0].version)
                cached = keeper._from_cache(aggregate_id, entry, newer, projector_func, copies)
                if cached is not None:
                    return cached
            aggregate = await self._reconstruct(aggregate_id, version, projector_func)
            if copies:
                keeper._cache(aggregate_id, aggregate)
            else:
                keeper._keep(aggregate_id, aggregate)
            return aggregate
        return await self._reconstruct(aggregate_id, version, projector_func)

    async def _events_after(self, aggregate_id: Any, version: int) -> list[Any] | None:
        """As the sync repository's: the events recorded after ``version`` (none if
        not fast-forwarding), or None if the event at ``version`` is not recorded."""
        if not self.fastforward:
            return []
        recorder = self.event_store.recorder
        stored = await recorder.select_events(aggregate_id, gt=version - 1)
        return self._keeper._newer_events(stored, version)

    async def _reconstruct(
        self, aggregate_id: Any, version: int | None, projector_func: Any
    ) -> Any:
        snapshots: list[Any] = []
        if self.snapshot_store is not None:
            snapshots = await self.snapshot_store.get(aggregate_id, lte=version, desc=True, limit=1)
        gt = snapshots[0].originator_version if snapshots else None
        events = await self.event_store.get(aggregate_id, gt=gt, lte=version)
        if projector_func is not None:
            aggregate = projector_func(None, [*snapshots, *events])
        else:
            aggregate = snapshots[0].mutate(None) if snapshots else None
            for domain_event in events:
                aggregate = domain_event.mutate(aggregate)
        if aggregate is None:
            at = f" at version {version}" if version is not None else ""
            raise AggregateNotFoundError(f"Aggregate {aggregate_id}{at} not found")
        return aggregate

    async def contains(self, aggregate_id: Any) -> bool:
        """Whether an aggregate with this id is recorded."""
        keeper = self._keeper
        if type(aggregate_id) is not keeper.id_type:
            aggregate_id = keeper.store_id(aggregate_id)
        return bool(await self.event_store.get(aggregate_id, limit=1))

    def cache_saved(self, aggregates: Mapping[Any, Any], events: Sequence[Any] = ()) -> None:
        self._keeper.cache_saved(aggregates, events)

    def forget_others(self, domain_events: Sequence[Any], saved: Mapping[Any, Any]) -> None:
        self._keeper.forget_others(domain_events, saved)

    def clear_cache(self) -> None:
        self._keeper.clear_cache()


class AsyncNotificationLog:
    """An application's notification log, read with ``await`` and ``async for``."""

    def __init__(self, recorder: AsyncApplicationRecorder, section_size: int = 10):
        self.recorder = recorder
        self.section_size = section_size

    async def section(self, section_id: str) -> Section:
        """The section ``'first,last'`` (at most ``section_size`` notifications)."""
        first, limit = _section_bounds(section_id, self.section_size)
        notifications = await self.recorder.select_notifications(first, limit)
        return _section(notifications, limit)

    async def select(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        return await self.recorder.select_notifications(
            start, limit, stop=stop, topics=topics, inclusive_of_start=inclusive_of_start
        )

    async def max_notification_id(self) -> int | None:
        return await self.recorder.max_notification_id()

    async def read(
        self, *, start: int = 1, stop: int | None = None, topics: Sequence[str] = ()
    ) -> AsyncIterator[Notification]:
        """Every notification from ``start`` (up to ``stop``), in order, read in sections."""
        position = start
        while True:
            batch = await self.recorder.select_notifications(
                position, self.section_size, stop=stop, topics=topics
            )
            for notification in batch:
                yield notification
            if len(batch) < self.section_size:
                return
            position = batch[-1].id + 1

    def __aiter__(self) -> AsyncIterator[Notification]:
        return self.read()


def _section_bounds(section_id: str, section_size: int) -> tuple[int, int]:
    first_str, _, last_str = section_id.partition(",")
    try:
        first, last = int(first_str), int(last_str)
    except ValueError:
        raise ValueError(f"Section id {section_id!r} is not of the form 'first,last'") from None
    first = max(first, 1)
    return first, min(max(0, last - first + 1), section_size)


def _section(notifications: list[Notification], limit: int) -> Section:
    if not notifications:
        return Section(id=None, items=[], next_id=None)
    next_id = None
    if len(notifications) == limit:
        next_first = notifications[-1].id + 1
        next_id = f"{next_first},{next_first + limit - 1}"
    return Section(
        id=f"{notifications[0].id},{notifications[-1].id}", items=notifications, next_id=next_id
    )


class AsyncApplication(NamedAfterClass, Generic[TAggregateID]):
    """An event-sourced application whose reads and writes are awaited.

    Written like ``Application``: the same class attributes (``name``, ``env``,
    ``is_snapshotting_enabled``, ``snapshotting_intervals``,
    ``snapshotting_projectors``, ``snapshot_class``), the same settings and
    ``register_transcodings``. ``await app.save(...)``, ``await
    app.repository.get(id)``, ``async for`` over ``app.notification_log`` and
    ``app.subscribe()``. An async context manager (``async with App() as app``).
    """

    name: ClassVar[str] = "AsyncApplication"
    env: ClassVar[Mapping[str, str]] = {}
    is_snapshotting_enabled: ClassVar[bool] = False
    snapshotting_intervals: ClassVar[Mapping[type[Any], int] | None] = None
    snapshotting_projectors: ClassVar[Mapping[type[Any], ProjectorFunction[Any, Any]] | None] = None
    snapshot_class: ClassVar[type[Any] | None] = Snapshot
    log_section_size: ClassVar[int] = 10

    # The settings' names, as on Application.
    AGGREGATE_CACHE_MAXSIZE = Application.AGGREGATE_CACHE_MAXSIZE
    DEFAULT_CACHE_MAXSIZE = Application.DEFAULT_CACHE_MAXSIZE
    CACHE_OFF = Application.CACHE_OFF
    AGGREGATE_CACHE_FASTFORWARD = Application.AGGREGATE_CACHE_FASTFORWARD
    AGGREGATE_CACHE_FASTFORWARD_SKIPPING = Application.AGGREGATE_CACHE_FASTFORWARD_SKIPPING
    DEEPCOPY_FROM_AGGREGATE_CACHE = Application.DEEPCOPY_FROM_AGGREGATE_CACHE
    ORIGINATOR_ID_TYPE = Application.ORIGINATOR_ID_TYPE

    def __init__(self, env: EnvType | None = None):
        self.env = self.construct_env(self.name, env)  # type: ignore[misc]
        self.factory = self.construct_factory()
        self.mapper = self.construct_mapper()
        self.recorder = self.construct_recorder()
        self.events = AsyncEventStore(self.mapper, self.recorder)
        self.snapshots = self.construct_snapshot_store()
        self.repository = self.construct_repository()
        self.notification_log = AsyncNotificationLog(self.recorder, self.log_section_size)
        # Called with the recordings of each save (a runner wakes followers with it).
        self.on_recorded: list[Callable[[AsyncApplication[Any], list[Recording[Any]]], None]] = []

    # -- construction hooks (as Application's) -----------------------------

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment.for_application(name, type(self).env, env)

    def construct_factory(self) -> AsyncFactory:
        return AsyncFactory.construct(cast(Environment, self.env))

    def construct_transcoder(self) -> Transcoder:
        return Application.construct_transcoder(cast(Any, self))

    def register_transcodings(self, transcoder: Transcoder) -> None:
        """Register the transcodings of the types in events (extend it, calling super())."""
        Application.register_transcodings(cast(Any, self), transcoder)

    def construct_mapper(self) -> Mapper:
        return self.factory.mapper(transcoder=self.construct_transcoder())

    def construct_recorder(self) -> AsyncApplicationRecorder:
        return self.factory.application_recorder()

    def construct_snapshot_store(self) -> AsyncEventStore | None:
        if not self._snapshotting_enabled():
            return None
        return AsyncEventStore(self.mapper, self.factory.aggregate_recorder("snapshots"))

    def construct_repository(self) -> AsyncRepository:
        return AsyncRepository(
            self.events,
            self.snapshots,
            cache_maxsize=self._cache_maxsize(),
            fastforward=self._cache_fastforward(),
            id_type=self._id_type(),
            fastforward_skipping=strtobool(
                self.env.get(self.AGGREGATE_CACHE_FASTFORWARD_SKIPPING, "n")
            ),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")),
        )

    # The settings are read by Application's own rules.
    def _snapshotting_enabled(self) -> bool:
        return Application._snapshotting_enabled(cast(Any, self))

    def _cache_maxsize(self) -> int | None:
        return Application._cache_maxsize(cast(Any, self))

    def _cache_fastforward(self) -> bool:
        return Application._cache_fastforward(cast(Any, self))

    def _id_type(self) -> type | None:
        return Application._id_type(cast(Any, self))

    @property
    def log(self) -> AsyncNotificationLog:
        return self.notification_log

    # -- commands ----------------------------------------------------------

    async def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        """Record the pending events of all given aggregates in one atomic write.

        Raises ``RecordConflictError`` (and records nothing) if any aggregate is stale.
        """
        processing_event: ProcessingEvent[Any] = ProcessingEvent()
        processing_event.collect_events(*objs, **kwargs)
        recordings = await self._record(processing_event)
        await self._take_snapshots(processing_event)
        for callback in self.on_recorded:
            callback(self, recordings)
        self.notify(processing_event.events)
        return recordings

    async def _record(self, processing_event: ProcessingEvent[Any]) -> list[Recording[Any]]:
        recordings = await self.events.put(
            processing_event.events,
            tracking=processing_event.tracking,
            **processing_event.saved_kwargs,
        )
        repository = self.repository
        repository.cache_saved(processing_event.aggregates, processing_event.events)
        if repository.cache is not None and not repository.fastforward:
            repository.forget_others(processing_event.events, processing_event.aggregates)
        return recordings

    async def _take_snapshots(self, processing_event: ProcessingEvent[Any]) -> None:
        intervals = type(self).snapshotting_intervals
        if not intervals or self.snapshots is None:
            return
        for domain_event in processing_event.events:
            aggregate = processing_event.aggregates.get(domain_event.originator_id)
            interval = intervals.get(type(aggregate)) if aggregate is not None else None
            if interval and domain_event.originator_version % interval == 0:
                await self._take_interval_snapshot(aggregate, domain_event)

    async def _take_interval_snapshot(self, aggregate: Any, domain_event: Any) -> None:
        version = domain_event.originator_version
        projector_func = (type(self).snapshotting_projectors or {}).get(type(aggregate))
        if projector_func is None:
            if isinstance(aggregate, Aggregate) and aggregate.version == version:
                assert self.snapshots is not None
                await self.snapshots.put([self._snapshot_class(aggregate).take(aggregate)])
                return
            if not callable(getattr(domain_event, "mutate", None)):
                raise ProgrammingError(
                    f"Cannot take snapshot of {type(aggregate).__qualname__} {aggregate.id} "
                    f"at version {version}: its event has no mutate() method; map "
                    f"{type(aggregate).__qualname__} to its projector function in "
                    f"{type(self).__qualname__}.snapshotting_projectors"
                )
        await self.take_snapshot(domain_event.originator_id, version, projector_func)

    async def take_snapshot(
        self,
        aggregate_id: Any,
        version: int | None = None,
        projector_func: ProjectorFunction[Any, Any] | None = None,
    ) -> None:
        """Record a snapshot of the aggregate as recorded (at ``version``, if given)."""
        if self.snapshots is None:
            raise AssertionError(
                f"Snapshotting is not enabled for application {self.name!r}: set "
                "is_snapshotting_enabled = True or IS_SNAPSHOTTING_ENABLED=y"
            )
        aggregate = await self.repository.get(aggregate_id, version, projector_func)
        await self.snapshots.put([self._snapshot_class(aggregate).take(aggregate)])

    def _snapshot_class(self, aggregate: Any) -> Any:
        return Application._snapshot_class(cast(Any, self), aggregate)

    def notify(self, new_events: Sequence[Any]) -> None:
        """Called after new events are recorded (override to react)."""

    # -- queries -------------------------------------------------------------

    async def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> AsyncIterator[tuple[Any, Tracking]]:
        """Each domain event recorded after position ``gt`` (all if None), with its
        position as a tracking record, then each new one as it is recorded. Closing
        the iterator (``aclose()``, or cancelling its task) releases its connection."""
        subscription = self.recorder.subscribe(gt, topics)
        async with subscription:
            async for notification in subscription:
                yield self._event_of(notification), Tracking(self.name, notification.id)

    def _event_of(self, notification: Notification) -> Any:
        return self.mapper.to_domain_event(notification)

    def subscription(self, gt: int | None = None, topics: Sequence[str] = ()) -> AsyncSubscription:
        """The notifications after ``gt`` as a subscription (an async context manager)."""
        return self.recorder.subscribe(gt, topics)

    # -- life ----------------------------------------------------------------

    async def open(self) -> None:
        """Make the tables (else made at their first use), so others may read them."""
        await self.recorder.open()
        if self.snapshots is not None:
            await self.snapshots.recorder.open()

    async def close(self) -> None:
        await self.factory.close()

    async def __aenter__(self: TAsyncApplication) -> TAsyncApplication:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


TAsyncApplication = TypeVar("TAsyncApplication", bound=AsyncApplication[Any])

__all__ = [
    "AsyncApplication",
    "AsyncEventStore",
    "AsyncNotificationLog",
    "AsyncRepository",
]
