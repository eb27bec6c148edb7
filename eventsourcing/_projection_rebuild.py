"""Rebuilding a projection's view without downtime (PostgreSQL), and resetting it.

A view to be rebuilt lives in a schema of its own (``<NAME>_POSTGRES_SCHEMA``),
and names its tables through ``self.datastore.schema`` (as views do). The rebuild
builds a new view, with the same class, in the schema ``<schema>__next``, from the
start of the application's log, never past the live view's position, while the
live view keeps serving and its runner keeps it up to date. Once the new view has
caught up, one transaction, holding the live tracking table against writes (reads
go on), brings the new view to the live position, renames the schemas (the new
one takes the live name) and drops the old one: readers see the old view, then
the new one, never a view half built.

A runner of the old view that was idle at the switch goes on with the new one (by
name) from the same position; one whose command was waiting on the switch fails
(its transaction is rolled back) and, restarted, resumes from the new view.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from eventsourcing._projection_cli import ProjectionSpec, ProjectionSpecError
from eventsourcing.dcb.api import DCBQuery, DCBQueryItem
from eventsourcing.dcb.application import DCBApplication
from eventsourcing.persistence import InfrastructureFactory, new_tracking
from eventsourcing.postgres import PostgresFactory, PostgresTrackingRecorder
from eventsourcing.projection import topic_names
from eventsourcing.utils import Environment

logger = logging.getLogger("eventsourcing")

NEXT_SUFFIX = "__next"
# How close (in notifications) the new view gets without the lock before the switch.
SWITCH_LAG = 100
# Rounds in a row in which the new view did not gain on the live one, after which
# the rebuild switches anyway (the rest is processed while the lock is held).
STALLED_ROUNDS = 3


def _settings(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update(env or {})
    return merged


def _view_factory(spec: ProjectionSpec, settings: Mapping[str, str]) -> PostgresFactory:
    factory = InfrastructureFactory.construct(Environment(spec.name, settings))
    if not isinstance(factory, PostgresFactory):
        factory.close()
        raise ProjectionSpecError(
            f"projection {spec.name!r}: rebuilding without downtime needs its view on "
            "PostgreSQL (in a schema of its own)"
        )
    schema = factory.datastore.schema
    if not factory.datastore.schema_given or schema == "public":
        factory.close()
        raise ProjectionSpecError(
            f"projection {spec.name!r}: its view needs a schema of its own to be rebuilt: "
            f"set {spec.name.upper()}_POSTGRES_SCHEMA"
        )
    return factory


class _Builder:
    """Processes the application's events into the new view, up to a given position."""

    def __init__(self, spec: ProjectionSpec, app: Any, view: Any):
        self.app = app
        self.projection = spec.projection_class(view=view)
        self.topics = topic_names(self.projection.topics)
        self.position = 0  # the last notification read

    def catch_up(self, limit: int) -> None:
        """Process every event up to ``limit`` (and none after it)."""
        if isinstance(self.app, DCBApplication):
            self._catch_up_decisions(limit)
            return
        recorder, mapper, name = self.app.recorder, self.app.mapper, self.app.name
        while self.position < limit:
            notifications = recorder.select_notifications(
                start=self.position,
                limit=500,
                stop=limit,
                topics=self.topics,
                inclusive_of_start=False,
            )
            if not notifications:
                self.position = limit  # (the rest are of other topics)
                return
            for notification in notifications:
                tracking = new_tracking(name, notification.id, None)
                self.projection.process_event(mapper.to_domain_event(notification), tracking)
            self.position = notifications[-1].id

    def _catch_up_decisions(self, limit: int) -> None:
        """``catch_up`` for a DCB application: its decisions up to position ``limit``."""
        recorder, mapper, name = self.app.recorder, self.app.mapper, self.app.name
        query = DCBQuery(items=[DCBQueryItem(types=list(self.topics))] if self.topics else [])
        while self.position < limit:
            read = recorder.read(query, after=self.position, limit=500)
            events = [e for e in read if e.position <= limit]
            if not events:
                self.position = limit  # (the rest are of other topics, or after it)
                return
            for sequenced in events:
                tracking = new_tracking(name, sequenced.position, None)
                self.projection.process_event(mapper.to_domain_event(sequenced.event), tracking)
            self.position = events[-1].position


