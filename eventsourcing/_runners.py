"""The system graph and the in-process runners (the private part of ``eventsourcing.system``)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from eventsourcing._follower import (
    Follower,
    Leader,
    RunnerAlreadyStartedError,
    _has_unprocessed,
    gather_seconds,
    typical_batch_seconds,
)
from eventsourcing._resilience import Outage, is_transient
from eventsourcing.application import (
    Application,
)
from eventsourcing.utils import EventSourcingError, get_topic

logger = logging.getLogger("eventsourcing.runner")
# Wake-ups and batches, at DEBUG (a logger of its own, so it can be turned on alone).
debug = logging.getLogger("eventsourcing.runner.activity")

TApplication = TypeVar("TApplication", bound=Application)


# ---------------------------------------------------------------------------
# The system graph.


class System:
    """Applications wired into a graph by pipes: ``System(pipes=[[A, B, C], [A, D]])``.

    In each pipe, every application follows the one before it. Cycles are allowed.
    """

    def __init__(self, pipes: Iterable[Iterable[type[Application]]]):
        self.pipes = [list(pipe) for pipe in pipes]
        self._classes: dict[str, type[Application]] = {}
        self.edges: list[tuple[str, str]] = []
        for pipe in self.pipes:
            for cls in pipe:
                self._add_node(cls)
            for leader_cls, follower_cls in zip(pipe, pipe[1:]):
                edge = (leader_cls.name, follower_cls.name)
                if edge not in self.edges:
                    self.edges.append(edge)
        self.nodes: dict[str, str] = {name: get_topic(c) for name, c in self._classes.items()}
        self.follows: dict[str, list[str]] = {name: [] for name in self._classes}
        self.leads: dict[str, list[str]] = {name: [] for name in self._classes}
        for leader, follower in self.edges:
            self.leads[leader].append(follower)
            self.follows[follower].append(leader)
        self._check_followers()

    def _add_node(self, cls: type[Application]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Application)):
            raise TypeError(f"System pipes must hold Application classes, not {cls!r}")
        existing = self._classes.get(cls.name)
        if existing is not None and existing is not cls:
            raise TypeError(
                f"Two classes in the system are named {cls.name!r}: {existing!r} and {cls!r}"
            )
        self._classes[cls.name] = cls

    def _check_followers(self) -> None:
        for name in self.followers:
            cls = self._classes[name]
            if not issubclass(cls, Follower):
                raise TypeError(
                    f"{cls.__qualname__} follows {self.follows[name]} in the system, so it "
                    "must be a Follower (for example a ProcessApplication)"
                )

    @property
    def leaders(self) -> list[str]:
        return [name for name in self._classes if self.leads[name]]

    @property
    def followers(self) -> list[str]:
        return [name for name in self._classes if self.follows[name]]

    @property
    def leaders_only(self) -> list[str]:
        return [name for name in self.leaders if not self.follows[name]]

    @property
    def processors(self) -> list[str]:
        return [name for name in self.leaders if self.follows[name]]

    @property
    def singles(self) -> list[str]:
        return [name for name in self._classes if not self.leads[name] and not self.follows[name]]

    def get_app_cls(self, name: str) -> type[Application]:
        try:
            cls = self._classes[name]
        except KeyError:
            raise KeyError(f"No application named {name!r} in the system") from None
        if self.leads[name] and not issubclass(cls, Leader):
            return self.leader_cls(name)
        return cls

    def leader_cls(self, name: str) -> type[Leader]:
        cls = self._classes[name]
        if issubclass(cls, Leader):
            return cls
        # A plain application that others follow: give it a leader's notifications.
        leader = _leader_versions.get(cls)
        if leader is None:
            leader = cast(
                type[Leader],
                type(cls.__name__, (Leader, cls), {"__module__": cls.__module__, "name": cls.name}),
            )
            leader.__qualname__ = cls.__qualname__
            _leader_versions[cls] = leader
        return leader

    def follower_cls(self, name: str) -> type[Follower]:
        cls = self._classes[name]
        if not issubclass(cls, Follower):
            raise TypeError(f"{cls.__qualname__} is not a Follower")
        return cls

    @property
    def topic(self) -> str | None:
        """The topic of this system object, if a module holds it as an attribute (one
        that other processes can import, rather than ``__main__``, if there is one)."""
        found = None
        for module_name, module in list(sys.modules.items()):
            for attr, value in list(getattr(module, "__dict__", {}).items()):
                if value is self:
                    if module_name not in _MAIN_MODULES:
                        return f"{module_name}:{attr}"
                    found = found or f"{module_name}:{attr}"
        return found

    def classes_in_main(self) -> list[str]:
        """The names of the system's classes defined in the main script (whose topics
        another process cannot resolve)."""
        return [
            cls.__qualname__ for cls in self._classes.values() if cls.__module__ in _MAIN_MODULES
        ]


_MAIN_MODULES = ("__main__", "__mp_main__")


_leader_versions: dict[type[Application], type[Leader]] = {}


# ---------------------------------------------------------------------------
# Runners.


class Runner(ABC):
    """Constructs a system's applications and drives its followers."""

    def __init__(self, system: System, env: Mapping[str, str] | None = None):
        self.system = system
        self.env = env
        self.apps: dict[str, Application] = {}
        self.is_started = False

    def start(self) -> None:
        if self.is_started:
            raise RunnerAlreadyStartedError(f"{type(self).__name__} is already started")
        try:
            self._construct_apps()
        except BaseException:
            self._close_apps()
            raise
        self.is_started = True

    def _construct_apps(self) -> None:
        for name in self.system.nodes:
            cls = self.system.get_app_cls(name)
            self.apps[name] = cls(env=self.env)
        for leader_name, follower_name in self.system.edges:
            leader = cast(Leader, self.apps[leader_name])
            follower = cast(Follower, self.apps[follower_name])
            follower.follow(leader_name, leader.notification_log, leader.notify_topics)
            leader.lead(follower)

    @abstractmethod
    def stop(self) -> None:
        """Stop processing and close the applications."""

    def _close_apps(self) -> None:
        for app in self.apps.values():
            app.close()
        self.apps.clear()

    def get(self, cls: type[TApplication]) -> TApplication:
        """Return the running instance of an application class of the system."""
        try:
            return cast(TApplication, self.apps[cls.name])
        except KeyError:
            state = "" if self.is_started else " (the runner is not started)"
            raise KeyError(f"No application {cls.name!r} in this runner{state}") from None

    def followers(self) -> list[Follower]:
        return [cast(Follower, self.apps[name]) for name in self.system.followers]

    def __enter__(self: TRunner) -> TRunner:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


