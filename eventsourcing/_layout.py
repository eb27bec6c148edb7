"""A follower's partition layout: checked before a worker starts, carried over on request,
and one worker per follower and partition.

The layout is read from the tracking positions a follower has recorded for a
leader: ``Leader`` alone (unpartitioned) or ``Leader[K/N]`` (N partitions). A
worker whose layout differs refuses to start, naming both, unless told to
re-partition. Then, in one transaction, each old position is kept under a
*carried* name (``Leader~from[K/N]``), each new partition starts at the lowest
old position, and the old positions are removed.

Why that is exactly-once: an event at or below the lowest old position was
processed by its old partition (which processed its share in order up to its
position). Above it, and up to the highest old position, a new partition skips
an event if the old partition that owned it had passed it (it was processed),
and processes it otherwise. Above the highest old position nothing was processed.
So each event is processed once, and an aggregate's events stay in order.
The carried positions are removed once every new partition has passed them.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing._resilience import Backoff
from eventsourcing.persistence import IntegrityError, OperationalError, new_tracking
from eventsourcing.utils import EventSourcingError

logger = logging.getLogger("eventsourcing.runner")

CARRIED = "~from"
_PARTITIONED = re.compile(r"^\[(\d+)/(\d+)\]$")


class PartitionLayoutError(EventSourcingError):
    """A worker's partition layout differs from the one recorded for its follower."""


class WorkerAlreadyRunningError(EventSourcingError):
    """Another worker already runs this follower (and partition)."""


def layout_name(count: int | None) -> str:
    return "unpartitioned" if count is None else f"{count} partitions"


def recorded_layouts(positions: Mapping[str, int], leader_name: str) -> dict[str, int | None]:
    """Of the recorded tracking names of ``leader_name``: each name's partition count
    (None: unpartitioned). Carried and dead-letter names are not positions."""
    layouts: dict[str, int | None] = {}
    for name in positions:
        if name == leader_name:
            layouts[name] = None
        elif name.startswith(leader_name + "["):
            match = _PARTITIONED.match(name[len(leader_name) :])
            if match:
                layouts[name] = int(match.group(2))
    return layouts


@dataclass(frozen=True)
class Carried:
    """The positions of an earlier layout, for events up to ``until`` (the highest)."""

    count: int  # the old count of partitions (1: unpartitioned)
    positions: Mapping[int, int]  # old partition index -> its position
    until: int

    def was_processed(self, notification_id: int, originator_id: Any) -> bool:
        index = 0 if self.count == 1 else _routing_int(originator_id) % self.count
        return notification_id <= self.positions.get(index, 0)


def _routing_int(originator_id: Any) -> int:
    if isinstance(originator_id, UUID):
        return originator_id.int
    return UUID(str(originator_id)).int


def carried_positions(positions: Mapping[str, int], leader_name: str) -> Carried | None:
    prefix = leader_name + CARRIED
    carried: dict[int, int] = {}
    count = 0
    for name, position in positions.items():
        if name.startswith(prefix):
            match = _PARTITIONED.match(name[len(prefix) :])
            if match:
                carried[int(match.group(1))] = position
                count = int(match.group(2))
    if not count:
        return None
    return Carried(count, carried, max(carried.values(), default=0))


def check_layout(
    follower: Any,
    leader_name: str,
    count: int | None,
    repartition: bool,
    lock: WorkerLock,
    attempt: int = 1,
) -> Carried | None:
    """Refuse a layout other than the recorded one (unless ``repartition``: then carry
    the positions over, if no worker of the old layout runs); return the carried
    positions the follower must honour."""
    recorder = follower.process_recorder
    positions = recorder.tracking_positions()
    layouts = recorded_layouts(positions, leader_name)
    others = {name: n for name, n in layouts.items() if n != count}
    if others:
        recorded = layout_name(next(iter(others.values())))
        if not repartition:
            raise PartitionLayoutError(
                f"{follower.name} is recorded as {recorded} of {leader_name}, and this worker "
                f"runs it {layout_name(count)}: run every worker with the recorded layout, or "
                f"stop them all and start the new layout with --repartition"
            )
        running = [
            name
            for name in others
            if lock.is_held_elsewhere(follower, _key(follower.name, leader_name, name))
        ]
        if running:
            raise PartitionLayoutError(
                f"cannot re-partition {follower.name}: a worker of the old layout "
                f"({recorded}) still runs ({', '.join(running)}): stop it first"
            )
        try:
            _carry_over(follower, leader_name, positions, others, count)
        except IntegrityError:
            if attempt >= 3:
                raise
            # Another worker of the new layout carried them over first: look again.
            return check_layout(follower, leader_name, count, repartition, lock, attempt + 1)
        positions = recorder.tracking_positions()
    carried = carried_positions(positions, leader_name)
    if carried is not None and _all_passed(positions, leader_name, count, carried):
        names = [name for name in positions if name.startswith(leader_name + CARRIED)]
        recorder.replace_tracking(names, [])
        return None
    return carried


def _carry_over(
    follower: Any,
    leader_name: str,
    positions: Mapping[str, int],
    old: Mapping[str, int | None],
    count: int | None,
) -> None:
    old_count = next(iter(old.values())) or 1
    by_index: dict[int, int] = {}
    for name in old:
        match = _PARTITIONED.match(name[len(leader_name) :])
        by_index[int(match.group(1)) if match else 0] = positions[name]
    # A partition that never recorded a position is at 0.
    lowest = min(by_index.get(index, 0) for index in range(old_count))
    carried = [
        new_tracking(f"{leader_name}{CARRIED}[{index}/{old_count}]", position, None)
        for index, position in by_index.items()
        if position > 0
    ]
    starts = []
    if lowest > 0:
        for name in _names(leader_name, count):
            if name not in positions:
                starts.append(new_tracking(name, lowest, None))
    follower.process_recorder.replace_tracking(list(old), carried + starts)
    logger.warning(
        "%s: re-partitioned from %s to %s of %s: every new partition resumes at %d, "
        "skipping what the old partitions processed after it",
        follower.name,
        layout_name(None if old_count == 1 and None in old.values() else old_count),
        layout_name(count),
        leader_name,
        lowest,
    )


