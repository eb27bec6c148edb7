"""Benchmark the multi-process engine on PostgreSQL (ours only: the reference has none).

    python benchmarks/distributed.py            # writes benchmarks/RESULTS-distributed.md
    python benchmarks/distributed.py --quick --output /tmp/d.md

Two measurements, each on a database of its own:

- delay: a ``Counters`` worker runs in another OS process (``python -m
  eventsourcing run``); this process saves ``add_trick`` commands one at a time
  and, for each, times from ``save()`` returning until the worker's commit is
  announced on the Counters table's LISTEN/NOTIFY channel. p50 and p99.
- partitions: a backlog of TrickAdded events is recorded in one transaction
  while 1, 2 or 4 partition workers wait; the time until every partition has
  processed it gives events/s. The tricks are shared by all dogs, so partitions
  write the same counters and some batches conflict and are retried.
- poison: the same backlog over 1,000 dogs, one of which first learns a trick
  the policy cannot count: events/s with and without it (the worker retries the
  poison event, parks it and the later events of that dog, and goes on).
- re-partitioning: commands stream in while two partition workers run; they are
  stopped, three start with ``--repartition`` while the stream goes on; every
  count must come out exact.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from eventsourcing.persistence import ProcessRecorder  # noqa: E402
from examples.dogschool import Counters, Dog, DogSchool  # noqa: E402

SYSTEM = "examples.dogschool:system"
POISONED = "poisoned:system"  # benchmarks/poisoned.py
TRICKS = [f"trick {i}" for i in range(10)]
ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""}


@contextmanager
def fresh_database() -> Iterator[dict[str, str]]:
    name = f"es_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **ADMIN) as admin:  # type: ignore[arg-type]
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": name,
            "POSTGRES_HOST": ADMIN["host"],
            "POSTGRES_PORT": str(ADMIN["port"]),
            "POSTGRES_USER": ADMIN["user"],
            "POSTGRES_PASSWORD": ADMIN["password"],
        }
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **ADMIN) as admin:  # type: ignore[arg-type]
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_sqlite() -> Iterator[dict[str, str]]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        yield {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(Path(folder) / "events.sqlite"),
        }


FRESH = {"postgres": fresh_database, "sqlite": fresh_sqlite}
STORE = ["postgres"]  # (set by --store)


def fresh_store() -> Any:
    return FRESH[STORE[0]]()


def start_worker(env: dict[str, str], *extra: str, system: str = SYSTEM) -> subprocess.Popen[bytes]:
    path = os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])
    full_env = dict(os.environ, PYTHONPATH=path, **env)
    command = [sys.executable, "-m", "eventsourcing", "--log-level", "error", "run", system]
    return subprocess.Popen([*command, "--app", "Counters", *extra], env=full_env)


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=60)


def wait_until(condition, timeout: float = 300.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not finish in time")
        time.sleep(0.002)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_delay(commands: int) -> dict[str, float]:
    with fresh_database() as env:
        school, counters = DogSchool(env=env), Counters(env=env)
        worker = start_worker(env, "--poll-interval", "1")
        try:
            dog_id = school.register_dog("Fido")
            listener = counters.recorder.open_listener()  # type: ignore[attr-defined]
            school.add_trick(dog_id, "warm up")
            wait_until(lambda: counters.recorder.max_notification_id() == 2)
            while listener.wait(0.05):
                pass  # drain the warm-up's notices
            delays = []
            for i in range(commands):
                school.add_trick(dog_id, TRICKS[i % len(TRICKS)])
                saved = time.perf_counter()
                if not listener.wait(10):
                    raise TimeoutError("no commit from the worker within 10 s")
                delays.append((time.perf_counter() - saved) * 1000)
            listener.close()
        finally:
            stop_workers([worker])
            school.close()
            counters.close()
    return {
        "p50 ms": percentile(delays, 0.5),
        "p99 ms": percentile(delays, 0.99),
        "mean ms": statistics.fmean(delays),
    }


def measure_partitions(count: int, backlog: int) -> dict[str, float]:
    with fresh_database() as env:
        school, counters = DogSchool(env=env), Counters(env=env)
        names = ["DogSchool"] if count == 1 else [f"DogSchool[{i}/{count}]" for i in range(count)]
        recorder = counters.recorder
        assert isinstance(recorder, ProcessRecorder)

        def processed(target: int) -> bool:
            return all((recorder.max_tracking_id(name) or 0) >= target for name in names)

        partition_args = (
            [[]] if count == 1 else [["--partition", f"{i}/{count}"] for i in range(count)]
        )
        workers = [start_worker(env, *args) for args in partition_args]
        try:
            school.register_dog("warm up")
            wait_until(lambda: processed(1))  # every worker is up and listening
            dogs = [Dog(f"dog {i}") for i in range(50)]
            for i in range(backlog):
                dogs[i % len(dogs)].add_trick(TRICKS[i % len(TRICKS)])
            events = backlog + len(dogs)
            started = time.perf_counter()
            school.save(*dogs)  # one transaction: every worker sees it at once
            wait_until(lambda: processed(events + 1))
            elapsed = time.perf_counter() - started
        finally:
            stop_workers(workers)
            school.close()
            counters.close()
        checker = Counters(env=env)
        total = sum(checker.get_count(trick) for trick in TRICKS)
        checker.close()
        assert total == backlog, f"counted {total} of {backlog}: not exactly once"
    return {"events/s": events / elapsed, "seconds": elapsed}


def measure_poison(backlog: int, poisoned: bool) -> dict[str, float]:
    """Events/s of one worker catching up ``backlog`` tricks of 1,000 dogs, of which
    one (if ``poisoned``) first learns a trick its policy cannot count."""
    with fresh_store() as env:
        school, counters = DogSchool(env=env), Counters(env=env)
        worker = start_worker(env, system=POISONED)
        try:
            school.register_dog("warm up")
            wait_until(lambda: (counters.recorder.max_tracking_id("DogSchool") or 0) >= 1)
            dogs = [Dog(f"dog {i}") for i in range(1000)]
            tricks = [TRICKS[i % len(TRICKS)] for i in range(backlog)]
            if poisoned:
                tricks[0] = "explode"  # dog 0's first trick: its later ones wait behind
            for i, trick in enumerate(tricks):
                dogs[i % len(dogs)].add_trick(trick)
            events = backlog + len(dogs)
            started = time.perf_counter()
            school.save(*dogs)
            last = events + 1
            wait_until(lambda: (counters.recorder.max_tracking_id("DogSchool") or 0) >= last)
            elapsed = time.perf_counter() - started
        finally:
            stop_workers([worker])
            school.close()
            counters.close()
        checker = Counters(env=env)
        counted = sum(checker.get_count(trick) for trick in TRICKS)
        parked = [d for d in checker.dead_letters() if d.status == "parked"]
        checker.close()
        held_back = len(range(0, backlog, len(dogs))) if poisoned else 0
        assert len(parked) == held_back, (len(parked), held_back)
        assert counted == backlog - held_back, f"counted {counted}: not exactly once"
    return {"events/s": events / elapsed, "seconds": elapsed, "parked": len(parked)}


def measure_repartition(commands: int) -> dict[str, float]:
    """2 -> 3 partitions while ``commands`` stream in; counts must come out exact."""
    import threading

    with fresh_store() as env:
        old = [start_worker(env, "--partition", f"{k}/2") for k in (0, 1)]
        new: list[subprocess.Popen[bytes]] = []
        done = threading.Event()
        sent = [0]

        def stream() -> None:
            school = DogSchool(env=env)
            dogs = [school.register_dog(f"dog {i}") for i in range(20)]
            for i in range(commands):
                school.add_trick(dogs[i % len(dogs)], TRICKS[i % len(TRICKS)])
                sent[0] += 1
            school.close()
            done.set()

        streamer = threading.Thread(target=stream)
        streamer.start()
        try:
            wait_until(lambda: sent[0] >= commands // 3)
            stop_workers(old)
            switched = time.perf_counter()
            new = [start_worker(env, "--partition", f"{k}/3", "--repartition") for k in range(3)]
            streamer.join()
            counters = Counters(env=env)
            school = DogSchool(env=env)
            last = school.recorder.max_notification_id() or 0
            names = [f"DogSchool[{k}/3]" for k in range(3)]

            def caught_up() -> bool:
                for worker in new:
                    if worker.poll() is not None:
                        raise RuntimeError(f"a worker exited with status {worker.returncode}")
                return all((counters.recorder.max_tracking_id(n) or 0) >= last for n in names)

            wait_until(caught_up)
            elapsed = time.perf_counter() - switched
            counted = sum(counters.get_count(trick) for trick in TRICKS)
            counters.close()
            school.close()
        finally:
            stop_workers(old + new)
        assert counted == commands, f"counted {counted} of {commands}: not exactly once"
    return {"commands": commands, "seconds after the switch": elapsed, "counted": counted}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "RESULTS-distributed.md"
    )
    parser.add_argument(
        "--store",
        choices=sorted(FRESH),
        default="postgres",
        help="for the poison and re-partitioning runs (the others need PostgreSQL)",
    )
    parser.add_argument(
        "--only", choices=["poison-repartition"], help="run only those (on --store)"
    )
    args = parser.parse_args()
    STORE[0] = args.store
    commands, backlog = (20, 200) if args.quick else (300, 5000)
    if args.only:
        return write_poison_repartition(args, commands, backlog)
    delay = measure_delay(commands)
    print(f"delay: {delay}", flush=True)
    rows = []
    for count in (1, 2, 4):
        result = measure_partitions(count, backlog)
        print(f"{count} partition(s): {result}", flush=True)
        rows.append((count, result))
    lines = [
        "# Distributed engine on PostgreSQL (ours only)",
        "",
        f"Run on {datetime.date.today().isoformat()}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"PostgreSQL at 127.0.0.1, durable commits. `python benchmarks/distributed.py"
        f"{' --quick' if args.quick else ''}`.",
        "",
        f"## Save-to-processed delay across processes ({commands} commands)",
        "",
        "| p50 | p99 | mean |",
        "|---:|---:|---:|",
        f"| {delay['p50 ms']:.2f} ms | {delay['p99 ms']:.2f} ms | {delay['mean ms']:.2f} ms |",
        "",
        f"## Partitions catching up a backlog of {backlog} TrickAdded events",
        "",
        "| partitions | events/s | seconds |",
        "|---:|---:|---:|",
        *[f"| {count} | {r['events/s']:,.0f} | {r['seconds']:.2f} |" for count, r in rows],
        "",
        "Every count was checked exact after each run. All partitions increment the",
        "same ten counters, so their batches conflict and are retried; on this",
        "2-core machine, four workers also share two cores.",
        "",
        *poison_repartition_lines(backlog, commands),
    ]
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}")
    return 0


def poison_repartition_lines(backlog: int, commands: int) -> list[str]:
    poison_rows = []
    for poisoned in (False, True):
        result = measure_poison(backlog, poisoned)
        print(f"poisoned={poisoned}: {result}", flush=True)
        poison_rows.append((poisoned, result))
    repartition = measure_repartition(commands * 5)
    print(f"re-partitioning: {repartition}", flush=True)
    return [
        f"## One poisoned aggregate among 1,000 (a backlog of {backlog} events, one worker)",
        "",
        "| poisoned | events/s | seconds | parked |",
        "|---|---:|---:|---:|",
        *[
            f"| {'yes' if p else 'no'} | {r['events/s']:,.0f} | {r['seconds']:.2f} "
            f"| {r['parked']:.0f} |"
            for p, r in poison_rows
        ],
        "",
        "The poisoned dog's first trick fails, is retried three times (0.1, 0.2 and",
        "0.4 s apart: `FOLLOWER_RETRIES`, `FOLLOWER_RETRY_DELAY`), then parked with its",
        "later tricks behind it; the other 999 dogs' events are all counted, exactly once.",
        "",
        "## Re-partitioning 2 -> 3 under a stream",
        "",
        f"{repartition['commands']:.0f} commands streamed in one at a time; after a third,",
        "the two partition workers were stopped and three started with `--repartition`",
        f"while the stream went on. They were caught up "
        f"{repartition['seconds after the switch']:.2f} s after the switch, and the counts",
        f"were exact ({repartition['counted']:.0f} of {repartition['commands']:.0f}).",
        "",
    ]


def write_poison_repartition(args: argparse.Namespace, commands: int, backlog: int) -> int:
    lines = [
        f"# Poison events and re-partitioning on {args.store}",
        "",
        f"Run on {datetime.date.today().isoformat()}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. "
        f"`python benchmarks/distributed.py --only poison-repartition --store {args.store}"
        f"{' --quick' if args.quick else ''}`.",
        "",
        *poison_repartition_lines(backlog, commands),
    ]
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