TRunner = TypeVar("TRunner", bound=Runner)


class SingleThreadedRunner(Runner):
    """Processes every new event in the saving thread, before ``save()`` returns."""

    def __init__(self, system: System, env: Mapping[str, str] | None = None):
        super().__init__(system, env)
        self._prompts: deque[tuple[Follower, str]] = deque()
        self._lock = threading.RLock()
        self._draining = threading.local()
        # Events parked while processing a command: raised once, by that command.
        self._parked_errors: list[EventSourcingError] = []

    def start(self) -> None:
        super().start()
        for follower in self.followers():
            follower._upstream_listener = self._prompter(follower)
        # Catch up: process what the leaders recorded before this start.
        for follower in self.followers():
            for leader_name in self.system.follows[follower.name]:
                self._prompts.append((follower, leader_name))
        self._drain()  # (what is parked now is logged: no command of the caller's failed)
        for follower in self.followers():
            follower._parking.listener = self._parked_errors.append

    def _prompter(self, follower: Follower) -> Callable[[str], None]:
        def prompt(leader_name: str) -> None:
            self._prompts.append((follower, leader_name))
            self._drain()

        return prompt

    def _drain(self) -> None:
        if getattr(self._draining, "active", False):
            return  # the outer call in this thread processes what was just queued
        with self._lock:
            self._draining.active = True
            try:
                while self._prompts:
                    follower, leader_name = self._prompts.popleft()
                    follower.pull_and_process(leader_name)
            finally:
                self._draining.active = False
            if self._parked_errors:
                parked, self._parked_errors[:] = self._parked_errors[0], []
                raise parked

    def stop(self) -> None:
        self._prompts.clear()
        self._close_apps()
        self.is_started = False


