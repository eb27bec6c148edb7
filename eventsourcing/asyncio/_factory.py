"""The async infrastructure factory: the sync factory's settings, async recorders.

``PERSISTENCE_MODULE`` and every other setting are read by the sync factory the
environment names, so the async API opens the same tables with the same
settings. Transcoder, mapper, cipher and compressor are the sync factory's own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from eventsourcing.asyncio._recorders import (
    AsyncAggregateRecorder,
    AsyncApplicationRecorder,
    AsyncProcessRecorder,
    facade_of,
)
from eventsourcing.persistence import (
    APPLICATION_RECORDER_TOPIC,
    CREATE_TABLE,
    PROCESS_RECORDER_TOPIC,
    AggregateRecorder,
    DatabaseFactory,
    InfrastructureFactory,
    Mapper,
    Transcoder,
)
from eventsourcing.popo import POPOFactory
from eventsourcing.utils import Environment, strtobool


class AsyncFactory:
    """Builds one application's async recorders, from its environment.

    In memory, the sync recorders are called in the event loop (they do no I/O);
    on SQLite (and any other sync store), writes run on one writer thread and
    reads on a few reader threads; PostgreSQL has async recorders of its own.
    """

    def __init__(self, sync_factory: InfrastructureFactory):
        self.sync = sync_factory
        self.env: Environment = sync_factory.env
        self.follower_batch_delay = sync_factory.follower_batch_delay

    @classmethod
    def construct(cls, env: Environment) -> AsyncFactory:
        sync = InfrastructureFactory.construct(env)
        try:
            from eventsourcing.postgres import PostgresFactory
        except ImportError:  # pragma: no cover (psycopg not installed)
            pass
        else:
            if isinstance(sync, PostgresFactory):
                from eventsourcing.asyncio._postgres import AsyncPostgresDatastore

                return AsyncPostgresFactory(sync, AsyncPostgresDatastore(sync.datastore))
        if isinstance(sync, POPOFactory):
            return cls(sync)
        return ThreadedFactory(sync)

    def transcoder(self) -> Transcoder:
        return self.sync.transcoder()

    def mapper(self, transcoder: Transcoder | None = None) -> Mapper:
        return self.sync.mapper(transcoder=transcoder)

    def is_snapshotting_enabled(self) -> bool:
        return self.sync.is_snapshotting_enabled()

    def _facade(self, recorder: AggregateRecorder) -> AsyncAggregateRecorder:
        return facade_of(recorder, news_key=("popo", str(id(recorder))))

    def aggregate_recorder(self, purpose: str = "events") -> AsyncAggregateRecorder:
        return self._facade(self.sync.aggregate_recorder(purpose))

    def application_recorder(self) -> AsyncApplicationRecorder:
        return cast(AsyncApplicationRecorder, self._facade(self.sync.application_recorder()))

    def process_recorder(self) -> AsyncProcessRecorder:
        return cast(AsyncProcessRecorder, self._facade(self.sync.process_recorder()))

    async def close(self) -> None:
        self.sync.close()


class ThreadedFactory(AsyncFactory):
    """A sync store behind an async facade: a few writer threads, a few reader threads.

    An SQLite file commits the writes of many threads together (group commit: one
    transaction, one flush, see ``eventsourcing._sqlite_group``), so writes that
    tasks make at once go to several writer threads, to be committed as a group.
    Any other store (an in-memory database: one connection, shared under a lock)
    gets one thread for all its work.
    """

    reader_threads = 4
    writer_threads = 8

    def __init__(self, sync_factory: InfrastructureFactory):
        super().__init__(sync_factory)
        name = sync_factory.env.name or "app"
        datastore: Any = getattr(sync_factory, "datastore", None)
        grouped = getattr(datastore, "_group", None) is not None
        self.writer = ThreadPoolExecutor(
            self.writer_threads if grouped else 1, thread_name_prefix=f"{name}-writer"
        )
        self.readers = ThreadPoolExecutor(self.reader_threads, thread_name_prefix=f"{name}-reader")
        if datastore is None or getattr(datastore, "is_memory", False):
            self.readers = self.writer
        self.store_name = str(getattr(datastore, "db_name", id(sync_factory)))

    def _facade(self, recorder: AggregateRecorder) -> AsyncAggregateRecorder:
        table = str(getattr(recorder, "events_table_name", id(recorder)))
        return facade_of(
            recorder,
            executor=self.readers,
            write_executor=self.writer,
            news_key=("threaded", self.store_name, table),
        )

    async def close(self) -> None:
        self.writer.shutdown(wait=True)
        self.readers.shutdown(wait=True)
        self.sync.close()


class AsyncPostgresFactory(AsyncFactory):
    """PostgreSQL recorders on async connections, of the tables the sync factory names.

    A recorder class named by ``APPLICATION_RECORDER_TOPIC`` or
    ``PROCESS_RECORDER_TOPIC``, or made by a factory subclass (an extension that
    writes more in each insert's transaction), is the sync API's: it is run behind
    the facade, on worker threads.
    """

    sync: DatabaseFactory

    def __init__(self, sync_factory: DatabaseFactory, datastore: Any):
        super().__init__(sync_factory)
        self.datastore = datastore
        self._threaded: ThreadedFactory | None = None

    def _extension(self, setting: str, stock: type[Any], made: type[Any]) -> ThreadedFactory | None:
        """The threaded facade's factory, if ``setting`` names a recorder class, or the
        sync factory makes another class than ``stock`` (``made``)."""
        if not self.env.get(setting) and made is stock:
            return None
        if self._threaded is None:
            self._threaded = ThreadedFactory(self.sync)
        return self._threaded

    def _created(self, recorder: Any) -> Any:
        # Tables are made at the first use (a constructor cannot await).
        recorder.tables_pending = strtobool(self.env.get(CREATE_TABLE) or "yes")
        return recorder

    def aggregate_recorder(self, purpose: str = "events") -> AsyncAggregateRecorder:
        from eventsourcing.asyncio._postgres import AsyncPostgresAggregateRecorder

        table = self.sync.table_names["snapshots" if purpose == "snapshots" else "events"]
        return cast(
            AsyncAggregateRecorder,
            self._created(AsyncPostgresAggregateRecorder(self.datastore, table)),
        )

    def application_recorder(self) -> AsyncApplicationRecorder:
        from eventsourcing.asyncio._postgres import AsyncPostgresApplicationRecorder
        from eventsourcing.postgres import PostgresApplicationRecorder

        extension = self._extension(
            APPLICATION_RECORDER_TOPIC,
            PostgresApplicationRecorder,
            self.sync.application_recorder_class,
        )
        if extension is not None:
            return extension.application_recorder()

        table = self.sync.table_names["events"]
        return cast(
            AsyncApplicationRecorder,
            self._created(AsyncPostgresApplicationRecorder(self.datastore, table)),
        )

    def process_recorder(self) -> AsyncProcessRecorder:
        from eventsourcing.asyncio._postgres import AsyncPostgresProcessRecorder
        from eventsourcing.postgres import PostgresProcessRecorder

        extension = self._extension(
            PROCESS_RECORDER_TOPIC, PostgresProcessRecorder, self.sync.process_recorder_class
        )
        if extension is not None:
            return extension.process_recorder()

        names = self.sync.table_names
        return cast(
            AsyncProcessRecorder,
            self._created(
                AsyncPostgresProcessRecorder(self.datastore, names["events"], names["tracking"])
            ),
        )

    async def close(self) -> None:
        await self.datastore.close()
        if self._threaded is not None:
            await self._threaded.close()  # (closes the sync factory too)
        else:
            self.sync.close()
