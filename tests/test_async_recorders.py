"""The recorder contract suite, run against the async recorders of every store
(through a sync face that runs each call on an event loop's thread)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from async_support import LoopThread, SyncFace
from recorder_contract import RecorderContract

from eventsourcing.asyncio._recorders import facade_of
from eventsourcing.popo import (
    POPOAggregateRecorder,
    POPOApplicationRecorder,
    POPOProcessRecorder,
)
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteDatastore,
    SQLiteProcessRecorder,
)


class AsyncContract(RecorderContract):
    loop: LoopThread

    @pytest.fixture(autouse=True)
    def _loop(self) -> Iterator[None]:
        self.loop = LoopThread()
        yield
        self.loop.stop()

    def face(self, recorder: Any) -> Any:
        return SyncFace(recorder, self.loop)


class TestAsyncInMemory(AsyncContract):
    def create_aggregate_recorder(self) -> Any:
        return self.face(facade_of(POPOAggregateRecorder()))

    def create_application_recorder(self) -> Any:
        return self.face(facade_of(POPOApplicationRecorder()))

    def create_process_recorder(self) -> Any:
        return self.face(facade_of(POPOProcessRecorder()))


class TestAsyncSQLite(AsyncContract):
    supports_concurrency = True

    @pytest.fixture(autouse=True)
    def _datastore(self, tmp_path: Path) -> Iterator[None]:
        self.datastore = SQLiteDatastore(str(tmp_path / "events.sqlite"))
        self.writer = ThreadPoolExecutor(1)
        self.readers = ThreadPoolExecutor(4)
        yield
        self.writer.shutdown()
        self.readers.shutdown()
        self.datastore.close()

    def _facade(self, recorder: Any) -> Any:
        recorder.create_table()
        return self.face(facade_of(recorder, self.readers, self.writer))

    def create_aggregate_recorder(self) -> Any:
        return self._facade(SQLiteAggregateRecorder(self.datastore, _table("agg")))

    def create_application_recorder(self) -> Any:
        return self._facade(SQLiteApplicationRecorder(self.datastore, _table("app")))

    def create_process_recorder(self) -> Any:
        suffix = uuid4().hex[:8]
        return self._facade(
            SQLiteProcessRecorder(self.datastore, f"proc_{suffix}", f"track_{suffix}")
        )


class TestAsyncPostgres(AsyncContract):
    supports_concurrency = True

    @pytest.fixture(autouse=True)
    def _datastore(self, _loop: None, postgres_test_database: dict[str, Any]) -> Iterator[None]:
        from conftest import postgres_datastore

        from eventsourcing.asyncio._postgres import AsyncPostgresDatastore

        self.datastore = AsyncPostgresDatastore(
            postgres_datastore(postgres_test_database, pool_size=3)
        )
        yield
        self.loop.run(self.datastore.close())

    def _created(self, recorder: Any) -> Any:
        self.loop.run(recorder.create_table())
        return self.face(recorder)

    def create_aggregate_recorder(self) -> Any:
        from eventsourcing.asyncio._postgres import AsyncPostgresAggregateRecorder

        return self._created(AsyncPostgresAggregateRecorder(self.datastore, _table("agg")))

    def create_application_recorder(self) -> Any:
        from eventsourcing.asyncio._postgres import AsyncPostgresApplicationRecorder

        return self._created(AsyncPostgresApplicationRecorder(self.datastore, _table("app")))

    def create_process_recorder(self) -> Any:
        from eventsourcing.asyncio._postgres import AsyncPostgresProcessRecorder

        suffix = uuid4().hex[:8]
        return self._created(
            AsyncPostgresProcessRecorder(self.datastore, f"proc_{suffix}", f"track_{suffix}")
        )


def _table(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:8]}"
