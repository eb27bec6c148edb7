"""The seed system's commands written with no library: the least a Python client does.

    python benchmarks/raw_seed.py --store sqlite|postgres [--threaded] [--n 300]

The same work as the seed system of scenarios.py (10 dogs, 10 tricks, n add_trick
commands, and a counter per trick kept exactly once by a follower), written straight
on sqlite3 / psycopg and json: each command reads its dog's events, decodes them, and
inserts the new one in a transaction of its own; the follower reads the new rows after
its position, decodes each, and records its counter's event with its position in one
transaction. Single-threaded (the default), the follower runs after each command in
the same thread, as under SingleThreadedRunner; with --threaded, in a thread of its own
woken after each command, as under MultiThreadedRunner, taking all that is new in one
transaction. Nothing else: no aggregates, no mapper, no pool, no notices. So its rate
beside the commit ceiling says what the commands leave to any Python client on this
disk. Prints one line ``BENCH-RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "
TRICKS = [f"trick {i}" for i in range(10)]
STAMP = "2026-12-02T00:00:00.000000+00:00"
EVENTS_SQL = (
    "CREATE TABLE {name} (id {serial} PRIMARY KEY, oid {blob} NOT NULL, "
    "v INTEGER NOT NULL, topic TEXT NOT NULL, state {blob} NOT NULL, UNIQUE (oid, v))"
)
TRACKING_SQL = "CREATE TABLE raw_seed_tracking (app TEXT PRIMARY KEY, nid BIGINT NOT NULL)"
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres", "password": ""}
DBNAME = "bench_concurrency"


class Store:
    """Two event tables (the school's, the counters') and a tracking table, with the
    statements the commands run: ``run(sql, params)`` for one statement in a transaction
    of its own, ``transaction(statements)`` for several in one."""

    run: Callable[[str, tuple[Any, ...]], list[Any]]
    transaction: Callable[[list[tuple[str, tuple[Any, ...]]]], None]
    close: Callable[[], None]


def sqlite_store(directory: str) -> Store:
    """The school's table in a file, the counters' and the tracking in another (as the
    seed system's applications each have a file), a connection per thread and file."""
    store = Store()
    paths = {name: os.path.join(directory, f"{name}.db") for name in ("school", "counters")}
    local = threading.local()
    opened: list[sqlite3.Connection] = []

    def conn(table: str) -> sqlite3.Connection:
        name = "school" if "school" in table else "counters"
        connections = local.__dict__.setdefault("connections", {})
        if name not in connections:
            connection = sqlite3.connect(paths[name], isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA synchronous=FULL")
            connections[name] = connection
            opened.append(connection)
        return connections[name]

    for table in ("raw_seed_school", "raw_seed_counters"):
        conn(table).execute("PRAGMA journal_mode=WAL")
        conn(table).execute(EVENTS_SQL.format(name=table, serial="INTEGER", blob="BLOB"))
    conn("raw_seed_counters").execute(TRACKING_SQL)

    def run(statement: str, params: tuple[Any, ...]) -> list[Any]:
        return conn(_table(statement)).execute(statement.replace("%s", "?"), params).fetchall()

    def transaction(statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        connection = conn(_table(statements[0][0]))
        connection.execute("BEGIN IMMEDIATE")
        for statement, params in statements:
            connection.execute(statement.replace("%s", "?"), params)
        connection.execute("COMMIT")

    def close() -> None:
        for connection in opened:
            connection.close()

    store.run, store.transaction, store.close = run, transaction, close
    return store


def _table(statement: str) -> str:
    return "raw_seed_school" if "raw_seed_school" in statement else "raw_seed_counters"


def postgres_store() -> Store:
    import psycopg

    store = Store()
    setup = psycopg.connect(dbname=DBNAME, autocommit=True, **PG)
    for name in ("raw_seed_school", "raw_seed_counters", "raw_seed_tracking"):
        setup.execute(f"DROP TABLE IF EXISTS {name}")
    for name in ("raw_seed_school", "raw_seed_counters"):
        setup.execute(EVENTS_SQL.format(name=name, serial="bigserial", blob="bytea"))
    setup.execute(TRACKING_SQL)
    setup.close()
    local = threading.local()  # a connection per thread, as a pool would lend

    def conn() -> Any:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(dbname=DBNAME, autocommit=True, **PG)
        return local.conn

    def run(statement: str, params: tuple[Any, ...]) -> list[Any]:
        cursor = conn().execute(statement, params, prepare=True)
        return cursor.fetchall() if cursor.description else []

    def transaction(statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        with conn().transaction():
            for statement, params in statements:
                conn().execute(statement, params, prepare=True)

    store.run, store.transaction, store.close = run, transaction, lambda: None
    return store


class Seed:
    """The seed system's commands and its follower, on ``store``."""

    def __init__(self, store: Store):
        self.store = store
        self.position = 0
        self.counts: dict[uuid.UUID, int] = {}
        self.dogs = [self.register(f"dog {i}") for i in range(10)]

    def register(self, name: str) -> uuid.UUID:
        dog = uuid.uuid4()
        state = json.dumps({"name": name, "timestamp": STAMP}).encode()
        self.store.run(
            "INSERT INTO raw_seed_school (oid, v, topic, state) "
            "VALUES (%s, 1, 'dogs:Dog.Registered', %s)",
            (dog.bytes, state),
        )
        return dog

    def add_trick(self, dog: uuid.UUID, trick: str) -> None:
        rows = self.store.run(
            "SELECT v, topic, state FROM raw_seed_school WHERE oid = %s ORDER BY v", (dog.bytes,)
        )
        tricks = [json.loads(state)["trick"] for _, topic, state in rows if "Trick" in topic]
        tricks.append(trick)
        version = rows[-1][0] if rows else 0
        state = json.dumps({"trick": trick, "timestamp": STAMP}).encode()
        self.store.run(
            "INSERT INTO raw_seed_school (oid, v, topic, state) "
            "VALUES (%s, %s, 'dogs:Dog.TrickAdded', %s)",
            (dog.bytes, version + 1, state),
        )

    def follow(self) -> int:
        """Process what is new (up to 100 events) in one transaction; the number of
        events read."""
        rows = self.store.run(
            "SELECT id, state FROM raw_seed_school WHERE id > %s ORDER BY id LIMIT 100",
            (self.position,),
        )
        statements = []
        for nid, state in rows:
            data = json.loads(state)
            if "trick" not in data:
                self.position = nid
                continue
            counter = uuid.uuid5(uuid.NAMESPACE_URL, f"/counters/{data['trick']}")
            count = self.counts[counter] = self.counts.get(counter, 0) + 1
            statements.append(
                (
                    "INSERT INTO raw_seed_counters (oid, v, topic, state) "
                    "VALUES (%s, %s, 'counters:Counter.Incremented', %s)",
                    (counter.bytes, count, json.dumps({"timestamp": STAMP}).encode()),
                )
            )
            self.position = nid
        if rows:
            statements.append(
                (
                    "INSERT INTO raw_seed_tracking (app, nid) VALUES ('school', %s) "
                    "ON CONFLICT (app) DO UPDATE SET nid = excluded.nid",
                    (self.position,),
                )
            )
            self.store.transaction(statements)
        return len(rows)


def measure(store: Store, n: int, threaded: bool) -> dict[str, float]:
    seed = Seed(store)
    commands = [(seed.dogs[i % 10], TRICKS[(i // 10) % 10]) for i in range(n)]
    for dog, trick in zip(seed.dogs, TRICKS):  # (warm-up, as scenarios.py does)
        seed.add_trick(dog, trick)
        seed.follow()
    if not threaded:
        started, cpu = time.perf_counter(), time.thread_time()
        for dog, trick in commands:
            seed.add_trick(dog, trick)
            seed.follow()
        elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu
        _assert_counted(seed, n)
        return {"commands/s": n / elapsed, "command thread CPU ms per command": cpu / n * 1e3}
    wake, done = threading.Event(), threading.Event()
    target = len(seed.dogs) + len(TRICKS) + n  # every row of the school's table

    def follower() -> None:
        while seed.position < target:
            wake.wait(1.0)
            wake.clear()
            while seed.follow():
                pass
        done.set()

    thread = threading.Thread(target=follower)
    thread.start()
    started, cpu = time.perf_counter(), time.thread_time()
    for dog, trick in commands:
        seed.add_trick(dog, trick)
        wake.set()
    cpu = time.thread_time() - cpu
    done.wait(60)
    elapsed = time.perf_counter() - started
    thread.join()
    _assert_counted(seed, n)
    return {"commands/s": n / elapsed, "command thread CPU ms per command": cpu / n * 1e3}


def _assert_counted(seed: Seed, n: int) -> None:
    """Every trick was counted once: in memory and as recorded."""
    recorded = seed.store.run("SELECT COUNT(*) FROM raw_seed_counters", ())[0][0]
    assert sum(seed.counts.values()) == recorded == n + len(TRICKS), (seed.counts, recorded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--threaded", action="store_true")
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="raw-seed-")
    try:
        store = sqlite_store(directory) if args.store == "sqlite" else postgres_store()
        try:
            metrics = measure(store, args.n, args.threaded)
        finally:
            store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(RESULT_PREFIX + json.dumps({"store": args.store, "metrics": metrics}), flush=True)


if __name__ == "__main__":
    main()
