"""Benchmark how quickly PostgreSQL outages are ridden out (ours only).

    python benchmarks/outage.py                      # writes benchmarks/RESULTS-outage.md
    python benchmarks/outage.py --quick --output /tmp/o.md

An outage is simulated by a TCP proxy (tests/tcp_proxy.py) between our datastore and
the server: it drops every connection and refuses new ones for D seconds (as a
server restart does), then accepts them again. Meanwhile, on a database of its own:

- a saver, through the proxy, saves one event every 10 ms (a save made during the
  outage waits, retrying); we time from the outage's end to the first save that
  completes after it;
- a listener, through the proxy, LISTENs on the events table's channel, while a
  writer connected directly (not through the proxy) saves one event every 25 ms;
  we time from the outage's end until saves wake the listener within 50 ms again
  (five in a row: millisecond wake-ups), and give the median wake-up delay after that.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import psycopg  # noqa: E402
from tcp_proxy import TCPProxy, tcp_proxy  # noqa: E402

from eventsourcing.persistence import StoredEvent  # noqa: E402
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore  # noqa: E402

ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""}
FAST_WAKE = 0.05  # a wake-up within this many seconds counts as "milliseconds"


@contextmanager
def fresh_database() -> Iterator[str]:
    name = f"es_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **ADMIN) as admin:  # type: ignore[arg-type]
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **ADMIN) as admin:  # type: ignore[arg-type]
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def datastore(dbname: str, port: int) -> PostgresDatastore:
    return PostgresDatastore(
        dbname, "127.0.0.1", port, "postgres", "", pool_size=2, connect_timeout=2
    )


def new_event() -> StoredEvent:
    return StoredEvent(uuid.uuid4(), 1, "bench:Event", b"{}")


def run_once(outage: float) -> dict[str, float]:
    with fresh_database() as dbname, tcp_proxy("127.0.0.1", 5432) as proxy:
        return _measure(dbname, proxy, outage)


def _measure(dbname: str, proxy: TCPProxy, outage: float) -> dict[str, float]:
    table = "bench_events"
    direct_store = datastore(dbname, 5432)
    proxied_store = datastore(dbname, proxy.port)
    writer = PostgresApplicationRecorder(direct_store, table)
    writer.create_table()
    saver = PostgresApplicationRecorder(proxied_store, table)
    listening = PostgresApplicationRecorder(datastore(dbname, proxy.port), table)
    wakes: list[float] = []
    stop_listening = listening.listen(lambda: wakes.append(time.monotonic()))
    saves_done: list[float] = []
    writes: list[float] = []
    stopping = threading.Event()

    def save_every(
        recorder: PostgresApplicationRecorder, pause: float, log: list[float], at_start: bool
    ) -> None:
        # (A write is logged when it starts: a wake-up may come before it returns.)
        while not stopping.is_set():
            started = time.monotonic()
            recorder.insert_events([new_event()])
            log.append(started if at_start else time.monotonic())
            time.sleep(pause)

    threads = [
        threading.Thread(target=save_every, args=(saver, 0.01, saves_done, False)),
        threading.Thread(target=save_every, args=(writer, 0.025, writes, True)),
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # steady state
    proxy.refuse()
    time.sleep(outage)
    proxy.accept_again()
    ended = time.monotonic()
    time.sleep(max(4.0, outage))
    stopping.set()
    for thread in threads:
        thread.join(timeout=60)
    if stop_listening is not None:
        stop_listening()
    for store in (direct_store, proxied_store, listening.datastore):
        store.close()
    return _figures(ended, saves_done, writes, wakes)


def _figures(
    ended: float, saves_done: list[float], writes: list[float], wakes: list[float]
) -> dict[str, float]:
    first_save = min(t for t in saves_done if t >= ended) - ended
    delays = []
    for written in (t for t in writes if t >= ended):
        woken = next((w for w in wakes if w >= written), None)
        if woken is not None:
            delays.append((written, woken - written))
    # Back once five writes in a row wake the listener within FAST_WAKE (so the wake-up
    # made when the listener reconnects is not taken for one).
    fast_again = (
        next(
            written
            for i, (written, _) in enumerate(delays)
            if len(delays[i : i + 5]) == 5 and all(d <= FAST_WAKE for _, d in delays[i : i + 5])
        )
        - ended
    )
    after = [delay for written, delay in delays if written - ended >= fast_again]
    return {
        "first_save": first_save,
        "fast_wakes": fast_again,
        "wake_p50_after": statistics.median(after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one outage of 1 s, once")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "RESULTS-outage.md"))
    args = parser.parse_args()
    outages = [1.0] if args.quick else [1.0, 3.0, 10.0]
    repeats = 1 if args.quick else 3
    lines = [
        "# Outages ridden out (PostgreSQL, through a TCP proxy)",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"Python {platform.python_version()}, {platform.machine()}; median of {repeats} "
        "run(s) each. Seconds from the outage's end.",
        "",
        "| outage (s) | first save after | ms wake-ups again after | wake-up p50 then (ms) |",
        "|---|---|---|---|",
    ]
    for outage in outages:
        runs = [run_once(outage) for _ in range(repeats)]

        def median(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(run[key] for run in runs)

        lines.append(
            f"| {outage:g} | {median('first_save'):.2f} | {median('fast_wakes'):.2f} | "
            f"{median('wake_p50_after') * 1000:.1f} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "A save waiting out the outage retries after pauses of 50 ms doubling to 1 s",
        "(jittered), so its first success comes up to one pause after the server's",
        "return; the listener retries on the same schedule, and wakes its follower once",
        "when it is listening again.",
    ]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
