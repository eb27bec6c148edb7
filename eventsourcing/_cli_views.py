"""What the command line shows: status rows, dead letters, and a worker's progress.

The status of a follower is read from its store only (never creating tables), so
a read-only database role can run ``eventsourcing status`` as a health check.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, TextIO, TypeVar

from eventsourcing._deadletters import PARKED, DeadLetter
from eventsourcing._layout import WorkerLock, recorded_layouts, worker_key
from eventsourcing._resilience import is_transient
from eventsourcing.persistence import PersistenceError
from eventsourcing.system import System

logger = logging.getLogger("eventsourcing.cli")

T = TypeVar("T")


def _unless_missing(read: Callable[[], T], default: T) -> T:
    """``read()``, or ``default`` if the table it reads was never made (nothing recorded)."""
    try:
        return read()
    except PersistenceError as error:
        text = str(error).lower()
        if "no such table" in text or "does not exist" in text:
            return default
        raise


# -- status ----------------------------------------------------------------------


@dataclass
class StatusRow:
    follower: str
    follows: str
    partition: str | None
    position: int
    last_id: int
    lag: int
    parked: int
    last_error: str | None
    worker: str | None = None  # running or stopped, if asked (status --workers)


def status_rows(system: System, apps: dict[str, Any]) -> list[StatusRow]:
    """A row for each follower, leader and partition (each tracking position recorded)."""
    rows = []
    for leader_name, follower_name in system.edges:
        leader, follower = apps[leader_name], apps[follower_name]
        recorded = _unless_missing(leader.recorder.max_notification_id, None) or 0
        tracked: dict[str, int] = _unless_missing(follower.recorder.tracking_positions, {})
        positions = {
            name: position
            for name, position in tracked.items()
            if name == leader_name or name.startswith(leader_name + "[")
        } or {leader_name: 0}
        _add_missing_partitions(positions, leader_name)
        letters: list[DeadLetter] = _unless_missing(partial(follower.dead_letters, leader_name), [])
        parked = [letter for letter in letters if letter.status == PARKED]
        for name, position in sorted(positions.items()):
            partition = name[len(leader_name) + 1 : -1] if name != leader_name else None
            mine = [letter for letter in parked if _in_partition(letter, partition)]
            # The latest error of an event that failed (not of one parked behind it).
            failed = [letter for letter in mine if letter.error_type != "ParkedBehind"]
            last = (failed or mine)[-1] if mine else None
            rows.append(
                StatusRow(
                    follower=follower_name,
                    follows=leader_name,
                    partition=partition,
                    position=position,
                    last_id=recorded,
                    lag=max(0, recorded - position),
                    parked=len(mine),
                    last_error=None if last is None else _error_line(last),
                )
            )
    return rows


def _add_missing_partitions(positions: dict[str, int], leader_name: str) -> None:
    """Show every partition of the recorded layout, also one that recorded nothing yet."""
    counts = {count for count in recorded_layouts(positions, leader_name).values() if count}
    for count in counts:
        for index in range(count):
            positions.setdefault(f"{leader_name}[{index}/{count}]", 0)


def _in_partition(letter: DeadLetter, partition: str | None) -> bool:
    if partition is None:
        return True
    index, _, count = partition.partition("/")
    try:
        from uuid import UUID

        return UUID(letter.originator_id).int % int(count) == int(index)
    except ValueError:
        return True


def _error_line(letter: DeadLetter) -> str:
    message = " ".join(letter.error_message.split())
    return f"notification {letter.notification_id}: {letter.error_type}: {message}"


def unhealthy(rows: list[StatusRow], max_lag: int | None) -> bool:
    """Whether a follower has parked events, lags more than ``max_lag``, or has no
    worker running (if that was checked)."""
    return any(
        row.parked or row.worker == "stopped" or (max_lag is not None and row.lag > max_lag)
        for row in rows
    )


def check_workers(rows: list[StatusRow], apps: dict[str, Any]) -> None:
    """Set each row's ``worker``: whether a worker holds its lock now (seen, not taken)."""
    for row in rows:
        running = WorkerLock.is_running(apps[row.follower], worker_key(row.follower, row.partition))
        row.worker = None if running is None else ("running" if running else "stopped")


