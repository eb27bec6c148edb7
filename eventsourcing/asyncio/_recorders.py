"""Async recorder interfaces, subscriptions, and the facade over a store's sync recorders.

The async interfaces mirror the sync ones of ``eventsourcing.persistence``
method for method (``await recorder.insert_events(...)``); records, errors and
guarantees are the same. A store without an async driver of its own (in memory,
SQLite, any store of a user's) is reached through ``SyncRecorderFacade``: its
sync recorder, called in the loop (in memory: no I/O) or on worker threads.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol, TypeVar, cast
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    Notification,
    ProcessRecorder,
    StoredEvent,
    notification_of,
)

T = TypeVar("T")


class Waiter(Protocol):
    """Waits for news of writes to a log from other processes (PostgreSQL's LISTEN)."""

    async def wait(self, timeout: float) -> bool:
        """Whether there was news within ``timeout`` seconds."""

    async def close(self) -> None:
        """Release the connection."""


class AsyncAggregateRecorder(ABC):
    """Records and selects the stored events of aggregates (async)."""

    @abstractmethod
    async def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Record all the events atomically, or none (``RecordConflictError``)."""

    @abstractmethod
    async def select_events(
        self,
        originator_id: UUID | str,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """The originator's stored events, in version order (or reversed)."""

    def notifications_of(
        self, stored_events: Sequence[StoredEvent], ids: Sequence[int]
    ) -> list[Notification]:
        return [notification_of(s, nid) for s, nid in zip(stored_events, ids)]

    async def open(self) -> None:  # noqa: B027 (nothing to prepare by default)
        """Prepare for use (create tables where they are made at first use)."""

    async def close(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release connections and threads."""


class AsyncApplicationRecorder(AsyncAggregateRecorder):
    """Also numbers events in order of recording: the notification log (async)."""

    # Seconds a subscription waits for news before reading again anyway.
    poll_interval = 0.2

    @abstractmethod
    async def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        """Up to ``limit`` notifications from ``start``, in id order, never skipping one."""

    @abstractmethod
    async def max_notification_id(self) -> int | None:
        """The highest notification id a reader can see, or None."""

    @abstractmethod
    def sync_recorder(self) -> ApplicationRecorder:
        """A sync recorder of the same table (for sync followers of this log)."""

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> AsyncSubscription:
        """The notifications after ``gt`` (all if None), then each new one as it is
        recorded: ``async with recorder.subscribe() as s: async for n in s: ...``."""
        return AsyncSubscription(self, gt, topics)

    async def open_waiter(self) -> Waiter | None:
        """A waiter for other processes' writes to this log (opened before reading,
        so nothing committed in between is missed); None where the store cannot
        tell them (subscribers then poll)."""
        return None


class AsyncProcessRecorder(AsyncApplicationRecorder):
    """Also records how far upstream logs were processed, atomically with new events."""

    @abstractmethod
    async def max_tracking_id(self, application_name: str) -> int | None:
        """The position processed in ``application_name``'s log, or None."""

    @abstractmethod
    async def tracking_positions(self) -> dict[str, int]:
        """Every tracking name recorded here, with its position."""

    async def has_tracking_id(self, application_name: str, notification_id: int | None) -> bool:
        if notification_id is None:
            return True
        position = await self.max_tracking_id(application_name)
        return position is not None and notification_id <= position


# ---------------------------------------------------------------------------
# News of writes in this process, so subscribers wake at once (other processes'
# writes are found by LISTEN/NOTIFY on PostgreSQL, else by polling).


class LocalNews:
    """Wakes the subscribers of one log when a recorder in this process writes to it."""

    def __init__(self) -> None:
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()

    def waiter(self) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._waiters.add((asyncio.get_running_loop(), event))
        return event

    def forget(self, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters = {pair for pair in self._waiters if pair[1] is not event}

    def announce(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)


_news: dict[tuple[str, ...], LocalNews] = {}
_news_lock = threading.Lock()


def local_news(key: tuple[str, ...]) -> LocalNews:
    """The news of the log that ``key`` names (a store, a database, a table)."""
    with _news_lock:
        news = _news.get(key)
        if news is None:
            news = _news[key] = LocalNews()
        return news


class AsyncSubscription:
    """An async iterator over a log's notifications: those recorded, then new ones.

    Use it as an async context manager (or call ``close()``): it may hold a
    connection of its own (PostgreSQL's LISTEN). A subscription whose task is
    cancelled while it waits is closed, its connection released.
    """

    batch_size = 100

    def __init__(
        self, recorder: AsyncApplicationRecorder, gt: int | None, topics: Sequence[str]
    ) -> None:
        self.recorder = recorder
        self.last = gt
        self.topics = tuple(topics)
        self._buffer: deque[Notification] = deque()
        self._news = recorder_news(recorder)
        self._waiter: Waiter | None = None
        self._local: asyncio.Event | None = None
        self._opened = False
        self._closed = False

    async def __aenter__(self) -> AsyncSubscription:
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def _open(self) -> None:
        if not self._opened:
            self._opened = True
            # Listen first, then read: nothing committed in between is missed.
            self._local = self._news.waiter() if self._news is not None else None
            self._waiter = await self.recorder.open_waiter()

    async def __anext__(self) -> Notification:
        try:
            return await self._next()
        except asyncio.CancelledError:
            await asyncio.shield(self.close())
            raise

    async def next_batch(self, limit: int) -> list[Notification]:
        """The next notifications available (at least one, at most ``limit``), waiting
        for one if there are none; ``[]`` once closed."""
        try:
            first = await self._next()
        except StopAsyncIteration:
            return []
        batch = [first]
        while self._buffer and len(batch) < limit:
            batch.append(self._buffer.popleft())
        return batch

    async def _next(self) -> Notification:
        await self._open()
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            batch = await self.recorder.select_notifications(
                self.last,
                self.batch_size,
                topics=self.topics,
                inclusive_of_start=self.last is None,
            )
            if batch:
                self._buffer.extend(batch)
                self.last = batch[-1].id
            else:
                await self._wait()
        return self._buffer.popleft()

    async def _wait(self) -> None:
        timeout = self.recorder.poll_interval
        local = self._local
        waits: list[asyncio.Future[Any]] = []
        if local is not None:
            waits.append(asyncio.ensure_future(local.wait()))
        if self._waiter is not None:
            waits.append(asyncio.ensure_future(self._waiter.wait(timeout)))
        if not waits:
            await asyncio.sleep(timeout)
            return
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            for waiting in waits:
                if waiting.done() and not waiting.cancelled():
                    waiting.result()  # (an error of the store's listener is raised)
        if local is not None:
            local.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._opened:
            if self._local is not None and self._news is not None:
                self._news.forget(self._local)
            if self._waiter is not None:
                await self._waiter.close()


def recorder_news(recorder: Any) -> LocalNews | None:
    key = getattr(recorder, "news_key", None)
    return local_news(key) if key is not None else None


# ---------------------------------------------------------------------------
# The facade over sync recorders.


class SyncRecorderFacade:
    """Calls a sync recorder's methods in the loop (``executor`` None: for a store
    that does no I/O) or on ``executor``'s threads (writes on ``write_executor``).

    A task cancelled while its call runs on a thread leaves the call to finish
    there: a write is then recorded whole, or (if it had not started) not at all.
    """

    def __init__(
        self,
        recorder: AggregateRecorder,
        executor: Executor | None = None,
        write_executor: Executor | None = None,
        news_key: tuple[str, ...] | None = None,
    ) -> None:
        self.recorder = recorder
        self.executor = executor
        self.write_executor = write_executor or executor
        self.news_key = news_key
        self.originator_id_type = getattr(recorder, "originator_id_type", UUID)

    async def _read(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.executor is None:
            return func(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(func, *args, **kwargs))

    async def _write(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.write_executor is None:
            result = func(*args, **kwargs)
        else:
            loop = asyncio.get_running_loop()
            call = functools.partial(self._write_and_announce, func, *args, **kwargs)
            return await loop.run_in_executor(self.write_executor, call)
        self._announce()
        return result

    def _write_and_announce(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        result = func(*args, **kwargs)
        self._announce()  # (also when the awaiting task was cancelled meanwhile)
        return result

    def _announce(self) -> None:
        news = recorder_news(self)
        if news is not None:
            news.announce()

    async def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return await self._write(self.recorder.insert_events, stored_events, **kwargs)

    async def select_events(
        self,
        originator_id: UUID | str,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        return await self._read(
            self.recorder.select_events,
            cast(UUID, originator_id),
            gt=gt,
            lte=lte,
            desc=desc,
            limit=limit,
        )

    def notifications_of(
        self, stored_events: Sequence[StoredEvent], ids: Sequence[int]
    ) -> list[Notification]:
        return self.recorder.notifications_of(stored_events, ids)

    async def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        recorder = cast(ApplicationRecorder, self.recorder)
        return await self._read(
            recorder.select_notifications,
            start,
            limit,
            stop=stop,
            topics=topics,
            inclusive_of_start=inclusive_of_start,
        )

    async def max_notification_id(self) -> int | None:
        return await self._read(cast(ApplicationRecorder, self.recorder).max_notification_id)

    def sync_recorder(self) -> ApplicationRecorder:
        return cast(ApplicationRecorder, self.recorder)

    async def max_tracking_id(self, application_name: str) -> int | None:
        recorder = cast(ProcessRecorder, self.recorder)
        return await self._read(recorder.max_tracking_id, application_name)

    async def tracking_positions(self) -> dict[str, int]:
        return await self._read(cast(ProcessRecorder, self.recorder).tracking_positions)

    async def open(self) -> None:
        """(The sync recorder's tables were made when it was.)"""

    async def close(self) -> None:
        """The factory closes the store and its threads."""


class FacadeAggregateRecorder(SyncRecorderFacade, AsyncAggregateRecorder):
    pass


class FacadeApplicationRecorder(SyncRecorderFacade, AsyncApplicationRecorder):
    pass


class FacadeProcessRecorder(SyncRecorderFacade, AsyncProcessRecorder):
    pass


def facade_of(
    recorder: AggregateRecorder,
    executor: Executor | None = None,
    write_executor: Executor | None = None,
    news_key: tuple[str, ...] | None = None,
) -> AsyncAggregateRecorder:
    """The async facade of ``recorder``, of the interface it implements."""
    cls: type[SyncRecorderFacade]
    if isinstance(recorder, ProcessRecorder):
        cls = FacadeProcessRecorder
    elif isinstance(recorder, ApplicationRecorder):
        cls = FacadeApplicationRecorder
    else:
        cls = FacadeAggregateRecorder
    return cast(AsyncAggregateRecorder, cls(recorder, executor, write_executor, news_key))
