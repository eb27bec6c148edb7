"""Runners beyond one process: workers sharing a database (the private part of
``eventsourcing.system``)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from eventsourcing._follower import Follower, Leader, Partition, _has_unprocessed
from eventsourcing._layout import WorkerLock, check_layout, worker_key
from eventsourcing._runners import MultiThreadedRunner, Runner, System

# ---------------------------------------------------------------------------
# Beyond one process: each application in its own process, sharing a database.


class WorkerRunner(MultiThreadedRunner):
    """Runs some followers of a system in this process, on a store shared by processes.

    The leaders they follow are constructed here only to read their notification
    logs. A follower is woken when its leader's store says something was recorded
    (PostgreSQL LISTEN/NOTIFY) and, in case a signal is missed, every
    ``poll_interval`` seconds.
    """

    def __init__(
        self,
        system: System,
        apps: Sequence[str] | None = None,
        partition: Partition | None = None,
        env: Mapping[str, str] | None = None,
        poll_interval: float = 1.0,
        repartition: bool = False,
        worker_name: str | None = None,
    ):
        check_poll_interval(poll_interval)
        if worker_name is not None and not _application_name_set(env):
            # How its connections are named in the database (unless the operator named them).
            env = {"POSTGRES_APPLICATION_NAME": worker_name, **(env or {})}
        super().__init__(system, env)
        names = list(apps) if apps else list(system.followers)
        for name in names:
            if name not in system.nodes:
                raise ValueError(f"No application named {name!r} in the system")
            if name not in system.followers:
                raise ValueError(f"{name!r} follows no application: there is nothing to run")
        self.app_names = names
        self.partition = partition
        self.poll_interval = poll_interval
        self.repartition = repartition
        self._stop_listening: list[Callable[[], None]] = []
        self._lock = WorkerLock()

    def _construct_apps(self) -> None:
        for name in self.app_names:
            follower = cast(Follower, self.system.get_app_cls(name)(env=self.env))
            follower.partition = self.partition
            self.apps[name] = follower
            self._claim(follower)
        for leader_name, follower_name in self._local_edges():
            if leader_name not in self.apps:
                self.apps[leader_name] = self.system.get_app_cls(leader_name)(env=self.env)
            leader = self.apps[leader_name]
            follower = cast(Follower, self.apps[follower_name])
            follower.follow(leader_name, leader.notification_log, leader.notify_topics)
            if isinstance(leader, Leader):
                leader.lead(follower)  # both in this process: signal directly

    def _claim(self, follower: Follower) -> None:
        """Take the follower's worker lock, and check (or carry over) its layout."""
        self._lock.acquire(follower, worker_key(follower.name, self.partition))
        count = None if self.partition is None else self.partition.count
        for leader_name in self.system.follows[follower.name]:
            carried = check_layout(follower, leader_name, count, self.repartition, self._lock)
            if carried is not None:
                follower.carried[leader_name] = carried

    def _close_apps(self) -> None:
        super()._close_apps()
        self._lock.release()

    def _before_processing(self) -> None:
        # Listen before the first read, so that nothing recorded in between is missed.
        for leader_name in {leader for leader, _ in self._local_edges()}:
            stop = self.apps[leader_name].recorder.listen(self._waker(leader_name))
            if stop is not None:
                self._stop_listening.append(stop)

    def _waker(self, leader_name: str) -> Callable[[], None]:
        def wake() -> None:
            for thread in self._threads:
                if leader_name in thread.leaders:
                    thread.wake.set()

        return wake

    def followers(self) -> list[Follower]:
        return [cast(Follower, self.apps[name]) for name in self.app_names]

    def _local_edges(self) -> list[tuple[str, str]]:
        return [(lead, follow) for lead, follow in self.system.edges if follow in self.app_names]

    def stop(self) -> None:
        for stop_listening in self._stop_listening:
            stop_listening()
        self._stop_listening.clear()
        super().stop()

    def lag(self) -> dict[tuple[str, str], int]:
        """How many notifications each local follower has yet to process, per leader."""
        lags = {}
        for leader_name, follower_name in self._local_edges():
            leader = self.apps[leader_name]
            follower = cast(Follower, self.apps[follower_name])
            recorded = leader.recorder.max_notification_id() or 0
            position = follower.position(leader_name)
            unprocessed = _has_unprocessed(
                leader.notification_log, position, recorded, follower.topics_for(leader_name)
            )
            lags[(follower_name, leader_name)] = recorded - position if unprocessed else 0
        return lags


