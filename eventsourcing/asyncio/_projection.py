"""Projections of async applications: the sync API's ``Projection`` classes and
views (tracking recorders), fed by a task of the event loop.

The task reads the application's log through an async subscription (woken by
the application's saves in this process, and by NOTIFY on PostgreSQL), and hands
each event (or, to a projection with ``process_events``, each batch) to the
projection on a worker thread, since a view's commands are the sync API's. Each
command writes the view's rows and the tracking record in one transaction, so
every event changes the view exactly once, also after a crash and a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar, cast

from eventsourcing.asyncio._application import AsyncApplication
from eventsourcing.asyncio._timeouts import wait_for
from eventsourcing.persistence import (
    InfrastructureFactory,
    Recording,
    Tracking,
    TrackingRecorder,
    WaitInterruptedError,
    new_tracking,
)
from eventsourcing.projection import DEFAULT_BATCH_SIZE, Projection, _merged_env, topic_names
from eventsourcing.utils import Environment

TAsyncApplication = TypeVar("TAsyncApplication", bound=AsyncApplication[Any])
TView = TypeVar("TView", bound=TrackingRecorder)

# How many positions of events of the projection's topics recorded by the runner's
# application a runner remembers (a wait() for one of them needs no query).
RECENT_POSITIONS = 10_000


class AsyncProjectionRunner(Generic[TAsyncApplication, TView]):
    """Runs ``projection_class`` over the events of an async application, into a view
    of ``view_class`` made by the store that the settings prefixed with the
    projection's name select (``<NAME>_PERSISTENCE_MODULE``...), as ``ProjectionRunner``.

    ``async with AsyncProjectionRunner(...) as runner:``; ``runner.app`` is the
    application, ``runner.view`` the view; ``await runner.wait(position)`` returns
    once the view has processed that position (read-your-writes).
    """

    batch_size = DEFAULT_BATCH_SIZE

    def __init__(
        self,
        *,
        application_class: type[TAsyncApplication],
        projection_class: type[Projection[TView]],
        view_class: type[TView],
        env: Mapping[str, str] | None = None,
    ):
        self.env = env
        self.application_class = application_class
        self.projection_class = projection_class
        self.view_class = view_class
        self._task: asyncio.Task[None] | None = None
        # The thread the projection runs on: its own, not the loop's default executor
        # (which the service's requests may keep busy, holding the view back).
        self._thread: ThreadPoolExecutor | None = None
        self._error: BaseException | None = None
        # The last position of the application's log the view has processed.
        self.position: int | None = None
        # Waits under way: (the position each waits for the view to pass, a number,
        # the future that the runner's task resolves then), the lowest first.
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._numbers = itertools.count()
        # Positions recorded by the application here: those of the projection's
        # topics (the most recent), and the highest.
        self._of_topics: dict[int, None] = {}
        self._recorded_up_to = 0

    async def start(self) -> None:
        view_env = Environment(self.projection_class.name, _merged_env(self.env))
        # (A sync factory and view may create tables: not in the loop.)
        self.view_factory = await asyncio.to_thread(InfrastructureFactory.construct, view_env)
        self.view: TView = cast(
            TView, await asyncio.to_thread(self.view_factory.tracking_recorder, self.view_class)
        )
        self.projection = self.projection_class(view=self.view)
        self.app: TAsyncApplication = self.application_class(self.env)
        await self.app.open()
        self._topics = topic_names(self.projection.topics)
        self.app.on_recorded.append(self._recorded)
        self.position = await asyncio.to_thread(self.view.max_tracking_id, self.app.name)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=self.projection_class.name)
        self._task = asyncio.create_task(self._run(self.position))

    def _recorded(self, _: Any, recordings: list[Recording[Any]]) -> None:
        """Remember the positions the application records (called after each save)."""
        topics, of_topics = self._topics, self._of_topics
        for recording in recordings:
            notification = recording.notification
            if not topics or notification.topic in topics:
                of_topics[notification.id] = None
            self._recorded_up_to = max(self._recorded_up_to, notification.id)
        while len(of_topics) > RECENT_POSITIONS:
            del of_topics[next(iter(of_topics))]

    async def _run(self, position: int | None) -> None:
        app = self.app
        to_domain_event = app.mapper.to_domain_event
        process_events = getattr(self.projection, "process_events", None)
        subscription = app.subscription(position, topic_names(self.projection.topics))
        try:
            async with subscription:
                while notifications := await subscription.next_batch(self.batch_size):
                    batch = [
                        (to_domain_event(n), new_tracking(app.name, n.id, None))
                        for n in notifications
                    ]
                    await self._in_thread(process_events or self._process_each, batch)
                    await self._processed(notifications[-1].id)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            self._error = error
            raise
        finally:
            self._wake(None)  # (every wait() under way checks why)

    async def _in_thread(self, process: Callable[[Any], None], batch: Any) -> None:
        assert self._thread is not None
        context = contextvars.copy_context()
        await asyncio.get_running_loop().run_in_executor(self._thread, context.run, process, batch)

    def _process_each(self, batch: list[tuple[Any, Tracking]]) -> None:
        for domain_event, tracking in batch:
            self.projection.process_event(domain_event, tracking)

    async def wait(self, notification_id: int | None, timeout: float = 10.0) -> None:
        """Return once the view has processed ``notification_id`` of the application
        (or every event of the projection's topics up to it); ``TimeoutError`` after
        ``timeout``; the projection's error if it failed.

        Waits in the loop, woken by the runner's task once the view passes the event
        it waits for: any number of requests may wait at once without holding
        threads. A wait for an event this runner's application recorded, of the
        projection's topics, queries nothing.
        """
        if notification_id is None or (self.position or 0) >= notification_id:
            self._raise_error()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The first unprocessed event of the projection's topics up to the position,
        # when known: until the view passes it, there is nothing to query again.
        pending: int | None = notification_id if notification_id in self._of_topics else None
        while True:
            self._raise_error()
            if self._task is None or self._task.done():
                raise WaitInterruptedError(f"{type(self).__name__} is stopped")
            position = self.position or 0
            if position >= notification_id:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._raise_error()
                raise TimeoutError(
                    f"{self.projection_class.name} did not process position "
                    f"{notification_id} of {self.app.name} within {timeout}s (at {self.position})"
                )
            if pending is None or position >= pending:
                try:
                    pending = await wait_for(
                        self._first_unprocessed(position, notification_id), remaining
                    )
                except asyncio.TimeoutError:
                    continue  # (raises the error above)
                if pending is None:
                    return  # (the view stays at the last event of its topics)
                continue  # (the view may have moved meanwhile)
            # Woken once the view passes ``pending`` (or, for an event not yet
            # recorded, moves at all); checked again now and then.
            if not await self._passed(max(pending, position + 1), min(remaining, 1.0)):
                pending = None

    async def _passed(self, target: int, timeout: float) -> bool:
        """Whether the view passes ``target`` within ``timeout`` (or the runner ends)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (target, next(self._numbers), future))
        try:
            await wait_for(future, timeout)  # (see _timeouts: a cancellation is never lost)
        except asyncio.TimeoutError:
            return False  # (the future is cancelled: its entry is dropped when the view passes it)
        return True

    def _wake(self, position: int | None) -> None:
        """Resolve the waits for positions up to ``position`` (all of them if None)."""
        waiters = self._waiters
        while waiters and (position is None or waiters[0][0] <= position):
            future = heapq.heappop(waiters)[2]
            if not future.done():
                future.set_result(None)

    async def _first_unprocessed(self, position: int, notification_id: int) -> int | None:
        """The first event of the projection's topics after ``position`` up to
        ``notification_id`` (that very position without topics; 0, to check again
        after each step, while it is not yet recorded); None if there is none."""
        topics = self._topics
        if not topics:
            return notification_id
        if notification_id > self._recorded_up_to:
            recorded = await self.app.notification_log.max_notification_id() or 0
            self._recorded_up_to = max(self._recorded_up_to, recorded)
            if recorded < notification_id:
                return 0
        after = await self.app.notification_log.select(
            position, 1, stop=notification_id, topics=topics, inclusive_of_start=False
        )
        return after[0].id if after else None

    async def _processed(self, position: int) -> None:
        self.position = position
        self._wake(position)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        if self._thread is not None:  # (waits for a batch under way)
            thread, self._thread = self._thread, None
            await asyncio.to_thread(thread.shutdown)
        await self.app.close()
        close = getattr(self.view, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
        await asyncio.to_thread(self.view_factory.close)

    async def __aenter__(self: TRunner) -> TRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
        self._raise_error()


TRunner = TypeVar("TRunner", bound=AsyncProjectionRunner[Any, Any])