def rebuild_projection(
    spec: ProjectionSpec,
    env: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Rebuild the view of ``spec`` (see the module docstring); return its position."""
    if spec.view_class is None:
        raise ProjectionSpecError(f"{spec.name!r} is event-sourced: it has no view to rebuild")
    settings = _settings(env)
    live_factory = _view_factory(spec, settings)
    schema = live_factory.datastore.schema
    next_schema = schema + NEXT_SUFFIX
    next_settings = dict(settings, **{f"{spec.name.upper()}_POSTGRES_SCHEMA": next_schema})
    app = spec.application_class(env)
    try:
        _drop_schema(live_factory, next_schema)  # (what an interrupted rebuild left)
        live_view = live_factory.tracking_recorder(spec.view_class)
        next_factory = _view_factory(spec, next_settings)
        try:
            builder = _Builder(spec, app, next_factory.tracking_recorder(spec.view_class))
            _approach(builder, lambda: live_view.max_tracking_id(app.name) or 0, progress)
            return _switch(live_factory, live_view, builder, schema, next_schema)
        finally:
            next_factory.close()
    finally:
        app.close()
        live_factory.close()


def _approach(
    builder: _Builder,
    live_position: Callable[[], int],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Bring the new view close to the live one, without the lock.

    Writes may come faster than the new view is built (it processes one event per
    transaction, the live runner a batch): if it has not gained on the live view
    for ``STALLED_ROUNDS`` rounds, it stops chasing and the switch processes the
    rest while the live view waits, so that a rebuild always ends.
    """
    gaps: list[int] = []
    while True:
        live = live_position()
        gap = live - builder.position
        if gap <= SWITCH_LAG:
            return
        gaps.append(gap)
        recent = gaps[-STALLED_ROUNDS - 1 :]
        if len(recent) > STALLED_ROUNDS and min(recent[1:]) >= recent[0]:
            logger.warning(
                "the rebuilt view of %s is not gaining on the live one (%d behind): "
                "switching now, the live view waits while the rest is processed",
                builder.app.name,
                gap,
            )
            return
        builder.catch_up(min(live, builder.position + 10 * SWITCH_LAG))
        if progress is not None:
            progress(builder.position, live)


def _switch(
    factory: PostgresFactory,
    live_view: PostgresTrackingRecorder,
    builder: _Builder,
    schema: str,
    next_schema: str,
) -> int:
    """Bring the new view to the live position and put it in the live one's place."""
    old_schema = schema + "__old"
    tracking_table = factory.datastore.table(live_view.tracking_table_name)
    # (Nothing of the live view changes from here until the switch is committed.)
    with factory.datastore.transaction(commit=True) as curs:
        _lock_tables_of(curs, schema)
        curs.execute(
            sql.SQL("SELECT notification_id FROM {} WHERE application_name = %s").format(
                tracking_table
            ),
            (builder.app.name,),
        )
        row = curs.fetchone()
        position = 0 if row is None else int(row["notification_id"])
        builder.catch_up(position)
        for statement in (
            "ALTER SCHEMA {live} RENAME TO {old}",
            "ALTER SCHEMA {next} RENAME TO {live}",
            "DROP SCHEMA {old} CASCADE",
        ):
            curs.execute(
                sql.SQL(statement).format(
                    live=sql.Identifier(schema),
                    old=sql.Identifier(old_schema),
                    next=sql.Identifier(next_schema),
                )
            )
    logger.info("switched the view of %s to the rebuilt one at %d", builder.app.name, position)
    return position


def _lock_tables_of(curs: Any, schema: str) -> None:
    """Hold every table of ``schema`` against writes (EXCLUSIVE: readers go on).

    All at once or none (NOWAIT, retried): a writer of the view that holds one of
    them and waits for another must not deadlock with us, whatever its order.
    """
    curs.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    tables = [sql.Identifier(schema, row["tablename"]) for row in curs.fetchall()]
    statement = sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE NOWAIT").format(sql.SQL(", ").join(tables))
    while True:
        curs.execute("SAVEPOINT lock_view")
        try:
            curs.execute(statement)
        except psycopg.errors.LockNotAvailable:
            curs.execute("ROLLBACK TO SAVEPOINT lock_view")
            time.sleep(0.005)
            continue
        curs.execute("RELEASE SAVEPOINT lock_view")
        return


def _drop_schema(factory: PostgresFactory, schema: str) -> None:
    with factory.datastore.transaction(commit=True) as curs:
        curs.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def reset_projection(
    spec: ProjectionSpec,
    env: Mapping[str, str] | None = None,
    confirm: Callable[[str], bool] | None = None,
) -> bool:
    """Destroy the view (its schema on PostgreSQL, its own database file on SQLite), so
    that its runner rebuilds it from the start; ``confirm`` is asked first (on a
    terminal, the operator is asked when it is not given). Returns whether it was done."""
    settings = _settings(env)
    factory = InfrastructureFactory.construct(Environment(spec.name, settings))
    try:
        target, destroy = _destroyer(spec, factory, settings)
    finally:
        factory.close()
    if confirm is None:
        confirm = _ask_on_terminal
    if not confirm(f"Destroy the view of {spec.name!r} ({target})?"):
        return False
    destroy()
    return True


def _destroyer(
    spec: ProjectionSpec, factory: InfrastructureFactory, settings: Mapping[str, str]
) -> tuple[str, Callable[[], None]]:
    if isinstance(factory, PostgresFactory):
        schema = factory.datastore.schema
        if not factory.datastore.schema_given or schema == "public":
            raise ProjectionSpecError(
                f"the view of {spec.name!r} is not in a schema of its own: not destroying "
                f"it (set {spec.name.upper()}_POSTGRES_SCHEMA)"
            )
        view_settings = dict(settings)

        def drop() -> None:
            fresh = _view_factory(spec, view_settings)
            try:
                _drop_schema(fresh, schema)
            finally:
                fresh.close()

        return f"schema {schema!r}", drop
    db_name = Environment(spec.name, settings).get("SQLITE_DBNAME")
    app_db = Environment(spec.application_class.name, settings).get("SQLITE_DBNAME")
    if not db_name or db_name == app_db or db_name.startswith("file:") or db_name == ":memory:":
        raise ProjectionSpecError(
            f"the view of {spec.name!r} is not in a database file of its own: not destroying "
            f"it (set {spec.name.upper()}_SQLITE_DBNAME)"
        )

    def remove() -> None:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db_name + suffix):
                os.remove(db_name + suffix)

    return f"file {db_name!r}", remove


def _ask_on_terminal(question: str) -> bool:
    if not sys.stdin.isatty():
        raise ProjectionSpecError(f"{question} Not on a terminal: confirm with --yes")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
