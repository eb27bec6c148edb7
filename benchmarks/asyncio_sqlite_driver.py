"""Which way to reach SQLite from asyncio: our facade (the sync recorder on one
writer thread and a few reader threads) or aiosqlite (a thread per connection)?

Both write the same one-event transactions (BEGIN IMMEDIATE, INSERT, COMMIT) into
the same table, from N concurrent tasks, and read an aggregate's events back.
Run: python benchmarks/asyncio_sqlite_driver.py  (needs aiosqlite)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

import aiosqlite

from eventsourcing.asyncio._factory import ThreadedFactory
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteFactory
from eventsourcing.utils import Environment

WRITES = 2000
READS = 2000


def events(n: int) -> list[StoredEvent]:
    return [StoredEvent(uuid4(), 1, "topic:A", b'{"x":1}' * 10) for _ in range(n)]


async def with_facade(path: str, tasks: int) -> tuple[float, float]:
    factory = ThreadedFactory(SQLiteFactory(Environment("bench", {"SQLITE_DBNAME": path})))
    recorder = factory.application_recorder()
    batch = events(WRITES)
    queue = iter(batch)

    async def write() -> None:
        for stored in queue:
            await recorder.insert_events([stored])

    started = time.perf_counter()
    await asyncio.gather(*(write() for _ in range(tasks)))
    writes = WRITES / (time.perf_counter() - started)
    ids = iter([s.originator_id for s in batch[:READS]])

    async def read() -> None:
        for originator_id in ids:
            await recorder.select_events(originator_id)

    started = time.perf_counter()
    await asyncio.gather(*(read() for _ in range(tasks)))
    reads = READS / (time.perf_counter() - started)
    await factory.close()
    return writes, reads


async def with_aiosqlite(path: str, tasks: int) -> tuple[float, float]:
    conns = [await aiosqlite.connect(path, isolation_level=None) for _ in range(min(tasks, 8))]
    await conns[0].execute("PRAGMA journal_mode=WAL")
    for conn in conns:
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("PRAGMA busy_timeout=5000")
    await conns[0].execute(
        "CREATE TABLE IF NOT EXISTS bench_events (notification_id INTEGER PRIMARY KEY "
        "AUTOINCREMENT, originator_id BLOB NOT NULL, originator_version INTEGER NOT NULL, "
        "topic TEXT NOT NULL, state BLOB NOT NULL, UNIQUE (originator_id, originator_version))"
    )
    free: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
    for conn in conns:
        free.put_nowait(conn)
    batch = events(WRITES)
    queue = iter(batch)

    async def write() -> None:
        for s in queue:
            conn = await free.get()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                await conn.execute(
                    "INSERT INTO bench_events (originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?)",
                    (s.originator_id.bytes, s.originator_version, s.topic, s.state),
                )
                await conn.execute("COMMIT")
            finally:
                free.put_nowait(conn)

    started = time.perf_counter()
    await asyncio.gather(*(write() for _ in range(tasks)))
    writes = WRITES / (time.perf_counter() - started)
    ids = iter([s.originator_id for s in batch[:READS]])

    async def read() -> None:
        for originator_id in ids:
            conn = await free.get()
            try:
                cursor = await conn.execute(
                    "SELECT originator_version, topic, state FROM bench_events "
                    "WHERE originator_id = ? ORDER BY originator_version",
                    (originator_id.bytes,),
                )
                await cursor.fetchall()
            finally:
                free.put_nowait(conn)

    started = time.perf_counter()
    await asyncio.gather(*(read() for _ in range(tasks)))
    reads = READS / (time.perf_counter() - started)
    for conn in conns:
        await conn.close()
    return writes, reads


async def main() -> None:
    print(f"{'tasks':>5} {'driver':>10} {'writes/s':>10} {'reads/s':>10}")
    for tasks in (1, 50):
        for name, bench in (("facade", with_facade), ("aiosqlite", with_aiosqlite)):
            runs = []
            for _ in range(2):
                with tempfile.TemporaryDirectory() as tmp:
                    runs.append(await bench(str(Path(tmp) / "bench.db"), tasks))
            writes = statistics.median(r[0] for r in runs)
            reads = statistics.median(r[1] for r in runs)
            print(f"{tasks:>5} {name:>10} {writes:>10.0f} {reads:>10.0f}", flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
