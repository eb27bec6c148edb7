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
import threading
from collections.abc import Mapping
from typing import Any, Generic, TypeVar, cast

from eventsourcing.asyncio._application import AsyncApplication
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
        self._interrupted = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

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
        position = await asyncio.to_thread(self.view.max_tracking_id, self.app.name)
        self._task = asyncio.create_task(self._run(position))

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
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            self._error = error
            raise
        finally:
            self._interrupted.set()  # (wakes a wait() under way)

    def _process_each(self, batch: list[tuple[Any, Tracking]]) -> None:
        for domain_event, tracking in batch:
            self.projection.process_event(domain_event, tracking)

    async def wait(self, notification_id: int | None, timeout: float = 10.0) -> None:
        """Return once the view has processed ``notification_id`` of the application;
        ``TimeoutError`` after ``timeout``; the projection's error if it failed."""
        self._raise_error()
        try:
            await asyncio.to_thread(
                self.view.wait,
                self.app.name,
                notification_id,
                timeout=timeout,
                interrupt=self._interrupted,
            )
        except WaitInterruptedError:
            self._raise_error()
            raise

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    async def stop(self) -> None:
        self._interrupted.set()
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
