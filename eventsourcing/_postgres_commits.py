"""Parallel commits to a PostgreSQL events table, with readers that never skip.

Writers to one events table commit in parallel, so the server can group their
flushes: the table's write lock (an advisory lock keyed by the table's oid) is
held only while a writer takes its transaction id and draws its notification
ids, within its one statement, not until its commit. Each row records the
transaction id of its writer (``transaction_id``, an ``xid8``). A reader returns
only rows whose writers' transaction ids are below its snapshot's ``xmin``: the
oldest transaction still running when its statement began.

Why a reader never skips. A writer takes its transaction id under the lock,
before it draws, so of two writers the one that draws first has the lower id,
and notification ids are drawn in increasing order (one sequence): the stamps
never decrease along the notification ids. Say a reader returns row N, stamped
s < xmin. Any row M < N was drawn before N, under the lock, by a transaction of
id <= s < xmin: so that transaction had ended when the reader's snapshot was
taken. If it committed, row M is visible to the reader and its stamp is below
xmin too, so M is returned before N; if it rolled back, M never exists. So no
row below a returned one can appear later.

Writes in a transaction of several statements (an extension's, a tracking
table of a row per position) take the lock with a transaction id first, and
hold it until commit, as every write did before; their rows are stamped with
that id (the column's default), which keeps the stamps in order. Writers of
earlier versions took the same lock until commit, and took their transaction id
under it: their rows are in order too.

Assumptions: ids come from the table's own sequence, drawn one at a time in
increasing order (its CACHE of 1, as ``bigserial`` makes it); and a transaction
that calls a recorder's ``_insert_events`` itself (not through ``insert_events``)
has written nothing before, or has taken the lock first (else its stamp may be
older than rows drawn before it).

A table made by an earlier version gets the column from ``create_table()``
(rows already there have none: they were committed before the column was
added, and are always returned). Until then the recorder keeps the earlier way:
writers hold the lock until commit, readers filter nothing.

Readers refine this: rows that follow on without a gap (from the position read
from, or from the row before) are returned whatever their stamps, as no row can
come between; only after a gap must the stamp be below ``xmin`` (then no writer
that could fill the gap is in progress). The price: at a gap, a long transaction
anywhere on the server (one that has written) holds readers back until it ends:
events are delivered late, never out of order; followers' poll interval covers
the wake-up that its end does not send.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

logger = logging.getLogger("eventsourcing.postgres")

STAMP_COLUMN = "transaction_id"


@dataclass(frozen=True)
class CommitLayout:
    """What an events table allows: whether it exists, has the stamp column, and
    the sequence that draws its notification ids (None if it has none)."""

    exists: bool
    stamped: bool
    sequence: str | None

    @property
    def parallel(self) -> bool:
        return self.stamped and self.sequence is not None


_LAYOUT_SQL = (
    "SELECT to_regclass(%(t)s) IS NOT NULL, "
    "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%(t)s) "
    "AND attname = %(c)s AND NOT attisdropped), "
    "CASE WHEN to_regclass(%(t)s) IS NOT NULL "
    "THEN pg_get_serial_sequence(%(t)s, %(id)s) END"
)


def layout_query(table: str, id_column: str = "notification_id") -> tuple[str, dict[str, str]]:
    """The statement (and its parameters) that reads the layout of the events table
    named ``table`` (quoted, maybe qualified), whose ids are drawn for ``id_column``
    (a serial or identity column): a row for ``layout_from_row``."""
    return _LAYOUT_SQL, {"t": table, "c": STAMP_COLUMN, "id": id_column}


def layout_from_row(row: Any) -> CommitLayout:
    assert row is not None
    exists, stamped, sequence = row
    return CommitLayout(bool(exists), bool(stamped), sequence)


def read_layout(
    conn: psycopg.Connection[Any], table: str, id_column: str = "notification_id"
) -> CommitLayout:
    """The layout of the events table named ``table`` (see ``layout_query``)."""
    return layout_from_row(conn.execute(*layout_query(table, id_column)).fetchone())


def stamp_column_sql() -> str:
    """The column of a new events table (its default serves writers holding the lock)."""
    return f"{STAMP_COLUMN} xid8 DEFAULT pg_current_xact_id()"


def add_stamp_column_sql(table: sql.Composable) -> sql.Composable:
    """Add the column to a table made by an earlier version, only if it lacks it (ALTER
    TABLE takes the table's strongest lock, even when there is nothing to do).

    Added without a default first: rows already there keep none (no rewrite), then
    the default serves later writers that hold the lock."""
    name = table.as_string(None)
    body = (
        "BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
        f"{sql.Literal(name).as_string(None)}::regclass "
        f"AND attname = '{STAMP_COLUMN}' AND NOT attisdropped) THEN "
        f"ALTER TABLE {name} ADD COLUMN {STAMP_COLUMN} xid8; "
        f"ALTER TABLE {name} ALTER COLUMN {STAMP_COLUMN} SET DEFAULT pg_current_xact_id(); "
        "END IF; END"
    )
    return sql.SQL("DO {}").format(sql.Literal(body))


# The columns an application's events table is written with, and its lock's key (the
# table's oid; ``{lock_key}`` is the table's name, left for the caller to fill).
_APPLICATION_COLUMNS = ("originator_id", "originator_version", "topic", "state")
_TABLE_OID_LOCK_KEY = "{lock_key}::regclass::oid::bigint"


def parallel_write_sql(
    new_cte: str,
    checks: list[str],
    gate: str,
    sequence: str,
    *,
    id_column: str = "notification_id",
    columns: tuple[str, ...] = _APPLICATION_COLUMNS,
    lock_key: str = _TABLE_OID_LOCK_KEY,
    overriding: bool = False,
    returning: str = "notification_id",
) -> str:
    """A write statement whose lock is held only while ids are drawn (see above).

    ``new_cte`` names ``new``, with the ``columns`` and ``position`` (the order of
    the rows, from 1); ``checks`` are CTEs evaluated before the lock is taken (they
    must not refer to it); ``gate`` says whether to insert. The rows are inserted
    into ``{events}`` with ids drawn for ``id_column`` from ``sequence``
    (``overriding`` an identity column that is ``GENERATED ALWAYS``), under the
    advisory lock of key ``lock_key`` (an SQL expression), and the CTE ``inserted``
    returns ``returning``. By default, an application's events table: the template
    names ``{events}`` and ``{lock_key}`` are left for the caller to fill.
    """
    seq = sql.Literal(sequence).as_string(None)
    names = ", ".join(columns)
    values = ", ".join("new." + c for c in columns)
    override = "OVERRIDING SYSTEM VALUE " if overriding else ""
    ctes = [
        new_cte,
        *checks,
        f"drawing AS (SELECT pg_advisory_lock({lock_key}) WHERE {gate})",
        "xact AS (SELECT pg_current_xact_id() AS xid FROM drawing)",
        "ids AS (SELECT id, row_number() OVER (ORDER BY id) AS position "
        f"FROM (SELECT nextval({seq}::regclass) AS id FROM new, xact) AS d)",
        # Counting every id first: the lock is let go only after the last is drawn.
        f"released AS (SELECT pg_advisory_unlock({lock_key}) "
        "FROM drawing, (SELECT count(*) FROM ids) AS c)",
        f"inserted AS (INSERT INTO {{events}} ({id_column}, {names}, {STAMP_COLUMN}) "
        f"{override}SELECT ids.id, {values}, xact.xid "
        "FROM new JOIN ids USING (position), xact, released ORDER BY ids.id "
        f"RETURNING {returning})",
    ]
    return "WITH " + ", ".join(ctes)


def held_write_sql(new_cte: str, checks: list[str], gate: str) -> str:
    """A write statement that takes the lock first and holds it until commit."""
    columns = "originator_id, originator_version, topic, state"
    ctes = [
        "lock AS (SELECT pg_advisory_xact_lock({lock_key}::regclass::oid::bigint))",
        new_cte,
        *checks,
        f"inserted AS (INSERT INTO {{events}} ({columns}) SELECT {columns} FROM new, lock "
        f"WHERE {gate} ORDER BY position RETURNING notification_id)",
    ]
    return "WITH " + ", ".join(ctes)


def lock_until_commit_sql() -> str:
    """Take the lock until commit, and a transaction id under it (a transaction's first
    statement, before an extension's writes)."""
    return "SELECT pg_advisory_xact_lock({lock_key}::regclass::oid::bigint), pg_current_xact_id()"


def release_after_error(conn: psycopg.Connection[Any]) -> None:
    """A parallel write that failed may have failed holding the lock (a session lock
    outlives its transaction): let it go, or close the connection that holds it."""
    try:
        conn.execute("SELECT pg_advisory_unlock_all()")
    except BaseException:  # the session is lost or unusable: closing it frees the lock
        conn.close()


def settled_rows_sql(has_stop: bool) -> str:
    """The rows after a position (the first parameter, repeated) a reader may return,
    up to a limit: in order, up to the first one that a writer still in progress may
    precede. A row that follows the one before it (or the position) without a gap
    cannot be preceded; after a gap, a row is returned only if its stamp is below the
    snapshot's ``xmin`` (see the module docstring). So a transaction running elsewhere
    on the server holds a reader back only at a gap, not at rows that follow on.

    ``{events}`` is left for the caller to fill."""
    stop = "AND notification_id <= %s " if has_stop else ""
    window = (
        "SELECT notification_id, originator_id, originator_version, topic, state, "
        f"({STAMP_COLUMN} IS NULL "
        f"OR {STAMP_COLUMN} < pg_snapshot_xmin(pg_current_snapshot()) "
        "OR notification_id = 1 + lag(notification_id, 1, %s::bigint) "
        "OVER (ORDER BY notification_id)) AS settled "
        "FROM (SELECT * FROM {events} WHERE notification_id > %s "
        f"{stop}ORDER BY notification_id LIMIT %s) AS page"
    )
    return (
        "SELECT notification_id, originator_id, originator_version, topic, state FROM ("
        "SELECT *, bool_and(settled) OVER (ORDER BY notification_id) AS ready "
        f"FROM ({window}) AS w) AS r WHERE ready ORDER BY notification_id"
    )


def settled_frontier_sql(id_column: str = "notification_id") -> str:
    """A statement of one row: the highest id up to which no row can still appear (0
    if none), and the stamp of its row (as text), for a reader that must not look past
    a row that a writer still in progress could precede (a DCB read's head). Its two
    parameters are an id and a stamp that it gave before (or 0 and "0"): a point known
    to be settled, if its row is still there with that stamp. ``{events}`` is left to
    fill.

    No row can still appear up to a point once settled. Above the known point, the
    stamps never decrease along the ids (see the module docstring), so the last row
    whose stamp is below the snapshot's ``xmin`` (or has none) is found scanning the
    ids down from the last one to the known point, and no row below it can still
    appear; above that, rows are settled as long as they follow on without a gap.
    So a reader looks at the rows recorded since the last point it was given, or,
    the first time, at those recorded by transactions newer than the oldest still
    running on the server (a long transaction can make those many).
    """
    i, stamp = id_column, STAMP_COLUMN
    xmin = "pg_snapshot_xmin(pg_current_snapshot())"
    return (
        f"WITH known AS (SELECT COALESCE((SELECT {i} FROM {{events}} "
        f"WHERE {i} = %s AND {stamp} = %s::xid8), 0) AS id), "
        f"base AS (SELECT GREATEST(known.id, COALESCE((SELECT {i} FROM {{events}} "
        f"WHERE {i} > known.id AND ({stamp} IS NULL OR {stamp} < {xmin}) "
        f"ORDER BY {i} DESC LIMIT 1), 0)) AS id FROM known), "
        f"tail AS (SELECT t.{i} AS id, t.{i} = 1 + lag(t.{i}, 1, base.id) "
        f"OVER (ORDER BY t.{i}) AS follows FROM {{events}} AS t, base WHERE t.{i} > base.id), "
        "frontier AS (SELECT COALESCE((SELECT max(id) FROM tail WHERE id < COALESCE("
        "(SELECT min(id) FROM tail WHERE NOT follows), 9223372036854775807)), "
        "(SELECT id FROM base)) AS id) "
        f"SELECT frontier.id, (SELECT {stamp}::text FROM {{events}} WHERE {i} = frontier.id) "
        "FROM frontier"
    )


_UNSETTLED = (
    f"NOT ({STAMP_COLUMN} IS NULL "
    f"OR {STAMP_COLUMN} < pg_snapshot_xmin(pg_current_snapshot()) "
    "OR notification_id = 1 + prev)"
)


def settled_topic_rows_sql(has_stop: bool) -> str:
    """As ``settled_rows_sql``, of the rows of some topics (named parameters: after,
    stop, topics, limit): the gaps are looked for among the rows of every topic up
    to the last row found (the same range the search by topic reads)."""
    stop = "AND notification_id <= %(stop)s " if has_stop else ""
    return (
        "WITH page AS (SELECT notification_id, originator_id, originator_version, topic, "
        "state FROM {events} WHERE notification_id > %(after)s "
        f"{stop}AND topic = ANY(%(topics)s) ORDER BY notification_id LIMIT %(limit)s), "
        "frontier AS (SELECT min(notification_id) AS id FROM ("
        f"SELECT notification_id, {STAMP_COLUMN}, lag(notification_id, 1, %(after)s::bigint) "
        "OVER (ORDER BY notification_id) AS prev FROM {events} "
        "WHERE notification_id > %(after)s "
        "AND notification_id <= (SELECT max(notification_id) FROM page)) AS range "
        f"WHERE {_UNSETTLED}) "
        "SELECT * FROM page WHERE notification_id < "
        "COALESCE((SELECT id FROM frontier), 9223372036854775807) ORDER BY notification_id"
    )


class CommitLayoutCache:
    """The layout of a recorder's events table (``_events``), read at its first use
    (once the table exists), and again after ``create_table()``, which may have given
    it the stamp column. ``_layout_id_column`` names the column its ids are drawn for."""

    _events: sql.Identifier
    _layout_id_column = "notification_id"
    _layout: CommitLayout | None = None

    def create_table(self) -> None:
        super().create_table()  # type: ignore[misc]
        self._layout = None

    def _commit_layout(self, conn: psycopg.Connection[Any]) -> CommitLayout:
        layout = self._layout
        if layout is None:
            layout = read_layout(conn, self._events.as_string(None), self._layout_id_column)
            if layout.exists:
                self._layout = layout
        return layout


class NoticeSender:
    """Sends a channel's NOTIFY on a connection of its own, opened at the first notice
    (by ``connect``), replaced after an error, closed by ``close()``.

    A pooled connection cost the notifier thread four times the statement's own CPU
    (the pool, the retries, psycopg's execute): a fixed statement on a connection of
    its own goes straight to libpq. The session does not wait for the flush of a
    notice's commit: a notice is a wake-up, not a record, and a commit that waits
    holds the server's notify lock (see ``Notifier``) the while.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], channel: str):
        self._connect = connect  # (a new connection, or an error)
        self._channel = channel
        self._conn: psycopg.Connection[Any] | None = None
        self._statement = b""
        self._pid = 0  # the process that opened the connection (a child opens its own)
        self._lock = threading.Lock()  # the notifier thread's and close()'s
        self._closed = False
        _FORKED.add(self)

    def _after_fork(self) -> None:
        # The parent's connection is its own (closing the copy would end its
        # session), and its lock may have been held by a thread the child lacks.
        self._conn, self._pid = None, 0
        self._lock = threading.Lock()

    def send(self) -> None:
        """NOTIFY once (a psycopg error if it could not)."""
        if not self._lock.acquire(timeout=_CLOSING_WAIT):
            raise psycopg.OperationalError(f"a notice to {self._channel!r} is stuck")
        try:
            if self._closed:
                return
            conn = self._conn
            if conn is not None:
                try:
                    self._notify(conn)
                    return
                except psycopg.Error:
                    # An idle connection may have been lost meanwhile (a restart, an
                    # idle timeout): once more, on a new one.
                    pass
            self._notify(self._open())
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the connection; send no more (waits for a notice being sent)."""
        locked = self._lock.acquire(timeout=_CLOSING_WAIT)
        try:
            self._closed = True
            if locked:
                self._drop()
        finally:
            if locked:
                self._lock.release()

    def _notify(self, conn: psycopg.Connection[Any]) -> None:
        try:
            result = conn.pgconn.exec_(self._statement)
        except psycopg.Error:
            self._drop()
            raise
        if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
            message = (result.error_message or conn.pgconn.error_message).decode(errors="replace")
            self._drop()
            raise psycopg.OperationalError(message.strip() or "NOTIFY failed")

    def _open(self) -> psycopg.Connection[Any]:
        conn = self._connect()  # (may wait out an outage)
        try:
            if self._closed:  # (closed meanwhile: close() waited only so long)
                raise psycopg.InterfaceError(f"the notices to {self._channel!r} are closed")
            conn.execute("SET synchronous_commit = off")
            statement = sql.SQL("NOTIFY {}").format(sql.Identifier(self._channel))
            self._statement = statement.as_bytes(conn)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        # A child's copy is left alone: closing it would end its parent's session.
        if conn is not None and self._pid == os.getpid():
            try:
                conn.close()
            except psycopg.Error:  # (lost already)
                pass


class _AfterFork(Protocol):
    def _after_fork(self) -> None: ...


# What a child process must reset: the notifiers and senders of its parent's recorders.
_FORKED: weakref.WeakSet[_AfterFork] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for item in list(_FORKED):
        item._after_fork()


if hasattr(os, "register_at_fork"):  # (not on Windows)
    os.register_at_fork(after_in_child=_reset_after_fork)

# How long closing waits for a notice being sent (by a thread stuck on a lost server).
_CLOSING_WAIT = 5.0


class Notifier:
    """Wakes a channel's listeners after writes commit, from a thread of its own.

    NOTIFY takes a lock of the whole server while its transaction commits, so
    writers that each sent one after their commit queued on it: a writer now only
    signals this thread, which sends one NOTIFY for every write committed before it
    is sent (a signal that arrives while one is being sent causes another). So every
    commit is followed by a notice, and writers never wait for one.

    The signal is a lock released by writers and taken by the thread: released, a
    notice is due (an Event cost a writer three times as much CPU per signal).
    """

    def __init__(self, sender: NoticeSender, channel: str, is_closed: Callable[[], bool]):
        self._sender = sender
        self._channel = channel
        self._is_closed = is_closed
        self._due = threading.Lock()
        self._due.acquire()  # (none due yet)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False
        self._pid = 0
        _FORKED.add(self)

    def _after_fork(self) -> None:
        # The parent's thread is not the child's (its locks may have been held by it).
        self._lock = threading.Lock()
        self._running = False

    def signal(self) -> None:
        """Say a write has committed (call after the commit)."""
        try:
            self._due.release()
        except RuntimeError:  # a notice is due already: it will follow this commit
            pass
        if not self._running or self._pid != os.getpid():
            self._start()

    def flush(self) -> None:
        """Send the notice of writes committed, if it is not sent yet (before the
        datastore closes: the thread stops once it is closed)."""
        if self._due.acquire(blocking=False):
            self._sender.send()

    def close(self) -> None:
        """Flush, then close the sender's connection and end the thread (as the
        datastore closes: ``is_closed()`` says so by then, and a retry of the thread's
        stops with it)."""
        try:
            self.flush()
        finally:
            self._sender.close()
            self._stop_thread()

    def _stop_thread(self) -> None:
        thread = self._thread
        if thread is None or self._pid != os.getpid() or thread is threading.current_thread():
            return
        try:  # wake it: it stops, seeing the datastore closed (its sender sends no more)
            self._due.release()
        except RuntimeError:  # woken already
            pass
        thread.join(timeout=_CLOSING_WAIT)

    def _start(self) -> None:
        with self._lock:
            if self._running and self._pid == os.getpid():
                return
            thread = threading.Thread(target=self._run, name=f"notify-{self._channel}", daemon=True)
            self._thread, self._pid, self._running = thread, os.getpid(), True
            try:
                thread.start()
            except BaseException:
                self._running = False
                raise

    def _run(self) -> None:
        try:
            while not self._is_closed():
                if not self._due.acquire(timeout=1.0):
                    continue
                try:
                    self._sender.send()
                except Exception as error:  # recorded all the same: followers' polls find it
                    if self._is_closed():
                        return
                    logger.warning("Could not notify %r: %s", self._channel, error)
        finally:
            self._running = False
