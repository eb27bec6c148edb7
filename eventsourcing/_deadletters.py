"""Dead letters: upstream events a follower could not process, parked so it can go on.

An event whose processing keeps failing is *parked*: a row in the follower's
dead-letter table says what it was and why it failed, and the follower's tracking
position moves past it in the same transaction (so it is parked exactly once).
Later events of the same aggregate are parked behind it, so an aggregate's events
are never processed out of order; other aggregates go on. An operator then
retries the parked events (after a fix) or skips them.

Each store's process recorder has the part below for its kind of database: a
table named after the tracking table, created when the first event is parked (so
a database shared with other eventsourcing 9.x programs gets no new table until
then; reading a missing table finds no dead letters, and creates nothing).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from eventsourcing.persistence import Tracking

PARKED = "parked"  # waiting for an operator (or processed behind another)
RETRIED = "retried"  # processed later, by ``dead-letters retry``
SKIPPED = "skipped"  # dropped by an operator, on purpose
STATUSES = (PARKED, RETRIED, SKIPPED)


@dataclass(frozen=True)
class DeadLetter:
    """An upstream event a follower parked, and why."""

    upstream: str  # the leader's name
    notification_id: int  # its position in the leader's log
    originator_id: str
    topic: str
    error_type: str
    error_message: str
    traceback: str
    attempts: int
    first_failed: float  # seconds since the epoch
    last_failed: float
    status: str = PARKED
    id: int | None = None  # given by the store

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "upstream": self.upstream,
            "notification_id": self.notification_id,
            "originator_id": self.originator_id,
            "topic": self.topic,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "traceback": self.traceback,
            "attempts": self.attempts,
            "first_failed": self.first_failed,
            "last_failed": self.last_failed,
            "status": self.status,
        }


def dead_letter_table_name(tracking_table_name: str) -> str:
    """``counters_tracking`` -> ``counters_dead_letters``; otherwise a suffix is added."""
    if tracking_table_name.endswith("tracking"):
        return tracking_table_name[: -len("tracking")] + "dead_letters"
    return tracking_table_name + "_dead_letters"


_COLUMNS = (
    "upstream",
    "notification_id",
    "originator_id",
    "topic",
    "error_type",
    "error_message",
    "traceback",
    "attempts",
    "first_failed",
    "last_failed",
    "status",
)


def _values(letter: DeadLetter) -> tuple[Any, ...]:
    return tuple(getattr(letter, column) for column in _COLUMNS)


# The columns an update writes (then ``WHERE id = ? AND status = ?``).
_UPDATED = ("status", "attempts", "error_type", "error_message", "traceback", "last_failed")


def _update_params(letter: DeadLetter, expected_status: str) -> tuple[Any, ...]:
    """The parameters of an update of ``letter``'s row: ``_UPDATED``, id, expected status."""
    return (*(getattr(letter, column) for column in _UPDATED), letter.id, expected_status)


def _letter(row: Sequence[Any]) -> DeadLetter:
    """A dead letter from a row of ``id`` then ``_COLUMNS``."""
    values = dict(zip(("id", *_COLUMNS), row))
    values["id"] = int(values["id"])
    values["notification_id"] = int(values["notification_id"])
    values["attempts"] = int(values["attempts"])
    values["first_failed"] = float(values["first_failed"])
    values["last_failed"] = float(values["last_failed"])
    return DeadLetter(**values)


class DeadLetterRecorder:
    """What a process recorder does with dead letters (see the module's docstring)."""

    def park_events(self, letters: Sequence[DeadLetter], tracking: Tracking) -> None:
        """Record ``letters`` and move the tracking position to ``tracking``, in one
        transaction (``TrackingConflictError`` if the position moved meanwhile)."""
        raise NotImplementedError

    def select_dead_letters(self, upstream: str | None = None) -> list[DeadLetter]:
        """Every dead letter (of ``upstream``, if given), oldest first. None if the
        table does not exist: reading creates nothing."""
        raise NotImplementedError

    def update_dead_letter(self, letter: DeadLetter, expected_status: str) -> bool:
        """Write ``letter``'s status, attempts, error and times over the row of its id,
        if that row's status is still ``expected_status``; return whether it was."""
        raise NotImplementedError

    def replace_tracking(self, removed: Sequence[str], added: Sequence[Tracking]) -> None:
        """Record the positions ``added`` (each a new name, or ahead of its position)
        and remove every position of the names ``removed``, in one transaction: how
        a follower's positions are carried over to another partition layout."""
        raise NotImplementedError


