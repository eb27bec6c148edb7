"""Riding out outages: retrying a datastore's transient failures for a while.

A datastore whose server restarts, drops a connection or (SQLite) holds its write
lock too long retries the operation with capped, jittered exponential backoff for
up to its retry timeout, then raises ``OperationalError`` saying what failed,
where, for how long it tried, and the last error. It logs one WARNING when an
outage starts and one INFO when it is over, however many threads meet it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from eventsourcing.persistence import OperationalError, What, describe

T = TypeVar("T")

FIRST_DELAY = 0.05  # seconds before the first retry, doubled after each
MAX_DELAY = 1.0  # the longest pause between two tries (so a return is seen within ~1 s)


def backoff_delays(first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> Callable[[], float]:
    """A function giving the next pause: ``first`` doubling up to ``cap``, each jittered
    (between half and all of it) so that many clients do not retry in step."""
    delay = first

    def next_delay() -> float:
        nonlocal delay
        pause = delay * random.uniform(0.5, 1.0)  # noqa: S311 (not for security)
        delay = min(delay * 2, cap)
        return pause

    return next_delay


class Outage:
    """Whether a datastore is in an outage, logged once when it starts and once when over.

    ``lost`` and ``back`` are the messages' beginnings, with ``{where}`` in them.
    """

    def __init__(
        self,
        logger: logging.Logger,
        where: str,
        lost: str = "No connection to {where}",
        back: str = "Connection to {where} is back",
    ):
        self.logger = logger
        self.where = where
        self.lost = lost
        self.back = back
        self._lock = threading.Lock()
        self._since: float | None = None

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def begin(self, error: str, timeout: float | None) -> None:
        """Log the start of an outage (once); ``timeout`` None: retried until it is over."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        how_long = "until it is back" if timeout is None else f"for up to {timeout:g} s"
        lost = self.lost.format(where=self.where)
        self.logger.warning("%s; retrying %s (%s)", lost, how_long, error)

    def end(self) -> None:
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            back = self.back.format(where=self.where)
            self.logger.info("%s (after %.1f s)", back, time.monotonic() - since)


class Retry:
    """One operation's tries: ``failed(error)`` after each transient failure pauses,
    or raises ``OperationalError`` once ``timeout`` seconds have passed since the first."""

    def __init__(self, outage: Outage, what: What, timeout: float):
        self.outage = outage
        self.what = what
        self.timeout = timeout
        self.started: float | None = None
        self._next_delay = backoff_delays()

    def failed(self, error: str, *, outage: bool = True) -> None:
        """After a transient failure: pause, or raise if the time is up. ``outage``
        False: the failure (a deadlock, say) says nothing of the server's health."""
        time.sleep(self.pause(error, outage=outage))

    def pause(self, error: str, *, outage: bool = True) -> float:
        """As ``failed``, but return how long to pause, for the caller to wait (an
        event loop's ``asyncio.sleep``)."""
        now = time.monotonic()
        if self.timeout <= 0:  # no retries: no outage to announce
            raise self.gave_up(error)
        if self.started is None:
            self.started = now
        if outage:
            self.outage.begin(error, self.timeout)
        remaining = self.started + self.timeout - now
        if remaining <= 0:
            raise self.gave_up(error)
        return min(self._next_delay(), remaining)

    def gave_up(self, error: str) -> OperationalError:
        if self.started is None:
            how_long = "not retried (retry timeout 0 s)"
        else:
            tried = time.monotonic() - self.started
            how_long = (
                f"gave up after retrying for {tried:.1f} s (retry timeout {self.timeout:g} s)"
            )
        return OperationalError(
            f"{describe(self.what)}: {self.outage.where} unavailable; {how_long}; "
            f"last error: {error}"
        )