def format_status(rows: list[StatusRow]) -> str:
    with_workers = any(row.worker is not None for row in rows)
    header: tuple[str, ...] = ("follower", "follows", "position", "last id", "parked")
    header += ("worker", "lag") if with_workers else ("lag",)
    table = [header] + [
        (
            row.follower + ("" if row.partition is None else f"[{row.partition}]"),
            row.follows,
            str(row.position),
            str(row.last_id),
            str(row.parked),
            *((row.worker or "-",) if with_workers else ()),
            str(row.lag),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table
    ]
    for row in rows:
        if row.last_error:
            lines.append(f"{row.follower}: {row.parked} parked; last: {row.last_error}")
    return "\n".join(lines)


def status_as_json(rows: list[StatusRow]) -> str:
    return json.dumps(
        {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "followers": [asdict(r) for r in rows]},
        indent=2,
    )


# -- dead letters ------------------------------------------------------------------


def dead_letter_rows(apps: dict[str, Any], include_all: bool) -> list[tuple[str, DeadLetter]]:
    rows = []
    for name, follower in apps.items():
        letters: list[DeadLetter] = _unless_missing(follower.dead_letters, [])
        for letter in letters:
            if include_all or letter.status == PARKED:
                rows.append((name, letter))
    return rows


def format_dead_letters(rows: list[tuple[str, DeadLetter]], as_json: bool) -> str:
    if as_json:
        return json.dumps([dict(app=name, **letter.as_dict()) for name, letter in rows], indent=2)
    if not rows:
        return "no dead letters"
    header = (
        "id",
        "app",
        "upstream",
        "notification",
        "originator",
        "attempts",
        "last failed",
        "status",
        "error",
    )
    table = [header] + [
        (
            str(letter.id),
            name,
            letter.upstream,
            str(letter.notification_id),
            letter.originator_id,
            str(letter.attempts),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.last_failed)),
            letter.status,
            f"{letter.error_type}: {' '.join(letter.error_message.split())}",
        )
        for name, letter in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table
    )


# -- a worker's progress -----------------------------------------------------------


class ProgressReporter:
    """Catching up: a bar on a terminal (drawn once), or a line every few seconds;
    then "caught up", and on a terminal one live line (rate, lag) redrawn in place."""

    plain_every = 5.0  # seconds between plain progress lines
    live_every = 1.0  # seconds between redraws of the live line

    def __init__(self, runner: Any, stream: TextIO, on_terminal: bool | None = None):
        self.runner = runner
        self.stream = stream
        self.on_terminal = stream.isatty() if on_terminal is None else on_terminal
        self._lock = threading.Lock()
        self.catching_up: dict[tuple[str, str], tuple[int, int]] = {}  # start, end
        self.positions: dict[tuple[str, str], int] = {}
        self.processed = 0
        self._rate_mark = (time.monotonic(), 0)
        self._last_drawn = 0.0
        self._last_plain = time.monotonic()

    def show_backlog(self) -> None:
        try:
            lags = self.runner.lag()
        except Exception as error:
            if not is_transient(error):
                raise
            logger.warning("cannot tell the backlog now: %s", error)
            return  # the followers ride the outage out themselves
        for (follower, leader), lag in lags.items():
            if not lag:
                continue
            recorded = self.runner.apps[leader].recorder.max_notification_id() or 0
            logger.info("%s is %d notifications behind %s: catching up", follower, lag, leader)
            with self._lock:
                self.catching_up[(follower, leader)] = (recorded - lag, recorded)

    def update(self, follower: str, leader: str, position: int) -> None:
        """After each batch a follower records (called from its thread)."""
        key = (follower, leader)
        with self._lock:
            before = self.positions.get(key, position)
            self.positions[key] = position
            self.processed += max(0, position - before)
            span = self.catching_up.get(key)
            if span is None:
                return
            start, end = span
            if position >= end:
                del self.catching_up[key]
                self._draw_bar(follower, leader, start, end, end, done=True)
                logger.info("%s caught up with %s at %d", follower, leader, position)
            elif self.on_terminal:
                self._draw_bar(follower, leader, start, end, position, done=False)
            elif time.monotonic() - self._last_plain >= self.plain_every:
                self._last_plain = time.monotonic()
                logger.info("%s <- %s: %s", follower, leader, _fraction(start, end, position))

    def _draw_bar(
        self, follower: str, leader: str, start: int, end: int, position: int, done: bool
    ) -> None:
        if not self.on_terminal:
            return
        self.stream.write("\r" + bar_line(f"{follower} <- {leader}", start, end, position))
        self.stream.write("\n" if done else "")
        self.stream.flush()

    def tick(self) -> None:
        """From the main loop: on a terminal, once caught up, redraw the live line."""
        if not self.on_terminal:
            return
        now = time.monotonic()
        with self._lock:
            if self.catching_up or now - self._last_drawn < self.live_every:
                return
            self._last_drawn = now
            since, processed_then = self._rate_mark
            rate = (self.processed - processed_then) / max(1e-6, now - since)
            self._rate_mark = (now, self.processed)
        try:
            lags = self.runner.lag()
        except Exception as error:
            if not is_transient(error):
                raise
            line = "the database is out of reach: waiting"
        else:
            lag = sum(lags.values())
            line = f"live: {rate:,.1f} events/s, lag {lag}"
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()


def _fraction(start: int, end: int, position: int) -> str:
    done = min(1.0, (position - start) / max(1, end - start))
    return f"{done:.0%} ({min(position, end)}/{end})"


def bar_line(label: str, start: int, end: int, position: int, width: int = 30) -> str:
    """``Counters <- DogSchool [#####     ]  52% 5200/10000``."""
    done = min(1.0, (position - start) / max(1, end - start))
    filled = int(done * width)
    bar = "#" * filled + " " * (width - filled)
    return f"{label} [{bar}] {done:4.0%} {min(position, end)}/{end}"