class POPODeadLetters(DeadLetterRecorder):
    """Dead letters in memory, for the in-memory process recorder."""

    _lock: Any

    def _dead_letters(self) -> list[DeadLetter]:
        letters: list[DeadLetter] | None = self.__dict__.get("_dead_letter_rows")
        if letters is None:
            letters = self.__dict__.setdefault("_dead_letter_rows", [])
        return letters

    def park_events(self, letters: Sequence[DeadLetter], tracking: Tracking) -> None:
        with self._lock:
            self._track(tracking)  # type: ignore[attr-defined] # raises on a conflict first
            rows = self._dead_letters()
            for letter in letters:
                rows.append(replace(letter, id=len(rows) + 1))

    def select_dead_letters(self, upstream: str | None = None) -> list[DeadLetter]:
        with self._lock:
            rows = self._dead_letters()
            return [letter for letter in rows if upstream in (None, letter.upstream)]

    def update_dead_letter(self, letter: DeadLetter, expected_status: str) -> bool:
        with self._lock:
            rows = self._dead_letters()
            for index, row in enumerate(rows):
                if row.id == letter.id:
                    if row.status != expected_status:
                        return False
                    rows[index] = letter
                    return True
            return False

    def replace_tracking(self, removed: Sequence[str], added: Sequence[Tracking]) -> None:
        with self._lock:
            positions: dict[str, int] = self._positions  # type: ignore[attr-defined]
            undo = dict(positions)
            try:
                for tracking in added:
                    self._track(tracking)  # type: ignore[attr-defined]
            except BaseException:
                positions.clear()
                positions.update(undo)
                raise
            for name in removed:
                positions.pop(name, None)


class TableDeadLetters(DeadLetterRecorder):
    """Dead letters in a database table named after the tracking table's."""

    datastore: Any
    tracking_table_name: str

    @property
    def dead_letter_table_name(self) -> str:
        return dead_letter_table_name(self.tracking_table_name)


class SQLiteDeadLetters(TableDeadLetters):
    """Dead letters in a SQLite table, for the SQLite process recorder."""

    def _quoted_dead_letters(self) -> str:
        return '"' + self.dead_letter_table_name.replace('"', '""') + '"'

    def _create_dead_letters_sql(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self._quoted_dead_letters()} ("
            "id INTEGER PRIMARY KEY AUTOINCREMENT, upstream TEXT NOT NULL, "
            "notification_id INTEGER NOT NULL, originator_id TEXT NOT NULL, "
            "topic TEXT NOT NULL, error_type TEXT NOT NULL, error_message TEXT NOT NULL, "
            "traceback TEXT NOT NULL, attempts INTEGER NOT NULL, first_failed REAL NOT NULL, "
            "last_failed REAL NOT NULL, status TEXT NOT NULL, "
            "UNIQUE (upstream, notification_id))"
        )

    def park_events(self, letters: Sequence[DeadLetter], tracking: Tracking) -> None:
        insert = (
            f"INSERT INTO {self._quoted_dead_letters()} ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
        )

        def park(conn: sqlite3.Connection) -> None:
            self._advance_tracking(conn, tracking)  # type: ignore[attr-defined]
            conn.execute(self._create_dead_letters_sql())
            conn.executemany(insert, [_values(letter) for letter in letters])

        self.datastore.run(
            park, write=True, what=f"Parking events in {self.dead_letter_table_name!r}"
        )

    def select_dead_letters(self, upstream: str | None = None) -> list[DeadLetter]:
        select = f"SELECT id, {', '.join(_COLUMNS)} FROM {self._quoted_dead_letters()}"
        params: tuple[Any, ...] = ()
        if upstream is not None:
            select += " WHERE upstream = ?"
            params = (upstream,)

        def read(conn: sqlite3.Connection) -> list[DeadLetter]:
            try:
                rows = conn.execute(select + " ORDER BY id", params).fetchall()
            except sqlite3.OperationalError as error:
                if "no such table" in str(error):
                    return []
                raise
            return [_letter(row) for row in rows]

        return self.datastore.run(
            read, write=False, what=f"Selecting from {self.dead_letter_table_name!r}"
        )

    def replace_tracking(self, removed: Sequence[str], added: Sequence[Tracking]) -> None:
        delete = f"DELETE FROM {self._tracking} WHERE application_name = ?"  # type: ignore[attr-defined]

        def replace(conn: sqlite3.Connection) -> None:
            for tracking in added:
                self._advance_tracking(conn, tracking)  # type: ignore[attr-defined]
            conn.executemany(delete, [(name,) for name in removed])

        self.datastore.run(
            replace, write=True, what=f"Carrying positions over in {self.tracking_table_name!r}"
        )

    def update_dead_letter(self, letter: DeadLetter, expected_status: str) -> bool:
        update = (
            f"UPDATE {self._quoted_dead_letters()} SET status = ?, attempts = ?, "
            "error_type = ?, error_message = ?, traceback = ?, last_failed = ? "
            "WHERE id = ? AND status = ?"
        )
        params = _update_params(letter, expected_status)
        return bool(
            self.datastore.run(
                lambda conn: conn.execute(update, params).rowcount,
                write=True,
                what=f"Updating {self.dead_letter_table_name!r}",
            )
        )
