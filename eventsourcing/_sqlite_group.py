"""Group commit for an SQLite file: writes from many threads share one transaction.

A write that arrives while another thread is committing waits; the next thread to
commit (the leader) takes the write lock, then every write waiting at that moment,
and runs each in a savepoint of one transaction: a write that fails (a conflict)
is rolled back to its savepoint alone, and fails alone. Then one COMMIT (one
fsync) makes the others durable, and only then is each writer answered: a save
returns after its commit is on disk, as before. When the leader is done, the
first writer still waiting leads the next group, so no thread serves others for
long.

If the transaction itself fails (the lock not had in time, a failed COMMIT, an
error that ended the transaction, or an interruption of a write run without a
savepoint, below), every write of the group fails, and none of them was recorded.

A write that is one statement (``single``: one INSERT, say) and finds itself alone
when its leader starts runs as that statement only, without BEGIN and COMMIT: a
statement outside a transaction is a transaction of its own, which takes the write
lock before it reads anything (so ids stay in order, as under BEGIN IMMEDIATE) and
commits, as durably, when it ends. Writes arriving meanwhile form the next group.
In a group, such a write needs no savepoint: SQLite undoes a statement that fails
(a conflict) by itself, leaving the transaction and the other writes as they were.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress
from threading import get_ident
from typing import Any

from eventsourcing.persistence import PersistenceError


class _Write:
    """One thread's write, waiting to be run by a leader, then its outcome."""

    __slots__ = ("error", "func", "leads", "ready", "result", "single")

    def __init__(self, func: Callable[[sqlite3.Connection], Any], single: bool):
        self.func = func
        self.single = single  # one statement: atomic without a transaction of ours
        # Answered, or asked to lead: made only for a write that waits (a leader that
        # finds nobody writing, the usual case, needs none). A lock made held and
        # released by the leader: an Event costs several times its CPU per signal.
        self.ready: threading.Lock | None = None
        self.leads = False
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    """Runs writes from many threads in shared transactions on ``connection()``."""

    def __init__(self, connection: Callable[[], sqlite3.Connection]):
        self._connection = connection
        self._lock = threading.Lock()
        self._waiting: list[_Write] = []
        self._leading = False
        self._leader: int | None = None  # the thread running a group, while it does

    def run(self, func: Callable[[sqlite3.Connection], Any], single: bool = False) -> Any:
        """Run ``func(connection)`` in a transaction shared with other writes; return
        its result once committed (or raise its error, or the transaction's).

        ``single``: ``func`` runs one statement that writes (and maybe reads after
        it), so that alone it may run without BEGIN and COMMIT (module docstring)."""
        if self._leader == get_ident():  # a write within a write: refused, as before
            raise sqlite3.OperationalError("cannot start a transaction within a transaction")
        write = _Write(func, single)
        with self._lock:
            alone = not self._leading
            if alone:  # nobody writing: lead at once, with this write alone
                self._leading = write.leads = True
            else:
                self._waiting.append(write)
                ready = write.ready = threading.Lock()
                ready.acquire()
        if alone:
            self._lead([write])
        else:
            ready.acquire()  # (until released: answered, or asked to lead)
            if write.leads:  # asked to lead the writes waiting, this one among them
                self._lead([])
        return write.outcome()

    def _lead(self, group: list[_Write]) -> None:
        """Run ``group`` (or, if empty, the writes waiting) and those that come while
        the write lock is taken, in one transaction; then hand over to a waiting write."""
        self._leader = get_ident()
        try:
            try:
                if not group:
                    group = self._take_waiting()
                conn = self._connection()
                if len(group) == 1 and group[0].single:
                    _run_single(conn, group[0])
                    return
                conn.execute("BEGIN IMMEDIATE")
            except BaseException as error:  # (no connection, or the lock not had in time)
                group += self._take_waiting()
                _fail_all(group, error)
                return
            group += self._take_waiting()  # after the lock: those that came meanwhile too
            _run_group(conn, group)
        finally:
            self._leader = None
            self._hand_over()
            for write in group:
                if write.ready is not None:
                    write.ready.release()

    def _take_waiting(self) -> list[_Write]:
        with self._lock:
            group, self._waiting = self._waiting, []
        return group

    def _hand_over(self) -> None:
        with self._lock:
            if self._waiting:
                following = self._waiting[0]
                following.leads = True
                assert following.ready is not None  # (a write that waits has one)
                following.ready.release()
            else:
                self._leading = False


def _run_group(conn: sqlite3.Connection, group: list[_Write]) -> None:
    """Run each write in its savepoint, then commit (in the transaction begun)."""
    if len(group) == 1:
        _run_alone(conn, group[0])
        return
    for index, write in enumerate(group):
        if write.single:  # (SQLite undoes a failed statement alone: no savepoint needed)
            try:
                write.result = write.func(conn)
            except BaseException as error:
                write.error = error
                if not (_statement_failed(error) and conn.in_transaction):
                    # (the transaction is gone, or the error may have come after the
                    # statement wrote: the group cannot be committed without doubt)
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    _fail_all(group[:index] + group[index + 1 :], error)
                    return
            continue
        conn.execute("SAVEPOINT group_write")
        try:
            write.result = write.func(conn)
        except BaseException as error:
            write.error = error
            if not _undo_savepoint(conn):  # the transaction is gone: so is the group
                _fail_all(group[:index] + group[index + 1 :], error)
                return
            continue
        conn.execute("RELEASE group_write")
    try:
        conn.execute("COMMIT")
    except BaseException as error:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        _fail_all([w for w in group if w.error is None], error)


def _run_alone(conn: sqlite3.Connection, write: _Write) -> None:
    """A group of one needs no savepoint (two statements less): its failure rolls
    back the whole transaction, which holds nothing else."""
    try:
        write.result = write.func(conn)
        conn.execute("COMMIT")
    except BaseException as error:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        write.result = None
        write.error = error


def _run_single(conn: sqlite3.Connection, write: _Write) -> None:
    """A write of one statement, alone: that statement is the transaction (it takes the
    write lock as it starts and commits as it ends, or leaves nothing if it fails)."""
    if conn.in_transaction:  # (one the thread began: refused, as BEGIN would be)
        write.error = sqlite3.OperationalError("cannot start a transaction within a transaction")
        return
    try:
        write.result = write.func(conn)
    except BaseException as error:
        write.result = None
        write.error = error
    if conn.in_transaction:  # (not so for one statement: never leave one open)
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        if write.error is None:
            write.result = None
            write.error = sqlite3.OperationalError("a single write left a transaction open")


def _statement_failed(error: BaseException) -> bool:
    """Whether a single write's error is its statement's failure (undone by SQLite), as
    opposed to an interruption that may have come after the statement wrote."""
    return isinstance(error, (sqlite3.Error, PersistenceError))


def _undo_savepoint(conn: sqlite3.Connection) -> bool:
    """Roll back to the savepoint; False if the transaction has ended (rolled back)."""
    if not conn.in_transaction:
        return False
    try:
        conn.execute("ROLLBACK TO group_write")
        conn.execute("RELEASE group_write")
    except sqlite3.Error:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        return False
    return True


def _fail_all(writes: list[_Write], error: BaseException) -> None:
    """The group's transaction failed: none of ``writes`` was recorded. Each gets an
    error of its own (one object raised in many threads would share a traceback)."""
    for write in writes:
        write.result = None
        write.error = _copy(error)


def _copy(error: BaseException) -> BaseException:
    try:
        copy = type(error)(*error.args)
    except Exception:  # an error type that cannot be made again from its args
        return error
    copy.__cause__ = error.__cause__
    return copy
