"""Dead letters in a PostgreSQL table, for the PostgreSQL process recorder
(see ``eventsourcing._deadletters``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from eventsourcing._deadletters import (
    _COLUMNS,
    DeadLetter,
    TableDeadLetters,
    _letter,
    _update_params,
    _values,
)
from eventsourcing.persistence import Tracking


class PostgresDeadLetters(TableDeadLetters):
    def _dead_letters_table(self) -> sql.Composable:
        return self.datastore.table(self.dead_letter_table_name)

    def _create_dead_letters_sql(self) -> sql.Composed:
        return sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "id bigserial PRIMARY KEY, upstream text NOT NULL, "
            "notification_id bigint NOT NULL, originator_id text NOT NULL, "
            "topic text NOT NULL, error_type text NOT NULL, error_message text NOT NULL, "
            "traceback text NOT NULL, attempts integer NOT NULL, "
            "first_failed double precision NOT NULL, last_failed double precision NOT NULL, "
            "status text NOT NULL, UNIQUE (upstream, notification_id))"
        ).format(self._dead_letters_table())

    def park_events(self, letters: Sequence[DeadLetter], tracking: Tracking) -> None:
        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self._dead_letters_table(),
            sql.SQL(", ").join(sql.Identifier(column) for column in _COLUMNS),
            sql.SQL(", ").join(sql.Placeholder() for _ in _COLUMNS),
        )

        from eventsourcing.postgres import CREATE_TABLE_LOCK_KEY  # (it imports this module)

        def park(conn: psycopg.Connection[Any]) -> None:
            self._insert_tracked(conn, [], tracking)  # type: ignore[attr-defined]
            # Made when first needed; concurrent CREATEs can collide: serialise them.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_TABLE_LOCK_KEY,))
            conn.execute(self._create_dead_letters_sql())
            with conn.cursor() as cursor:
                cursor.executemany(insert, [_values(letter) for letter in letters])

        self.datastore.run(
            park, what=f"Parking events in {self.dead_letter_table_name!r}", transaction=True
        )

    def select_dead_letters(self, upstream: str | None = None) -> list[DeadLetter]:
        select = sql.SQL("SELECT id, {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(column) for column in _COLUMNS),
            self._dead_letters_table(),
        )
        params: tuple[Any, ...] = ()
        if upstream is not None:
            select += sql.SQL(" WHERE upstream = %s")
            params = (upstream,)
        select += sql.SQL(" ORDER BY id")
        name = self._dead_letters_table().as_string(None)

        def read(conn: psycopg.Connection[Any]) -> list[DeadLetter]:
            exists = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
            if exists is None or exists[0] is None:
                return []  # (reading creates nothing: a read-only role can list)
            return [_letter(row) for row in conn.execute(select, params).fetchall()]

        return self.datastore.run(
            read, what=f"Selecting from {self.dead_letter_table_name!r}", transaction=False
        )

    def replace_tracking(self, removed: Sequence[str], added: Sequence[Tracking]) -> None:
        delete = sql.SQL("DELETE FROM {} WHERE application_name = ANY(%s)").format(
            self._tracking  # type: ignore[attr-defined]
        )

        def replace(conn: psycopg.Connection[Any]) -> None:
            for tracking in added:
                self._insert_tracked(conn, [], tracking)  # type: ignore[attr-defined]
            conn.execute(delete, (list(removed),))

        self.datastore.run(
            replace,
            what=f"Carrying positions over in {self.tracking_table_name!r}",
            transaction=True,
        )

    def update_dead_letter(self, letter: DeadLetter, expected_status: str) -> bool:
        update = sql.SQL(
            "UPDATE {} SET status = %s, attempts = %s, error_type = %s, error_message = %s, "
            "traceback = %s, last_failed = %s WHERE id = %s AND status = %s"
        ).format(self._dead_letters_table())
        params = _update_params(letter, expected_status)

        def run(conn: psycopg.Connection[Any]) -> int:
            return conn.execute(update, params).rowcount

        return bool(
            self.datastore.run(
                run, what=f"Updating {self.dead_letter_table_name!r}", transaction=True
            )
        )