class MultiProcessRunner(Runner):
    """Runs a system as one OS process per follower (and per partition), on one database.

    The system must be importable by topic (a module attribute), since each
    worker process imports it: ``python -m eventsourcing run <topic> --app NAME``.
    The applications returned by ``get()`` live in this process, for commands
    and queries; the workers do all the processing.
    """

    def __init__(
        self,
        system: System,
        env: Mapping[str, str] | None = None,
        partitions: Mapping[str, int] | None = None,
        poll_interval: float = 1.0,
    ):
        check_poll_interval(poll_interval)
        super().__init__(system, env)
        self.partitions = dict(partitions or {})
        self.poll_interval = poll_interval
        self.workers: dict[tuple[str, Partition | None], subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        topic = self.system.topic
        if topic is None:
            raise ValueError(
                "MultiProcessRunner needs a system defined at module level, so that "
                "worker processes can import it"
            )
        in_main = self.system.classes_in_main()
        if in_main or topic.startswith(("__main__:", "__mp_main__:")):
            what = f"the classes {', '.join(in_main)} are" if in_main else "the system is"
            raise ValueError(
                f"MultiProcessRunner: {what} defined in the main script, so worker "
                "processes cannot import them, nor resolve the topics of their events: "
                "define the applications and the System in an importable module "
                "(for example myproject/system.py) and import it in the script"
            )
        super().start()
        for name in self.system.followers:
            for partition in self._partitions_of(name):
                self.workers[(name, partition)] = self._spawn(topic, name, partition)

    def _construct_apps(self) -> None:
        for name in self.system.nodes:
            self.apps[name] = self.system.get_app_cls(name)(env=self.env)

    def _partitions_of(self, name: str) -> list[Partition | None]:
        count = self.partitions.get(name, 1)
        if count == 1:
            return [None]
        return [Partition(index, count) for index in range(count)]

    def _spawn(self, topic: str, name: str, partition: Partition | None) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "eventsourcing", "run", topic, "--app", name]
        command += ["--poll-interval", str(self.poll_interval)]
        if partition is not None:
            command += ["--partition", str(partition)]
        env = dict(os.environ, **(self.env or {}))
        return subprocess.Popen(command, env=env)

    def restart_worker(self, name: str, partition: Partition | None = None) -> None:
        """Start the worker of ``name`` (and ``partition``) again, after it ended."""
        topic = self.system.topic
        assert topic is not None
        self.workers[(name, partition)] = self._spawn(topic, name, partition)

    def wait(self, timeout: float | None = None) -> None:
        """Block until every follower (each partition) has processed what its leaders
        recorded. Raises if a worker has died, and ``TimeoutError`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._all_caught_up():
            self._check_workers()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Workers did not catch up within {timeout} seconds")
            time.sleep(0.005)

    def _all_caught_up(self) -> bool:
        for leader_name, follower_name in self.system.edges:
            leader = self.apps[leader_name]
            recorded = leader.recorder.max_notification_id() or 0
            follower = cast(Follower, self.apps[follower_name])
            for partition in self._partitions_of(follower_name):
                name = leader_name if partition is None else partition.tracking_name(leader_name)
                position = follower.process_recorder.max_tracking_id(name) or 0
                topics = follower.topics_for(leader_name)
                if _has_unprocessed(leader.notification_log, position, recorded, topics):
                    return False
        return True

    def _check_workers(self) -> None:
        for (name, partition), process in self.workers.items():
            code = process.poll()
            if code is not None:
                which = name if partition is None else f"{name} partition {partition}"
                raise RuntimeError(f"The worker of {which} exited with status {code}")

    def stop(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        failures = []
        for (name, partition), process in self.workers.items():
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code not in (0, -signal.SIGKILL):
                failures.append(f"{name}{'' if partition is None else f' [{partition}]'}: {code}")
        self.workers.clear()
        self._close_apps()
        self.is_started = False
        if failures:
            raise RuntimeError(f"Workers exited with errors: {', '.join(failures)}")


def check_poll_interval(poll_interval: float) -> None:
    if isinstance(poll_interval, bool) or not (
        isinstance(poll_interval, (int, float)) and 0 < poll_interval < math.inf
    ):
        raise ValueError(
            f"poll_interval must be a positive number of seconds, not {poll_interval!r}"
        )


def _application_name_set(env: Mapping[str, str] | None) -> bool:
    key = "POSTGRES_APPLICATION_NAME"
    return any(
        name == key or name.endswith("_" + key) for name in [*os.environ, *(env or {})]
    )