class _FollowerThread(threading.Thread):
    """Runs one follower: catches up, then processes whenever a leader records.

    Woken by a signal from the leader (same process) or from the database (other
    processes); ``poll_interval`` bounds the wait, in case a signal was missed.
    """

    def __init__(
        self,
        runner: MultiThreadedRunner,
        follower: Follower,
        leaders: list[str],
        poll_interval: float | None,
    ):
        super().__init__(name=f"follower-{follower.name}", daemon=True)
        self.runner = runner
        self.follower = follower
        self.leaders = leaders
        self.poll_interval = poll_interval
        self.wake = threading.Event()
        self.wake.set()  # catch up at once
        follower._upstream_listener = lambda _leader_name: self.wake.set()
        self.outage = Outage(f"{follower.name} (following {', '.join(leaders)})", logger)
        self._typical_batch = 0.0  # seconds (a moving average)

    def run(self) -> None:
        try:
            busy = False
            while not self.runner.is_stopping.is_set():
                woken = self.wake.wait(timeout=self.poll_interval)
                if debug.isEnabledFor(logging.DEBUG):
                    debug.debug("%s: %s", self.follower.name, "woken" if woken else "polling")
                if busy:
                    self._gather()
                self.wake.clear()
                if self.runner.is_stopping.is_set():
                    return
                began = time.perf_counter()
                if not self._process_leaders():
                    busy = False
                    continue
                self._typical_batch = typical_batch_seconds(
                    self._typical_batch, time.perf_counter() - began
                )
                # Woken while processing: events are streaming in, not trickling.
                busy = self.wake.is_set()
                self.runner._processed()
        except BaseException as error:  # noqa: BLE001 (reported on the caller's side)
            self.runner._thread_failed(self.follower, error)

    def _process_leaders(self) -> bool:
        """Process what each leader recorded; return False after a transient error
        (the store is out of reach or locked), having waited before the next try."""
        try:
            for leader_name in self.leaders:
                self.follower.pull_and_process(leader_name, progress=self._progress)
        except Exception as error:
            if self.follower.closing.is_set() or not is_transient(error):
                raise
            delay = self.outage.failed(error)
            # What was in hand may or may not have been recorded: read it again.
            self.follower.forget_positions()
            self.runner.is_stopping.wait(delay)
            self.wake.set()  # try again at once after the wait
            return False
        self.outage.succeeded()
        return True

    def _gather(self) -> None:
        """Let more events arrive, so that the next batch's one commit serves them all.

        Only while events stream in (group commit): a follower woken after a quiet
        spell starts at once. Stopping the runner cuts the wait short.
        """
        delay = gather_seconds(self.follower.batch_delay, self._typical_batch)
        if delay:
            self.runner.is_stopping.wait(delay)

    def _progress(self, leader_name: str, position: int) -> None:
        self.runner._progress_of(self.follower, leader_name, position)


class MultiThreadedRunner(Runner):
    """Runs each follower in its own thread, woken as soon as a leader records.

    An error in a follower's thread stops that follower; it is raised on the
    caller's side by ``watch_for_errors()``, ``wait()`` and ``stop()``.
    """

    # No polling: in one process, a leader signals its followers' threads directly.
    poll_interval: float | None = None

    def __init__(self, system: System, env: Mapping[str, str] | None = None):
        super().__init__(system, env)
        self.is_stopping = threading.Event()
        self.has_errored = threading.Event()
        self._errors: list[BaseException] = []
        self._threads: list[_FollowerThread] = []
        self._progress = threading.Condition()

    def start(self) -> None:
        super().start()
        self.is_stopping.clear()
        for follower in self.followers():
            leaders = self.system.follows[follower.name]
            thread = _FollowerThread(self, follower, leaders, self.poll_interval)
            self._threads.append(thread)
        self._before_processing()
        for thread in self._threads:
            thread.start()

    def _before_processing(self) -> None:
        """Called after the applications and threads are made, before any thread runs."""

    def _processed(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _progress_of(self, follower: Follower, leader_name: str, position: int) -> None:
        """Called after each batch a follower records (a hook for progress reports)."""

    def _thread_failed(self, follower: Follower, error: BaseException) -> None:
        logger.error("%s stopped processing: %s", follower.name, error)
        with self._progress:
            self._errors.append(error)
            self.has_errored.set()
            self._progress.notify_all()

    def watch_for_errors(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for a follower to fail, and raise its error.

        Returns False if no follower failed in that time.
        """
        if self.has_errored.wait(timeout=timeout):
            raise self._errors[0]
        return False

    def wait(self, timeout: float | None = None) -> None:
        """Block until every follower has processed all its leaders have recorded,
        including what other followers record on the way (the system is quiet).

        Raises a follower's error if one failed, and ``TimeoutError`` after ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            while True:
                if self._errors:
                    raise self._errors[0]
                if self._all_caught_up():
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"Followers did not catch up within {timeout} seconds")
                self._progress.wait(timeout=0.1 if remaining is None else min(remaining, 0.1))

    def _all_caught_up(self) -> bool:
        # Edges in pipe order, so a processor's output is checked after its input.
        for leader_name, follower_name in self._local_edges():
            follower = cast(Follower, self.apps[follower_name])
            leader = self.apps[leader_name]
            recorded = leader.recorder.max_notification_id() or 0
            position = follower.position(leader_name)
            topics = follower.topics_for(leader_name)
            if _has_unprocessed(leader.notification_log, position, recorded, topics):
                return False
        return True

    def _local_edges(self) -> list[tuple[str, str]]:
        return self.system.edges

    def stop(self) -> None:
        self.is_stopping.set()
        for thread in self._threads:
            thread.follower.closing.set()  # finish the batch in hand, start no other
            thread.wake.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._close_apps()
        self.is_started = False
        if self._errors:
            error, self._errors = self._errors[0], []
            self.has_errored.clear()
            raise error


# The documented 9.x API also names newer variants of the two runners. For a user they
# behave as the runners of the same kind (processing before each command returns; a
# follower's work in threads, its errors raised on the caller's side), so here they are those.
NewSingleThreadedRunner = SingleThreadedRunner
NewMultiThreadedRunner = MultiThreadedRunner
