"""The SQL pieces of PostgreSQL event inserts and tracking positions, shared by the
sync recorders (eventsourcing.postgres) and the async ones (eventsourcing.asyncio)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent, Tracking

# How a tracking position moves: race-free, the WHERE refuses to go back, or to move
# from anywhere but the position the batch started from. ``{after}`` is a further
# condition (within an insert of events: "unless an event is already recorded").
_TRACKING_SQL = {
    # A row at the position the batch started from must be there: compare and set.
    "compare and set": (
        "UPDATE {{tracking}} SET notification_id = %s WHERE application_name = %s "
        "AND notification_id = %s AND notification_id < %s {after}RETURNING 1"
    ),
    # No row expected (started from 0), or any earlier position (not said).
    "upsert": (
        "INSERT INTO {{tracking}} AS t (application_name, notification_id) "
        "SELECT %s, %s {after_where}"
        "ON CONFLICT (application_name) DO UPDATE "
        "SET notification_id = EXCLUDED.notification_id "
        "WHERE t.notification_id < EXCLUDED.notification_id AND %s::bigint IS NULL "
        "RETURNING 1"
    ),
}
# (Within a write: the write lock is taken before the tracking row is, so two
# writers of one position wait for each other instead of deadlocking.)
_UNLESS_RECORDED = "AND NOT EXISTS (SELECT 1 FROM recorded) AND EXISTS (SELECT 1 FROM lock) "
_RECORDED_CTE = (
    "recorded AS (SELECT 1 FROM {events} AS e JOIN new "
    "USING (originator_id, originator_version) LIMIT 1)"
)
_UNLESS_RECORDED_UNLOCKED = "AND NOT EXISTS (SELECT 1 FROM recorded) "


def _tracking_kind(tracking: Tracking) -> str:
    return "compare and set" if tracking.previous_notification_id else "upsert"


def _tracking_params(tracking: Tracking) -> tuple[Any, ...]:
    previous = tracking.previous_notification_id
    if previous:
        return (
            tracking.notification_id,
            tracking.application_name,
            previous,
            tracking.notification_id,
        )
    return (tracking.application_name, tracking.notification_id, previous)


def _tracking_sql(kind: str, after: str) -> str:
    where = "WHERE " + after[len("AND ") :] if after else ""
    return _TRACKING_SQL[kind].format(after=after, after_where=where)


# Up to this many events, an insert passes them as rows of values (a prepared
# statement per count): for a few rows much quicker than arrays (a one-event save
# measured ~470 us against ~880 us), slower for hundreds.
_VALUES_MAX = 16


def _new_rows_cte(shape: int | None, id_type: str) -> str:
    """The events to insert, numbered by ``position``: ``shape`` rows of values, or
    (None) four arrays, one per column; originator ids of the SQL type ``id_type``."""
    columns = "originator_id, originator_version, topic, state, position"
    if shape is None:
        return (
            f"new AS (SELECT * FROM unnest(%s::{id_type}[], %s::bigint[], %s::text[], "
            f"%s::bytea[]) WITH ORDINALITY AS n({columns}))"
        )
    values = ", ".join(
        f"(%s::{id_type}, %s::bigint, %s::text, %s::bytea, {position})"
        for position in range(1, shape + 1)
    )
    return f"new ({columns}) AS (VALUES {values})"


def _new_rows_params(stored_events: Sequence[StoredEvent], shape: int | None) -> list[Any]:
    if shape is None:
        return [
            [s.originator_id for s in stored_events],
            [s.originator_version for s in stored_events],
            [s.topic for s in stored_events],
            [s.state for s in stored_events],
        ]
    return [
        value
        for s in stored_events
        for value in (s.originator_id, s.originator_version, s.topic, s.state)
    ]