def _names(leader_name: str, count: int | None) -> list[str]:
    if count is None:
        return [leader_name]
    return [f"{leader_name}[{index}/{count}]" for index in range(count)]


def _all_passed(
    positions: Mapping[str, int], leader_name: str, count: int | None, carried: Carried
) -> bool:
    return all(positions.get(name, 0) >= carried.until for name in _names(leader_name, count))


# -- one worker per follower and partition -------------------------------------------


class WorkerLock:
    """Held while a worker runs a follower (and partition): a PostgreSQL advisory lock
    (on a connection of its own), or a lock file beside a SQLite database."""

    def __init__(self) -> None:
        self._held: list[Any] = []

    def acquire(self, follower: Any, key: str) -> None:
        datastore: Any = getattr(follower.factory, "datastore", None)
        if hasattr(datastore, "connect_kwargs"):
            self._held.append(_postgres_lock(datastore, key, follower.name))
        elif getattr(datastore, "db_name", None) and not getattr(datastore, "is_memory", True):
            self._held.append(_file_lock(str(datastore.db_name), key, follower.name))

    @staticmethod
    def is_running(follower: Any, key: str) -> bool | None:
        """Whether a worker holds ``key`` now, seen without taking it (None: this store
        has no worker locks). For ``status``: it reads only."""
        datastore: Any = getattr(follower.factory, "datastore", None)
        if hasattr(datastore, "connect_kwargs"):
            return bool(
                datastore.run(
                    lambda conn: conn.execute(_HELD_SQL, (_LOCK_CLASS, key)).fetchone()[0],
                    what=f"Reading the worker lock of {_which(key, follower.name)}",
                    transaction=False,
                )
            )
        if getattr(datastore, "db_name", None) and not getattr(datastore, "is_memory", True):
            return _file_lock_held(_lock_path(str(datastore.db_name), key))
        return None

    def is_held_elsewhere(self, follower: Any, key: str) -> bool:
        """Whether another process holds ``key`` now (taken and let go at once, if not)."""
        probe = WorkerLock()
        try:
            probe.acquire(follower, key)
        except WorkerAlreadyRunningError:
            return True
        finally:
            probe.release()
        return False

    def release(self) -> None:
        for held in self._held:
            try:
                held.close()
            except Exception:  # noqa: BLE001 (letting go: the lock goes with the session)
                logger.debug("closing a worker lock failed", exc_info=True)
        self._held.clear()


def _postgres_lock(datastore: Any, key: str, follower_name: str) -> Any:
    import psycopg

    # The store was just reached: a failure now is most likely passing (too many
    # clients, a restart), so it is tried again for a while, as the store's are.
    deadline = time.monotonic() + float(getattr(datastore, "retry_timeout", 10.0))
    backoff = Backoff(first=0.1, cap=2.0)
    while True:
        try:
            conn = psycopg.connect(**datastore.connect_kwargs())
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_CLASS, key)
            ).fetchone()
            break
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise OperationalError(
                    f"cannot take the worker lock of {_which(key, follower_name)}: "
                    f"{' '.join(str(error).split())}"
                ) from error
            time.sleep(backoff.next_delay())
    if not (row and row[0]):
        conn.close()
        raise WorkerAlreadyRunningError(
            f"another worker already runs {_which(key, follower_name)} on this database: "
            "stop it first (two would process the same events)"
        )
    return conn


_LOCK_CLASS = 0x6B65656C  # our advisory locks' first key ("keel")


# Whether a session holds the two-key advisory lock (objid is the hash as an oid).
_HELD_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND classid = %s::bigint::oid AND objsubid = 2 "
    "AND objid = (hashtext(%s)::bigint & 4294967295)::oid)"
)


def _lock_path(db_name: str, key: str) -> str:
    return f"{db_name}.{re.sub(r'[^A-Za-z0-9_.-]+', '_', key)}.lock"


def _file_lock_held(path: str) -> bool:
    import fcntl

    if not os.path.exists(path):
        return False  # (no worker ever ran it here: nothing is made to find out)
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _file_lock(db_name: str, key: str, follower_name: str) -> Any:
    import fcntl

    path = _lock_path(db_name, key)
    handle = open(path, "a")  # noqa: SIM115 (held open for the worker's life)
    # A few tries: ``status`` may be looking at the lock for an instant.
    for attempt in range(5):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except OSError:
            time.sleep(0.05 * (attempt + 1))
    else:
        handle.close()
        raise WorkerAlreadyRunningError(
            f"another worker already runs {_which(key, follower_name)} on {db_name} "
            f"(it holds {os.path.basename(path)}): stop it first"
        )


def _which(key: str, follower_name: str) -> str:
    _, _, partition = key.partition("|")
    return follower_name if partition == "-" else f"{follower_name} partition {partition}"


def worker_key(follower_name: str, partition: Any) -> str:
    """The lock of a follower's worker (of a partition, ``K/N``, or None)."""
    return f"{follower_name}|{'-' if partition is None else partition}"


def _key(follower_name: str, leader_name: str, tracking_name: str) -> str:
    match = _PARTITIONED.match(tracking_name[len(leader_name) :])
    return worker_key(follower_name, f"{match.group(1)}/{match.group(2)}" if match else None)
