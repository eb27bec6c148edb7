"""A recorder extension of the sync API (a class that writes more in each insert's
transaction) serves the asyncio API too: named by APPLICATION_RECORDER_TOPIC, or
made by a factory subclass, it runs behind the facade and gets save()'s arguments."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

pytest.importorskip("psycopg")

from psycopg.sql import SQL, Composable, Identifier  # noqa: E402

from eventsourcing.asyncio import AsyncApplication  # noqa: E402
from eventsourcing.domain import Aggregate  # noqa: E402
from eventsourcing.persistence import StoredEvent  # noqa: E402
from eventsourcing.postgres import (  # noqa: E402
    PostgresApplicationRecorder,
    PostgresCursor,
    PostgresFactory,
)
from eventsourcing.utils import get_topic  # noqa: E402


class NotedRecorder(PostgresApplicationRecorder):
    """Keeps the ``note`` given to each save, in the save's transaction."""

    def construct_create_table_statements(self) -> list[Composable]:
        return [
            *super().construct_create_table_statements(),
            SQL("CREATE TABLE IF NOT EXISTS {} (note text)").format(self._notes()),
        ]

    def _notes(self) -> Identifier:
        return Identifier(self.events_table_name + "_notes")

    def _insert_events(
        self,
        cursor: PostgresCursor,
        stored_events: Sequence[StoredEvent],
        *,
        note: str = "",
        **kwargs: Any,
    ) -> Sequence[int] | None:
        cursor.execute(SQL("INSERT INTO {} VALUES (%s)").format(self._notes()), (note,))
        return super()._insert_events(cursor, stored_events, **kwargs)

    def notes(self) -> list[str]:
        with self.datastore.transaction() as cursor:
            cursor.execute(SQL("SELECT note FROM {}").format(self._notes()))
            return [row["note"] for row in cursor.fetchall()]


class NotedFactory(PostgresFactory):
    application_recorder_class = NotedRecorder


class Journal(AsyncApplication):
    pass


@pytest.mark.parametrize("how", ["setting", "factory"])
def test_an_extension_gets_the_arguments_of_save(postgres_env: dict[str, str], how: str) -> None:
    env = dict(postgres_env, POSTGRES_POOL_SIZE="2")
    if how == "setting":
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            APPLICATION_RECORDER_TOPIC=get_topic(NotedRecorder),
        )
    else:
        env["PERSISTENCE_MODULE"] = get_topic(NotedFactory)

    async def main() -> list[str]:
        async with Journal(env) as journal:
            page = Aggregate()
            recordings = await journal.save(page, note="first page")
            assert [r.notification.id for r in recordings] == [1]
            assert (await journal.repository.get(page.id)).id == page.id
            recorder = journal.recorder.sync_recorder()
            assert isinstance(recorder, NotedRecorder)
            return recorder.notes()

    assert asyncio.run(main()) == ["first page"]
