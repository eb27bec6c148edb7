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
from collections.abc import Mapping
from typing import Any, Generic, TypeVar, cast

from eventsourcing.asyncio._application import AsyncApplication
from eventsourcing.asyncio._progress import Progress
from eventsourcing.asyncio._timeouts import wait_for
from eventsourcing.persistence import (
    InfrastructureFactory,
    Tracking,
    TrackingRecorder,
    WaitInterruptedError,
    new_tracking,
)
from eventsourcing.projection import DEFAULT_BATCH_SIZE, Projection, _merged_env, topic_names
from eventsourcing.utils import Environment

TAsyncApplication = TypeVar("TAsyncApplication", bound=AsyncApplication[Any])
TView = TypeVar("TView", bound=TrackingRecorder)


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
        self._error: BaseException | None = None
        self._progress: Progress | None = None
        # The last position of the application's log the view has processed.
        self.position: int | None = None

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
        self.position = await asyncio.to_thread(self.view.max_tracking_id, self.app.name)
        self._progress = Progress()
        self._task = asyncio.create_task(self._run(self.position))

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
                    if process_events is not None:
                        await asyncio.to_thread(process_events, batch)
                    else:
                        await asyncio.to_thread(self._process_each, batch)
                    await self._processed(notifications[-1].id)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            self._error = error
            raise
        finally:
            if self._progress is not None:
                self._progress.moved()  # (wakes a wait() under way)

    def _process_each(self, batch: list[tuple[Any, Tracking]]) -> None:
        for domain_event, tracking in batch:
            self.projection.process_event(domain_event, tracking)

    async def wait(self, notification_id: int | None, timeout: float = 10.0) -> None:
        """Return once the view has processed ``notification_id`` of the application
        (or every event of the projection's topics up to it); ``TimeoutError`` after
        ``timeout``; the projection's error if it failed.

        Waits in the loop, woken by the runner's task after each batch: any number
        of requests may wait at once without holding threads.
        """
        if notification_id is None:
            return
        try:
            await wait_for(self._reached(notification_id), timeout)
        except asyncio.TimeoutError:
            self._raise_error()
            raise TimeoutError(
                f"{self.projection_class.name} did not process position {notification_id} "
                f"of {self.app.name} within {timeout}s (at {self.position})"
            ) from None

    async def _reached(self, notification_id: int) -> None:
        assert self._progress is not None
        # The first unprocessed event of the projection's topics up to the position,
        # when known: until the view passes it, there is nothing to query again.
        pending: int | None = None
        while True:
            step = self._progress.step()
            self._raise_error()
            if self._task is None or self._task.done():
                raise WaitInterruptedError(f"{type(self).__name__} is stopped")
            position = self.position or 0
            if position >= notification_id:
                return
            if pending is None or position >= pending:
                pending = await self._first_unprocessed(position, notification_id)
                if pending is None:
                    return  # (the view stays at the last event of its topics)
            if not await self._progress.wait(step, 1.0):
                pending = None  # (checked again now and then)

    async def _first_unprocessed(self, position: int, notification_id: int) -> int | None:
        """The first event of the projection's topics after ``position`` up to
        ``notification_id`` (that very position without topics; 0, to check again
        after each step, while it is not yet recorded); None if there is none."""
        topics = topic_names(self.projection.topics)
        if not topics:
            return notification_id
        if (await self.app.notification_log.max_notification_id() or 0) < notification_id:
            return 0
        after = await self.app.notification_log.select(
            position, 1, stop=notification_id, topics=topics, inclusive_of_start=False
        )
        return after[0].id if after else None

    async def _processed(self, position: int) -> None:
        self.position = position
        assert self._progress is not None
        self._progress.moved()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
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
