"""The async runner: followers processed by tasks of the event loop.

Leaders are ``AsyncApplication`` classes (or the sync followers that lead
others); followers are the sync API's ``Follower`` and ``ProcessApplication``
classes, their policies unchanged. Each follower has a task that waits for news
(a leader in this loop saved, PostgreSQL's NOTIFY from other processes, or the
poll interval), then has the follower pull and process what is new: in batches,
each batch's new events and tracking position recorded in one transaction
(exactly once), on a thread of its own, since policies and the sync stores
block (not the loop's default executor: code of the application that fills it
with blocking calls would hold the followers back, and followers' batches it).
On start, every follower catches up with what its leaders recorded before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from eventsourcing._follower import gather_seconds, typical_batch_seconds
from eventsourcing.application import Application, LocalNotificationLog
from eventsourcing.asyncio._application import AsyncApplication
from eventsourcing.asyncio._progress import Progress
from eventsourcing.asyncio._recorders import Waiter
from eventsourcing.asyncio._timeouts import wait_for
from eventsourcing.persistence import Recording
from eventsourcing.system import Follower, Leader, NotificationLog, RunnerAlreadyStartedError
from eventsourcing.utils import EventSourcingError

T = TypeVar("T")


class AsyncRunnerError(EventSourcingError):
    """A follower of the async runner failed; it stopped processing."""


class AsyncRunner:
    """Runs a system of async leaders and sync followers in the running event loop.

    ``pipes``: as ``System``'s, ``[[DogSchool, Counters]]``: each class follows
    the one before it. ``await runner.start()`` (or ``async with``), ``runner.get(cls)``,
    ``await runner.wait(...)`` for read-your-writes, ``await runner.stop()``.
    """

    def __init__(
        self,
        pipes: Iterable[Iterable[type[Any]]],
        env: Mapping[str, str] | None = None,
        *,
        poll_interval: float = 1.0,
    ):
        self.env = env
        self.poll_interval = poll_interval
        self.classes: dict[str, type[Any]] = {}
        self.follows: dict[str, list[str]] = {}
        for pipe in pipes:
            names = [self._add(cls) for cls in pipe]
            for leader, follower in zip(names, names[1:]):
                if leader not in self.follows[follower]:
                    self.follows[follower].append(leader)
        for name, leaders in self.follows.items():
            if leaders and not issubclass(self.classes[name], Follower):
                raise TypeError(f"{self.classes[name].__qualname__} follows {leaders}: it must "
                                "be a Follower (a ProcessApplication, for example)")  # fmt: skip
        self.apps: dict[str, Any] = {}
        self.is_started = False
        self._wakes: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._waiters: list[Waiter] = []
        self._progress: Progress | None = None
        self._errors: dict[str, BaseException] = {}
        self._threads: dict[str, ThreadPoolExecutor] = {}  # a follower's own thread

    def _add(self, cls: type[Any]) -> str:
        if not (isinstance(cls, type) and issubclass(cls, (AsyncApplication, Application))):
            raise TypeError(f"Pipes must hold application classes, not {cls!r}")
        existing = self.classes.setdefault(cls.name, cls)
        if existing is not cls:
            raise TypeError(f"Two classes are named {cls.name!r}: {existing!r} and {cls!r}")
        self.follows.setdefault(cls.name, [])
        return str(cls.name)

    # -- life ----------------------------------------------------------------

    async def start(self) -> None:
        if self.is_started:
            raise RunnerAlreadyStartedError(f"{type(self).__name__} is already started")
        self.is_started = True
        self._progress = Progress()
        try:
            await self._construct_apps()
            for name, leaders in self.follows.items():
                if leaders:
                    self._threads[name] = ThreadPoolExecutor(1, thread_name_prefix=name)
                    self._wakes[name] = asyncio.Event()
                    self._wakes[name].set()  # catch up with what was recorded before
                    self._tasks.append(asyncio.create_task(self._run_follower(name)))
            for name, app in self.apps.items():
                if isinstance(app, AsyncApplication) and self._followers_of(name):
                    app.on_recorded.append(self._leader_recorded)
                    waiter = await app.recorder.open_waiter()
                    if waiter is not None:
                        self._waiters.append(waiter)
                        self._tasks.append(asyncio.create_task(self._listen(name, waiter)))
        except BaseException:
            await self.stop()
            raise

    async def _construct_apps(self) -> None:
        for name, cls in self.classes.items():
            if issubclass(cls, AsyncApplication):
                self.apps[name] = app = cls(env=self.env)
                await app.open()
            else:
                if any(name in leaders for leaders in self.follows.values()):
                    cls = _as_leader(cls)
                # (A sync application's constructor may create tables: not in the loop.)
                self.apps[name] = await asyncio.to_thread(cls, env=self.env)
        for follower_name, leaders in self.follows.items():
            for leader_name in leaders:
                follower = cast(Follower, self.apps[follower_name])
                follower.follow(leader_name, self._log_of(leader_name))

    def _log_of(self, leader_name: str) -> NotificationLog:
        leader = self.apps[leader_name]
        if isinstance(leader, AsyncApplication):
            return LocalNotificationLog(leader.recorder.sync_recorder(), leader.log_section_size)
        return cast(Leader, leader).notification_log

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        for waiter in self._waiters:
            with contextlib.suppress(Exception):
                await waiter.close()
        self._waiters.clear()
        for name, app in self.apps.items():
            if isinstance(app, AsyncApplication):
                await app.close()
            else:
                app.closing.set()
                await self._in_thread_of(name, app.close)  # (after a batch under way)
        for thread in self._threads.values():
            thread.shutdown(wait=False)  # (idle: its last call, the close, returned)
        self._threads.clear()
        self.apps.clear()
        self.is_started = False

    async def __aenter__(self: TRunner) -> TRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def get(self, cls: type[T]) -> T:
        """The running instance of an application class of the runner."""
        try:
            return cast(T, self.apps[cls.name])  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(f"No application {cls.name!r} in this runner") from None  # type: ignore[attr-defined]

    # -- processing ----------------------------------------------------------

    def _followers_of(self, leader_name: str) -> list[str]:
        return [name for name, leaders in self.follows.items() if leader_name in leaders]

    def _wake_followers_of(self, leader_name: str) -> None:
        for name in self._followers_of(leader_name):
            self._wakes[name].set()

    def _leader_recorded(self, leader: AsyncApplication[Any], _: list[Recording[Any]]) -> None:
        self._wake_followers_of(leader.name)

    async def _listen(self, leader_name: str, waiter: Waiter) -> None:
        """Wake the followers of ``leader_name`` when other processes write to its log."""
        while True:
            if await waiter.wait(self.poll_interval):
                self._wake_followers_of(leader_name)

    async def _run_follower(self, name: str) -> None:
        follower = cast(Follower, self.apps[name])
        wake = self._wakes[name]
        loop = asyncio.get_running_loop()

        def progressed(leader_name: str, position: int) -> None:  # (on the worker thread)
            loop.call_soon_threadsafe(self._announce_progress)

        busy, typical_batch = False, 0.0
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await wait_for(wake.wait(), self.poll_interval)
                # Woken while it processed: events stream in; let more gather first.
                delay = gather_seconds(follower.batch_delay, typical_batch) if busy else 0
                if delay:
                    await asyncio.sleep(delay)
                wake.clear()
                began = loop.time()
                for leader_name in self.follows[name]:
                    await self._in_thread_of(
                        name, follower.pull_and_process, leader_name, None, None, progressed
                    )
                typical_batch = typical_batch_seconds(typical_batch, loop.time() - began)
                busy = wake.is_set()
                self._wake_followers_of(name)
                self._announce_progress()
        except asyncio.CancelledError:
            follower.closing.set()  # (a batch under way ends at its next step)
            raise
        except Exception as error:
            self._errors[name] = error
            self._announce_progress()
            raise

    def _announce_progress(self) -> None:
        if self._progress is not None:
            self._progress.moved()

    async def wait(
        self,
        follower: type[Any] | str,
        position: int | None = None,
        leader: type[Any] | str | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Return once ``follower`` has processed ``leader``'s log up to ``position``
        (default: what the leader had recorded when called); read-your-writes.

        ``leader`` may be left out when the follower follows one application.
        Raises ``TimeoutError`` after ``timeout`` seconds, or the follower's error.
        """
        follower_name = follower if isinstance(follower, str) else follower.name
        leader_name = self._leader_name(follower_name, leader)
        if position is None:
            position = await self._max_notification_id(leader_name) or 0
        try:
            await wait_for(self._reached(follower_name, leader_name, position), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{follower_name} did not reach position {position} of {leader_name} "
                f"within {timeout}s"
            ) from None

    async def _reached(self, follower_name: str, leader_name: str, position: int) -> None:
        app = cast(Follower, self.apps[follower_name])
        assert self._progress is not None
        while True:
            step = self._progress.step()  # (before checking: a move meanwhile is seen)
            error = self._errors.get(follower_name)
            if error is not None:
                raise AsyncRunnerError(f"{follower_name} stopped: {error}") from error
            if await self._in_thread_of(follower_name, app.position, leader_name) >= position:
                return
            recorded = await self._max_notification_id(leader_name) or 0
            if recorded >= position and not await self._in_thread_of(
                follower_name, _has_unprocessed, app, leader_name, position
            ):
                return  # (a follower of some topics stays at the last it took)
            await self._progress.wait(step, 1.0)

    def _leader_name(self, follower_name: str, leader: type[Any] | str | None) -> str:
        leaders = self.follows.get(follower_name) or []
        if leader is None:
            if len(leaders) != 1:
                raise ValueError(f"{follower_name} follows {leaders}: say which leader")
            return leaders[0]
        name = leader if isinstance(leader, str) else leader.name
        if name not in leaders:
            raise ValueError(f"{follower_name} does not follow {name!r} (follows {leaders})")
        return str(name)

    async def _max_notification_id(self, leader_name: str) -> int | None:
        leader = self.apps[leader_name]
        if isinstance(leader, AsyncApplication):
            return await leader.notification_log.max_notification_id()
        return await self._in_thread_of(
            leader_name, cast(Leader, leader).recorder.max_notification_id
        )

    async def _in_thread_of(self, name: str, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on the thread of the follower ``name`` (another sync
        application's calls: on the loop's default executor), in this context."""
        thread = self._threads.get(name)
        call = functools.partial(contextvars.copy_context().run, func, *args)
        if thread is None:
            return await asyncio.to_thread(call)
        return await asyncio.get_running_loop().run_in_executor(thread, call)


def _has_unprocessed(follower: Follower, leader_name: str, position: int) -> bool:
    """Whether a notification of the follower's topics is left up to ``position``."""
    if not follower.topics:
        return True
    done = follower.position(leader_name)
    log = follower.readers[leader_name].notification_log
    after = log.select(done, 1, stop=position, topics=follower.topics, inclusive_of_start=False)
    return bool(after)


def _as_leader(cls: type[Any]) -> type[Any]:
    """A sync application that others follow, as a Leader (as System makes it)."""
    if issubclass(cls, Leader):
        return cls
    from eventsourcing.system import System

    return System([[cls]]).leader_cls(cls.name)


TRunner = TypeVar("TRunner", bound=AsyncRunner)
