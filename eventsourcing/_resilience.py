"""Riding out outages: which errors are transient, how long to wait, what to log.

A follower that meets a transient error (the database restarting, a dropped
connection, a SQLite lock held past its timeout) keeps its position, waits a
little longer each time (capped), and tries again; it logs one warning when the
outage begins and one line when it is over, not one per attempt.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from eventsourcing.persistence import InterfaceError, OperationalError

# The drivers' own errors of a connection or a lock, should one get through unwrapped.
_DRIVER_TRANSIENT_NAMES = {"OperationalError"}
_DRIVER_MODULES = ("sqlite3", "psycopg")


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) is one that passes with time:
    a connection that failed or dropped, a database starting up or shutting down,
    a lock held too long. A closed datastore (``InterfaceError``) is not."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, InterfaceError):
            return False
        if isinstance(current, (OperationalError, ConnectionError, TimeoutError)):
            return True
        cls = type(current)
        if cls.__name__ in _DRIVER_TRANSIENT_NAMES and cls.__module__.startswith(_DRIVER_MODULES):
            return True
        current = current.__cause__ or current.__context__
    return False


class Backoff:
    """Capped exponential delays with jitter: ``first``, twice that, ... up to ``cap``."""

    def __init__(self, first: float = 0.05, cap: float = 5.0):
        self.first = first
        self.cap = cap
        self.attempts = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * (2**self.attempts))
        self.attempts += 1
        return delay * random.uniform(0.75, 1.0)

    def reset(self) -> None:
        self.attempts = 0


class Outage:
    """Tells the log once when ``what`` starts failing for a transient reason, and once
    when it works again (with how long it took and how many attempts)."""

    def __init__(self, what: str, logger: logging.Logger, backoff: Backoff | None = None):
        self.what = what
        self.logger = logger
        self.backoff = backoff or Backoff()
        self.started: float | None = None
        self.failures = 0

    @property
    def is_ongoing(self) -> bool:
        return self.started is not None

    def failed(self, error: BaseException) -> float:
        """Record a transient failure; return how many seconds to wait before retrying."""
        if self.started is None:
            self.started = time.monotonic()
            self.logger.warning(
                "%s: %s; retrying until it works again", self.what, _one_line(error)
            )
        else:
            self.logger.debug("%s: still failing: %s", self.what, _one_line(error))
        self.failures += 1
        return self.backoff.next_delay()

    def succeeded(self) -> None:
        """Record that it worked: after an outage, say so once."""
        if self.started is None:
            return
        lasted = time.monotonic() - self.started
        self.logger.info(
            "%s: working again after %.1f s (%d failed attempts)", self.what, lasted, self.failures
        )
        self.started = None
        self.failures = 0
        self.backoff.reset()


def retry_transient(
    call: Callable[[], object],
    outage: Outage,
    stopping: threading.Event,
) -> bool:
    """Call ``call`` until it does not raise a transient error (or ``stopping`` is set);
    return whether it completed. A non-transient error is raised."""
    while not stopping.is_set():
        try:
            call()
        except Exception as error:
            if not is_transient(error):
                raise
            stopping.wait(outage.failed(error))
            continue
        outage.succeeded()
        return True
    return False


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
