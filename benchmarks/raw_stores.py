"""The raw limit of each store, without any event-sourcing library.

Inserts event-sized rows (~200 bytes) into a table shaped like an events table,
one transaction per row and then in transactions of 1,000 rows. One transaction
per row is measured two ways, row by row in turn: an explicit transaction
(BEGIN, INSERT, COMMIT: three round trips with psycopg) and a lone INSERT in
autocommit mode (its own transaction: one round trip); the limit is the quicker.
Prints one line ``BENCH-RESULT {json}``.

    python benchmarks/raw_stores.py --store sqlite --n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "
BATCH = 1000


def rows(n: int) -> list[tuple[bytes, int, str, bytes]]:
    topic = "benchmarks.scenarios:Item.Updated"
    state = b'{"value":"' + b"x" * 120 + b'","timestamp":"2024-01-01T00:00:00+00:00"}'
    out = []
    for _ in range(n):
        out.append((uuid.uuid4().bytes, 1, topic, state))
    return out


def one_row_transactions(
    rows: list[Any], explicit: Callable[[Any], None], autocommit: Callable[[Any], None]
) -> dict[str, float]:
    """Rows/s of each way of committing one row per transaction, taking turns row by
    row (the disk's commit latency drifts); the limit is the quicker way."""
    spent = [0.0, 0.0]
    cpu = [0.0, 0.0]  # the client's own (this thread's user and system) CPU
    ways = (explicit, autocommit)
    for i, row in enumerate(rows):
        started, cpu_started = time.perf_counter(), time.thread_time()
        ways[i % 2](row)
        spent[i % 2] += time.perf_counter() - started
        cpu[i % 2] += time.thread_time() - cpu_started
    done = [len(rows[0::2]), len(rows[1::2])]
    rates = [count / seconds if count else 0.0 for count, seconds in zip(done, spent)]
    quicker = rates.index(max(rates))
    return {
        "rows/s, 1 row per transaction": max(rates),
        "client CPU s per row, 1 row per transaction": cpu[quicker] / max(done[quicker], 1),
        "rows/s, 1 row per transaction, BEGIN/INSERT/COMMIT": rates[0],
        "rows/s, 1 row per transaction, autocommit INSERT": rates[1],
    }


def bench_sqlite(n: int) -> dict[str, Any]:
    import sqlite3

    tmpdir = tempfile.mkdtemp(prefix="bench-raw-sqlite-")
    try:
        conn = sqlite3.connect(os.path.join(tmpdir, "raw.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE events (originator_id BLOB, originator_version INTEGER, "
            "topic TEXT, state BLOB, notification_id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "UNIQUE (originator_id, originator_version))"
        )
        sql = (
            "INSERT INTO events (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)"
        )

        def explicit(row: tuple[Any, ...]) -> None:
            conn.execute("BEGIN")
            conn.execute(sql, row)
            conn.execute("COMMIT")

        def autocommit(row: tuple[Any, ...]) -> None:
            conn.execute(sql, row)

        rates = one_row_transactions(rows(n), explicit, autocommit)
        batched_rows = rows(BATCH * 10)
        started = time.perf_counter()
        for i in range(0, len(batched_rows), BATCH):
            conn.execute("BEGIN")
            conn.executemany(sql, batched_rows[i : i + BATCH])
            conn.execute("COMMIT")
        batched = len(batched_rows) / (time.perf_counter() - started)
        conn.close()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return {
        **rates,
        f"rows/s, {BATCH} rows per transaction": batched,
        "rows (1 per tx)": n,
        "settings": "journal_mode=WAL, synchronous=FULL",
    }


def bench_postgres(n: int) -> dict[str, Any]:
    import psycopg

    admin = dict(host="127.0.0.1", port=5432, user="postgres", password="postgres")
    dbname = f"bench_raw_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        with psycopg.connect(dbname=dbname, autocommit=True, **admin) as conn:
            conn.execute(
                "CREATE TABLE events (originator_id uuid, originator_version bigint, "
                "topic text, state bytea, notification_id bigserial UNIQUE, "
                "PRIMARY KEY (originator_id, originator_version))"
            )
            setting = conn.execute("SHOW synchronous_commit").fetchone()[0]
            sql = (
                "INSERT INTO events (originator_id, originator_version, topic, state) "
                "VALUES (%s, %s, %s, %s)"
            )

            def as_uuid(batch: list[tuple[bytes, int, str, bytes]]) -> list[tuple[Any, ...]]:
                return [(uuid.UUID(bytes=r[0]), r[1], r[2], r[3]) for r in batch]

            cursor = conn.cursor()

            def explicit(row: tuple[Any, ...]) -> None:
                with conn.transaction():
                    cursor.execute(sql, row)

            def autocommit(row: tuple[Any, ...]) -> None:
                cursor.execute(sql, row)

            rates = one_row_transactions(as_uuid(rows(n)), explicit, autocommit)
            batched_rows = as_uuid(rows(BATCH * 10))
            started = time.perf_counter()
            with conn.cursor() as cur:
                for i in range(0, len(batched_rows), BATCH):
                    with conn.transaction():
                        cur.executemany(sql, batched_rows[i : i + BATCH])
            batched = len(batched_rows) / (time.perf_counter() - started)
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return {
        **rates,
        f"rows/s, {BATCH} rows per transaction": batched,
        "rows (1 per tx)": n,
        "settings": f"synchronous_commit={setting}, psycopg {psycopg.__version__}",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True, choices=["sqlite", "postgres"])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    result: dict[str, Any] = {"store": args.store, "n": args.n}
    try:
        result["metrics"] = (bench_sqlite if args.store == "sqlite" else bench_postgres)(args.n)
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"
        result["traceback"] = traceback.format_exc()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
