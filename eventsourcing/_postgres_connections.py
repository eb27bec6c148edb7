"""PostgreSQL connections that fail: which failures are worth retrying, and the
listener that LISTENs again after its connection is lost (the public face is
``eventsourcing.postgres``)."""

from __future__ import annotations

import logging
import select
import socket
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg_pool import PoolTimeout, TooManyRequests

from eventsourcing._retry import Outage, backoff_delays

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresDatastore

logger = logging.getLogger("eventsourcing.postgres")


def one_line(error: BaseException) -> str:
    """An error's message on one line (libpq messages span several)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


# Errors that say the server is (for now) out of reach, restarting or overloaded:
# connection exceptions, admin/crash shutdown, "cannot connect now" (starting up or
# shutting down), too many connections; and deadlocks and serialisation failures,
# which a retry resolves.
TRANSIENT_STATES = ("57P01", "57P02", "57P03", "53300", "40001", "40P01")
CONTENTION_STATES = ("40001", "40P01")  # (transient, but not an outage)
# Connection failures carry no SQLSTATE: these words in a server's FATAL message
# mean it is restarting or full; any other FATAL (a role or a database that does not
# exist, authentication refused) is a setting to fix, as is a host name that is unknown.
TRANSIENT_FATAL = (
    "starting up",
    "shutting down",
    "in recovery",
    "not yet accepting",
    "too many clients",
    "terminating connection",
)
PERMANENT_CONNECT = ("FATAL", "failed to resolve host", "could not translate host name")


def is_transient(error: psycopg.Error) -> bool:
    """Whether ``error`` is worth retrying: a lost or refused connection, a server
    restarting, a deadlock; not a bad setting, statement, lock timeout or conflict."""
    if not isinstance(error, psycopg.OperationalError):
        return False
    if isinstance(error, (PoolTimeout, TooManyRequests)):  # the pool's: not the server's
        return False
    state = error.sqlstate
    if state is not None:
        return state.startswith("08") or state in TRANSIENT_STATES
    text = str(error)
    if any(words in text for words in TRANSIENT_FATAL):
        return True
    return not any(words in text for words in PERMANENT_CONNECT)


# How long a listener reads notices that select() said had come.
_READ_WAIT = 1.0


class PostgresListener:
    """A dedicated connection that LISTENs on one events table's channel.

    It rides out outages: when its connection is lost, ``wait`` connects again and
    LISTENs again (retrying with backoff, without end, at most ``timeout`` per call),
    and then returns True, since commits may have been missed meanwhile.

    ``interrupt()`` (from another thread) makes a wait under way, and every later
    one, return False at once: whoever stops listening need not wait out a timeout.
    """

    def __init__(self, datastore: PostgresDatastore, channel: str):
        self.datastore = datastore
        self.channel = channel
        self.outage = Outage(logger, f"{datastore.describe()} (listening on {channel!r})")
        self._next_delay = backoff_delays()
        self._conn: psycopg.Connection[Any] | None = None
        self._interrupted = False
        # (A socket pair, not a pipe: Windows' select() takes only sockets.)
        self._wake_up, self._waker = socket.socketpair()
        self._conn = datastore.retrying(self._listening, what=f"Listening on {channel!r}")

    def _listening(self) -> psycopg.Connection[Any]:
        conn = self.datastore.connect()
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def wait(self, timeout: float) -> bool:
        """Whether new events were committed since the last call, waiting up to ``timeout``
        (or, after a lost connection, whether they may have been)."""
        conn = self._conn
        if conn is None:
            return self._listen_again(timeout)
        try:
            if not self._readable(conn.pgconn.socket, timeout):
                return False
            # Return at the first notice: waiting to drain others would delay every
            # wake-up. (psycopg reads every notice that has come, so none waits in
            # libpq unseen by the next select.)
            return any(True for _ in conn.notifies(timeout=_READ_WAIT, stop_after=1))
        except psycopg.Error as error:
            if not is_transient(error):
                raise self.datastore.translate(error, f"Waiting on {self.channel!r}") from error
            self.outage.begin(one_line(error), None)
            self._drop_connection()
            return self._listen_again(timeout)

    def _listen_again(self, timeout: float) -> bool:
        """Connect and LISTEN again: True once listening (commits may have been missed),
        else False after a pause of at most ``timeout``."""
        try:
            self._conn = self._listening()
        except psycopg.Error as error:
            if not is_transient(error):
                raise self.datastore.translate(error, f"Listening on {self.channel!r}") from error
            self.outage.begin(one_line(error), None)
            self._readable(None, min(self._next_delay(), max(timeout, 0.0)))  # (a pause)
            return False
        self._next_delay = backoff_delays()
        self.outage.end()
        return True

    def _readable(self, fileno: int | None, timeout: float) -> bool:
        """Whether ``fileno`` has something to read (or has failed) within ``timeout``
        seconds; False at once if interrupted meanwhile."""
        if self._interrupted:
            return False
        waiting_on = (
            [self._wake_up.fileno()] if fileno is None else [fileno, self._wake_up.fileno()]
        )
        seconds = max(timeout, 0.0)
        if hasattr(select, "poll"):  # (select() refuses descriptors above 1023)
            poller = select.poll()
            for descriptor in waiting_on:
                poller.register(descriptor, select.POLLIN)
            ready = [descriptor for descriptor, _ in poller.poll(seconds * 1000)]
        else:  # (Windows, where select() takes sockets of any number)
            ready, _, _ = select.select(waiting_on, [], [], seconds)
        return fileno in ready and not self._interrupted

    def interrupt(self) -> None:
        """Make a wait under way, and every later one, return False at once."""
        self._interrupted = True
        with suppress(OSError):
            self._waker.send(b"\0")

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        self._drop_connection()
        self._wake_up.close()
        self._waker.close()

    def __enter__(self) -> PostgresListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
