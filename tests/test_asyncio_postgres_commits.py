"""The async PostgreSQL recorders follow the sync ones' design: parallel commits with
rows stamped, readers that never skip, notices after commit, tables of earlier
versions migrated, transient failures retried and lost acknowledgements recognised,
and the datastore's settings (URL, application name). Needs a server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from conftest import postgres_datastore, skip_module_unless_postgres
from recorder_contract import event
from tcp_proxy import TCPProxy, tcp_proxy
from test_asyncio_application import School
from test_postgres_parallel_commits import (
    _draw_and_insert_without_committing,
    create_table_of_an_earlier_version,
)

from eventsourcing.asyncio._postgres import (
    AsyncPostgresApplicationRecorder,
    AsyncPostgresDatastore,
    AsyncPostgresProcessRecorder,
)
from eventsourcing.persistence import RecordConflictError, Tracking
from eventsourcing.postgres import PostgresDatastore

skip_module_unless_postgres()


def _settings(settings: dict[str, Any], **kwargs: Any) -> PostgresDatastore:
    kwargs.setdefault("pool_size", 3)
    host, port = kwargs.pop("host", settings["host"]), kwargs.pop("port", settings["port"])
    return postgres_datastore(dict(settings, host=host, port=port), **kwargs)


_opened: list[AsyncPostgresDatastore] = []


def _async_store(sync: PostgresDatastore) -> AsyncPostgresDatastore:
    """An async datastore that ``_run`` closes, with its settings, even if a test fails
    (an async pool left open makes the loop's shutdown wait on its tasks)."""
    datastore = AsyncPostgresDatastore(sync)
    _opened.append(datastore)
    return datastore


def _run(main: Callable[[], Awaitable[None]]) -> None:
    async def closing() -> None:
        try:
            await main()
        finally:
            while _opened:
                datastore = _opened.pop()
                await datastore.close()
                datastore.settings.close()

    asyncio.run(closing())


async def _recorder(sync: PostgresDatastore) -> AsyncPostgresApplicationRecorder:
    """A recorder of a new table, on an async datastore with ``sync``'s settings (``_run``
    closes both)."""
    recorder = AsyncPostgresApplicationRecorder(_async_store(sync), f"aparallel_{uuid4().hex[:10]}")
    await recorder.create_table()
    return recorder


def test_writes_commit_in_parallel_and_stamp_their_rows(
    postgres_test_database: dict[str, Any],
) -> None:
    """A write held up after drawing its id (its row waits on another transaction's
    uncommitted duplicate) does not hold up another write: the table's lock is let go
    once ids are drawn. (Holding it until commit, the second write would wait.)"""

    async def main() -> None:
        recorder = await _recorder(_settings(postgres_test_database))
        table = recorder.events_table_name
        originator = uuid4()
        with psycopg.connect(**postgres_test_database) as other:
            other.execute(
                f'INSERT INTO "{table}" (originator_id, originator_version, topic, state) '
                "VALUES (%s, 1, 'topic:other', '')",
                (originator,),
            )
            held = asyncio.ensure_future(recorder.insert_events([event(originator, 1)]))
            await asyncio.sleep(0.5)
            assert not held.done()  # waiting on the other transaction's row
            ids = await asyncio.wait_for(recorder.insert_events([event(uuid4(), 1)]), 20)
            assert len(ids or []) == 1
            other.rollback()
        held_ids = await asyncio.wait_for(held, 20)
        assert len(held_ids or []) == 1
        with psycopg.connect(**postgres_test_database) as conn:
            stamps = conn.execute(f'SELECT transaction_id IS NOT NULL FROM "{table}"').fetchall()
        assert stamps == [(True,), (True,)]

    _run(main)


@pytest.mark.parametrize("topics", [(), ("topic:A", "topic:late")], ids=["all", "topics"])
def test_a_row_after_a_writer_in_progress_waits_for_its_commit(
    postgres_test_database: dict[str, Any], topics: tuple[str, ...]
) -> None:
    async def main() -> None:
        recorder = await _recorder(_settings(postgres_test_database))
        await recorder.insert_events([event(uuid4(), 1)])
        with psycopg.connect(**postgres_test_database) as late:
            assert _draw_and_insert_without_committing(late, recorder.statements) == 2
            assert await recorder.insert_events([event(uuid4(), 1)]) == [3]
            page = await recorder.select_notifications(None, 10, topics=topics)
            assert [n.id for n in page] == [1]
            assert await recorder.select_notifications(2, 10, topics=topics) == []
            late.commit()
        page = await recorder.select_notifications(None, 10, topics=topics)
        assert [n.id for n in page] == [1, 2, 3]

    _run(main)


def test_reads_of_aggregates_asked_at_once_are_made_together(
    postgres_test_database: dict[str, Any],
) -> None:
    """Tasks that read aggregates' events at once are answered by a few statements
    (each reading many aggregates), each with its own events, in order, after the
    version it gave: the same originator twice, after different versions, included.
    A task cancelled while it waits for such a read leaves the others' answers whole."""

    async def main() -> None:
        sync = _settings(postgres_test_database)
        recorder = await _recorder(sync)
        originators = [uuid4() for _ in range(30)]
        for number, originator in enumerate(originators):
            await recorder.insert_events([event(originator, v) for v in range(1, number % 4 + 2)])
        statements = 0
        select_rows = recorder._select_rows

        async def counting(*args: Any, **kwargs: Any) -> list[Any]:
            nonlocal statements
            statements += 1
            return await select_rows(*args, **kwargs)

        recorder._select_rows = counting  # type: ignore[method-assign]
        reads = [(originator, None) for originator in originators]
        reads += [(originator, 1) for originator in originators[::3]]
        answers = await asyncio.gather(*(recorder.select_events(o, gt=gt) for o, gt in reads))
        for (originator, gt), answer in zip(reads, answers):
            number = originators.index(originator)
            versions = range(1 if gt is None else gt + 1, number % 4 + 2)
            assert answer == [event(originator, v) for v in versions]
        assert statements < len(reads) // 3  # (one each: 40)

        tasks = [asyncio.ensure_future(recorder.select_events(o, gt=gt)) for o, gt in reads]
        await asyncio.sleep(0)  # (all asked)
        for task in tasks[1::2]:
            task.cancel()
        for (originator, gt), task in zip(reads[::2], tasks[::2]):
            number = originators.index(originator)
            versions = range(1 if gt is None else gt + 1, number % 4 + 2)
            assert await task == [event(originator, v) for v in versions]
        for task in tasks[1::2]:
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await recorder.select_events(originators[5]) == [
            event(originators[5], v) for v in (1, 2)
        ]

    _run(main)


def test_writes_asked_at_once_are_made_together_and_a_conflict_refuses_only_its_own(
    postgres_test_database: dict[str, Any],
) -> None:
    """Saves that tasks make at once, beyond the few made one statement each, share a
    transaction; a save conflicting with another of the same transaction (or with one
    recorded) is refused alone, raising as by itself; each save's events get ids in
    order, all distinct, and the log has every one of them once."""

    async def main() -> None:
        sync = _settings(postgres_test_database)
        recorder = await _recorder(sync)
        datastore = recorder.datastore
        recorded = uuid4()
        await recorder.insert_events([event(recorded, 1)])
        transactions = 0
        run_pooled = datastore._run_pooled

        async def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal transactions
            transactions += 1
            return await run_pooled(*args, **kwargs)

        datastore._run_pooled = counting  # type: ignore[method-assign]
        twice = uuid4()
        writes = [[event(uuid4(), 1), event(uuid4(), 1)] for _ in range(40)]
        writes[20:20] = [[event(twice, 1)], [event(twice, 1)], [event(recorded, 1)]]
        results = await asyncio.gather(
            *(recorder.insert_events(w) for w in writes), return_exceptions=True
        )
        assert transactions < len(writes) // 2  # (one each without making them together)
        refused = [n for n, r in enumerate(results) if isinstance(r, RecordConflictError)]
        assert len(refused) == 2 and 22 in refused  # (the one already recorded)
        assert refused[0] in (20, 21)  # (one of the two saves of the same event)
        ids = [i for r in results if not isinstance(r, BaseException) for i in r or []]
        assert all(len(r or []) == len(w) for r, w in zip(results, writes) if r is not None
                   and not isinstance(r, BaseException))  # fmt: skip
        assert all(list(r) == sorted(r) for r in results if isinstance(r, list))
        assert len(set(ids)) == len(ids) == 81
        page = await recorder.select_notifications(None, 1000)
        assert sorted(n.id for n in page) == sorted([1, *ids])

    _run(main)


def test_writes_made_together_whose_commit_answer_is_lost_are_recorded_once(
    postgres_test_database: dict[str, Any],
) -> None:
    """If the transaction of several saves fails after its commit (its answer lost),
    each save finds its events recorded and returns their ids, without a conflict."""

    async def main() -> None:
        sync = _settings(postgres_test_database)
        recorder = await _recorder(sync)
        datastore = recorder.datastore
        run_pooled = datastore._run_pooled
        lost = []

        async def losing_answers(func: Any, transaction: bool) -> Any:
            result = await run_pooled(func, transaction)
            if transaction:  # (the transaction of several saves)
                lost.append(len(result))
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return result

        datastore._run_pooled = losing_answers  # type: ignore[method-assign]
        writes = [[event(uuid4(), 1)] for _ in range(20)]
        results = await asyncio.gather(*(recorder.insert_events(w) for w in writes))
        assert lost and sum(lost) > 1  # (some were made together, their answers lost)
        ids = [i for r in results for i in r or []]
        assert len(set(ids)) == 20
        page = await recorder.select_notifications(None, 100)
        assert sorted(n.id for n in page) == sorted(ids)

    _run(main)


def test_writes_made_together_by_tasks_cancelled_are_whole_or_absent(
    postgres_test_database: dict[str, Any],
) -> None:
    """Tasks cancelled while their saves wait to be made together, or are being made:
    each save is recorded whole or not at all, and the others are recorded."""

    async def main() -> None:
        sync = _settings(postgres_test_database)
        recorder = await _recorder(sync)
        writes = [[event(uuid4(), 1), event(uuid4(), 1), event(uuid4(), 1)] for _ in range(30)]
        tasks = [asyncio.ensure_future(recorder.insert_events(w)) for w in writes]
        await asyncio.sleep(0)
        for task in tasks[1::2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.2)  # (made together in a task of their own: it ends)
        page = await recorder.select_notifications(None, 1000)
        found = {(n.originator_id, n.originator_version) for n in page}
        for number, write in enumerate(writes):
            keys = {(e.originator_id, e.originator_version) for e in write}
            assert keys <= found or not keys & found
            if number % 2 == 0:
                assert keys <= found

    _run(main)


def test_listeners_are_notified_after_parallel_writes(
    postgres_test_database: dict[str, Any],
) -> None:
    async def main() -> None:
        recorder = await _recorder(_settings(postgres_test_database))
        waiter = await recorder.open_waiter()
        assert not await waiter.wait(0.1)
        await recorder.insert_events([event(uuid4(), 1)])
        assert await waiter.wait(20)
        await waiter.close()

    _run(main)


def test_a_table_made_by_an_earlier_version_is_written_then_migrated(
    postgres_test_database: dict[str, Any],
) -> None:
    async def main() -> None:
        datastore = _async_store(_settings(postgres_test_database))
        table = f"aearlier_{uuid4().hex[:10]}"
        create_table_of_an_earlier_version(postgres_test_database, table)
        recorder = AsyncPostgresApplicationRecorder(datastore, table)
        assert await recorder.insert_events([event(uuid4(), 1)]) == [1]
        assert [n.id for n in await recorder.select_notifications(None, 10)] == [1]
        await recorder.create_table()
        assert await recorder.insert_events([event(uuid4(), 1)]) == [2]
        assert [n.id for n in await recorder.select_notifications(None, 10)] == [1, 2]
        with psycopg.connect(**postgres_test_database) as conn:
            stamps = conn.execute(
                f'SELECT transaction_id IS NOT NULL FROM "{table}" ORDER BY 1'
            ).fetchall()
        assert stamps == [(False,), (True,)]

    _run(main)


# ---------------------------------------------------------------------------
# Outages and lost acknowledgements (through a TCP proxy, as the sync tests).


@pytest.fixture
def proxy(postgres_test_database: dict[str, Any]) -> Iterator[TCPProxy]:
    with tcp_proxy(str(postgres_test_database["host"]), int(postgres_test_database["port"])) as p:
        yield p


def _through(proxy: TCPProxy, settings: dict[str, Any], **kwargs: Any) -> PostgresDatastore:
    return _settings(
        settings, host="127.0.0.1", port=proxy.port, connect_timeout=2, pool_size=2, **kwargs
    )


def test_a_save_whose_answer_is_lost_after_commit_succeeds_once(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    async def main() -> None:
        recorder = await _recorder(_through(proxy, postgres_test_database))
        await recorder.insert_events([event(uuid4(), 1)])
        saved = [event(uuid4(), 1), event(uuid4(), 1)]
        proxy.cut_after(saved[1].state)
        ids = await recorder.insert_events(saved)
        assert proxy.cuts == 1  # the answer was lost, and the write retried
        assert list(ids or []) == [2, 3]
        assert await recorder.max_notification_id() == 3

    _run(main)


def test_a_tracked_write_whose_answer_is_lost_succeeds_once(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    async def main() -> None:
        datastore = _async_store(_through(proxy, postgres_test_database))
        suffix = uuid4().hex[:8]
        recorder = AsyncPostgresProcessRecorder(datastore, f"alost_{suffix}", f"alost_t_{suffix}")
        await recorder.create_table()
        tracked = event(uuid4(), 1)
        proxy.cut_after(tracked.state)
        ids = await recorder.insert_events([tracked], tracking=Tracking("Up", 5))
        assert proxy.cuts == 1
        assert list(ids or []) == [1]
        assert await recorder.max_tracking_id("Up") == 5

    _run(main)


def test_a_genuine_conflict_met_on_a_retry_still_raises(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    async def main() -> None:
        recorder = await _recorder(_through(proxy, postgres_test_database))
        originator = uuid4()
        with psycopg.connect(**postgres_test_database) as other:
            other.execute(
                f'INSERT INTO "{recorder.events_table_name}" (originator_id, '
                "originator_version, topic, state) VALUES (%s, 1, 'topic:A', 'other')",
                (originator,),
            )
        proxy.cut_after(b"INSERT INTO", forward=False)
        with pytest.raises(RecordConflictError, match="already recorded"):
            await recorder.insert_events([event(originator, 1)])
        assert proxy.cuts == 1

    _run(main)


def test_a_save_during_a_short_outage_succeeds_after_it(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    async def main() -> None:
        recorder = await _recorder(_through(proxy, postgres_test_database))
        await recorder.insert_events([event(uuid4(), 1)])
        proxy.drop_all()  # the pooled connection is broken under the datastore's feet
        proxy.refuse()
        saves = [
            asyncio.ensure_future(recorder.insert_events([event(uuid4(), 1)])) for _ in range(3)
        ]
        try:
            await asyncio.sleep(1.0)
            assert not any(save.done() for save in saves)  # waiting out the outage
        finally:  # (no task left with its error unretrieved, even if this fails)
            proxy.accept_again()
            results = await asyncio.wait_for(asyncio.gather(*saves, return_exceptions=True), 30)
        assert not any(isinstance(ids, BaseException) for ids in results), results
        assert sorted(ids[0] for ids in results if isinstance(ids, list)) == [2, 3, 4]

    _run(main)


def test_the_retry_timeout_is_the_sync_datastores(
    proxy: TCPProxy, postgres_test_database: dict[str, Any]
) -> None:
    from eventsourcing.persistence import OperationalError

    async def main() -> None:
        recorder = await _recorder(_through(proxy, postgres_test_database, retry_timeout=1.0))
        proxy.drop_all()
        proxy.refuse()
        with pytest.raises(OperationalError, match="retry timeout 1 s"):
            await recorder.insert_events([event(uuid4(), 1)])
        proxy.accept_again()
        assert await recorder.insert_events([event(uuid4(), 1)]) == [1]

    _run(main)


# ---------------------------------------------------------------------------
# Settings: the URL, the application name.


async def _application_names(datastore: AsyncPostgresDatastore, dbname: str) -> list[str]:
    """The application names of the connections to ``dbname``."""

    async def names(conn: Any) -> list[str]:
        cursor = await conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = %s", (dbname,)
        )
        return [str(row[0]) for row in await cursor.fetchall()]

    return await datastore.run(names, what="Reading pg_stat_activity")


def test_the_url_and_the_application_name_are_used(
    postgres_test_database: dict[str, Any],
) -> None:
    settings = postgres_test_database
    url = (
        f"postgresql://{settings['user']}:{settings['password']}@{settings['host']}:"
        f"{settings['port']}/{settings['dbname']}"
    )
    name = f"async-{uuid4().hex[:8]}"
    sync = PostgresDatastore("", "", None, "", "", conninfo=url, application_name=name)

    async def main() -> None:
        recorder = await _recorder(sync)
        waiter = await recorder.open_waiter()  # (a name of its own, over the datastore's)
        seen = await _application_names(recorder.datastore, str(settings["dbname"]))
        assert name in seen and "eventsourcing-async-listener" in seen
        assert await recorder.insert_events([event(uuid4(), 1)]) == [1]
        await waiter.close()

    _run(main)


def test_an_async_application_takes_the_url_name_and_retry_settings(
    postgres_env: dict[str, str],
) -> None:
    """POSTGRES_URL, POSTGRES_APPLICATION_NAME and POSTGRES_RETRY_TIMEOUT (read by the
    sync factory) are the async recorders' settings too."""
    env = postgres_env
    url = (
        f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@"
        f"{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}/{env['POSTGRES_DBNAME']}"
    )
    name = f"school-{uuid4().hex[:8]}"
    app_env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_URL": url,
        "POSTGRES_APPLICATION_NAME": name,
        "POSTGRES_RETRY_TIMEOUT": "2.5",
        "POSTGRES_POOL_SIZE": "2",
    }

    async def main() -> None:
        async with School(app_env) as school:
            dog_id = await school.register_dog("Fido")
            assert (await school.repository.get(dog_id)).name == "Fido"
            datastore = school.factory.datastore  # type: ignore[attr-defined]
            assert datastore.settings.retry_timeout == 2.5
            assert name in await _application_names(datastore, env["POSTGRES_DBNAME"])

    _run(main)


def test_a_sync_writer_that_closes_at_once_still_wakes_async_listeners(
    postgres_test_database: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notice of a write is sent after its commit by a thread; a datastore closed
    right after the write sends it first (the thread stops once it is closed, and on
    a loaded machine it may not have run yet: here it is made late)."""
    from eventsourcing._postgres_commits import Notifier
    from eventsourcing.postgres import PostgresApplicationRecorder

    run_notifier = Notifier._run

    def late(self: Notifier) -> None:
        time.sleep(0.5)
        run_notifier(self)

    monkeypatch.setattr(Notifier, "_run", late)

    async def main() -> None:
        for _ in range(2):
            recorder = await _recorder(_settings(postgres_test_database))
            waiter = await recorder.open_waiter()
            writer_store = _settings(postgres_test_database)
            writer = PostgresApplicationRecorder(writer_store, recorder.events_table_name)
            writer.insert_events([event(uuid4(), 1)])
            writer_store.close()  # at once, as a command that saves and exits
            assert await waiter.wait(10), "no notice of a write committed before close()"
            await waiter.close()

    _run(main)
