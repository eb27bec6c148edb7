"""Benchmark DCB recorders: the course-booking workload, ours against the reference
``eventsourcing`` 9.5.6's PostgresDCBRecorderTT, as the store grows.

    python benchmarks/dcb.py                  # full run, writes benchmarks/RESULTS-dcb.md
    python benchmarks/dcb.py --quick          # small sizes, report in a temp file
    python benchmarks/dcb.py --ours-only      # without the reference library

The workload: students join courses. A course takes at most 10 students, a
student at most 3 courses. Each attempt reads the events of the course and of
the student (a query of two items, type and tag), decides, and appends a
"Joined" event on the condition that nothing matching that query was recorded
since the read; a refused append is retried as a new attempt.

Each configuration (library and store) runs in a fresh subprocess of this file
(``--worker``), on a database of its own: it loads events (booking events of
other courses and students, in appends of 1,000 unconditional events, through
the recorder's own ``append``) up to each size in turn, and at each size runs
the workload ``--rounds`` times on new courses and students, single-threaded
and with ``--threads`` threads. Ours runs with the current interpreter and the
repository root on PYTHONPATH; the reference with ``--reference-python``
(default /tmp/refvenv/bin/python), from a directory without our package. Both
run at their defaults (durable commits).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT_PREFIX = "DCB-RESULT "
REFERENCE_PYTHON = "/tmp/refvenv/bin/python"
LOAD_BATCH = 1000
CAPACITY, PER_STUDENT = 10, 3
CONFIGS = [("ours", "sqlite"), ("ours", "postgres"), ("reference", "postgres")]
POSTGRES = {
    "host": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
    "port": os.environ.get("POSTGRES_PORT", "5432"),
    "user": os.environ.get("POSTGRES_USER", "postgres"),
    "password": os.environ.get("POSTGRES_PASSWORD", ""),
}


# ---------------------------------------------------------------------------
# The worker: one library, one store, every size.


def make_recorder(store: str, database: str, threads: int) -> Any:
    if store == "sqlite":
        from eventsourcing.dcb.sqlite import SQLiteDCBRecorder
        from eventsourcing.sqlite import SQLiteDatastore

        recorder: Any = SQLiteDCBRecorder(SQLiteDatastore(database, lock_timeout=60))
    else:
        from eventsourcing.dcb.postgres_tt import PostgresDCBRecorderTT
        from eventsourcing.postgres import PostgresDatastore

        datastore = PostgresDatastore(
            database,
            POSTGRES["host"],
            POSTGRES["port"],
            POSTGRES["user"],
            POSTGRES["password"],
            pool_size=threads + 1,
            max_overflow=0,
        )
        recorder = PostgresDCBRecorderTT(datastore)
    recorder.create_table()
    return recorder


def load(recorder: Any, start: int, stop: int) -> float:
    """Append booking events of other courses and students, positions start+1..stop."""
    from eventsourcing.dcb.api import DCBEvent

    began = time.perf_counter()
    for first in range(start, stop, LOAD_BATCH):
        batch = [
            DCBEvent(
                type="Joined",
                data=b'{"student": "%d", "course": "%d"}' % (i % 300_000, i % 30_000),
                tags=[f"old-course-{i % 30_000}", f"old-student-{i % 300_000}"],
            )
            for i in range(first, min(first + LOAD_BATCH, stop))
        ]
        recorder.append(batch)
    return time.perf_counter() - began


class Booking:
    def __init__(self, recorder: Any, prefix: str, courses: int, students: int) -> None:
        self.recorder = recorder
        self.courses = [f"{prefix}-course-{i}" for i in range(courses)]
        self.students = [f"{prefix}-student-{i}" for i in range(students)]
        self.lock = threading.Lock()
        self.outcomes: dict[str, int] = {}
        self.append_seconds: list[float] = []

    def attempt(self, rng: random.Random) -> None:
        from eventsourcing.dcb.api import (
            DCBAppendCondition,
            DCBEvent,
            DCBQuery,
            DCBQueryItem,
        )
        from eventsourcing.persistence import IntegrityError

        course, student = rng.choice(self.courses), rng.choice(self.students)
        query = DCBQuery(
            items=[
                DCBQueryItem(types=["Joined"], tags=[course]),
                DCBQueryItem(types=["Joined"], tags=[student]),
            ]
        )
        response = self.recorder.read(query)
        events = [e.event for e in response]
        head = response.head
        if any(course in e.tags and student in e.tags for e in events):
            outcome = "already"
        elif sum(course in e.tags for e in events) >= CAPACITY:
            outcome = "full"
        elif sum(student in e.tags for e in events) >= PER_STUDENT:
            outcome = "limit"
        else:
            event = DCBEvent(
                type="Joined", data=f"{student} {course}".encode(), tags=[course, student]
            )
            began = time.perf_counter()
            try:
                self.recorder.append(
                    [event], DCBAppendCondition(fail_if_events_match=query, after=head)
                )
                outcome = "joined"
            except IntegrityError:
                outcome = "conflict"
            elapsed = time.perf_counter() - began
            with self.lock:
                self.append_seconds.append(elapsed)
        with self.lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def run_workload(recorder: Any, prefix: str, attempts: int, threads: int) -> dict[str, Any]:
    # Enough places that most attempts append: courses x capacity ~ attempts.
    courses = max(2, attempts // CAPACITY)
    booking = Booking(recorder, prefix, courses, students=courses * CAPACITY // 2)
    per_thread = attempts // threads

    def run(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(per_thread):
            booking.attempt(rng)

    began = time.perf_counter()
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    appends = sorted(booking.append_seconds)
    joined = booking.outcomes.get("joined", 0)
    return {
        "attempts": per_thread * threads,
        "seconds": elapsed,
        "attempts_per_s": per_thread * threads / elapsed,
        "appends_per_s": joined / elapsed,
        "append_ms_median": 1000 * statistics.median(appends) if appends else None,
        "append_ms_p95": 1000 * appends[int(0.95 * (len(appends) - 1))] if appends else None,
        "outcomes": booking.outcomes,
    }


def worker(config: dict[str, Any]) -> None:
    """Load events, or run one round of the workload, and print the result."""
    import eventsourcing

    library = str(Path(eventsourcing.__file__).resolve().parent)
    threads = config.get("threads", 1)
    recorder = make_recorder(config["store"], config["database"], threads)
    if config["mode"] == "load":
        # From what is there: a load cut short (a lost connection) is taken up again.
        head = recorder.read(after=2**62).head or 0
        seconds = load(recorder, head, config["stop"])
        result: dict[str, Any] = {"load_seconds": seconds, "loaded": config["stop"] - head}
    else:
        # Connections opened and statements prepared before the clock starts.
        run_workload(recorder, config["prefix"] + "-warm-up", 20 * threads, threads)
        result = run_workload(recorder, config["prefix"], config["attempts"], threads)
    print(RESULT_PREFIX + json.dumps(dict(result, library=library)), flush=True)


# ---------------------------------------------------------------------------
# The driver.


def admin_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as conn:  # type: ignore[arg-type]
        conn.execute(statement)


def run_worker(library: str, config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run a worker; again (up to 3 times) if it fails, as it may when the shared
    database server has no connection free."""
    for attempt in range(4):
        result = run_worker_once(library, config, args)
        if "error" not in result:
            break
        print(f"  ({library} {config['store']} {config['mode']}: {result['error'][-200:]})")
        time.sleep(10 * (attempt + 1))
    return result


def run_worker_once(
    library: str, config: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PERSISTENCE_MODULE")}
    if library == "ours":
        python, cwd = sys.executable, str(HERE)
        env["PYTHONPATH"] = str(ROOT)
    else:
        # (From a directory without our package, which would shadow the reference.)
        python, cwd = args.reference_python, tempfile.gettempdir()
    cmd = [python, str(HERE / "dcb.py"), "--worker", json.dumps(config)]
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            if (result["library"] == str(ROOT / "eventsourcing")) != (library == "ours"):
                return {"error": f"wrong library imported: {result['library']}"}
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def run_all(
    configs: list[tuple[str, str]], args: argparse.Namespace, tmp: Path, databases: list[str]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Load every configuration to each size in turn; at each size, run the rounds
    alternating between configurations (the machine's slow spells hit them all)."""
    database = {}
    for library, store in configs:
        if store == "sqlite":
            database[(library, store)] = str(tmp / f"{library}.sqlite")
        else:
            name = f"dcb_bench_{uuid.uuid4().hex[:10]}"
            admin_execute(f'CREATE DATABASE "{name}"')
            databases.append(name)
            database[(library, store)] = name
    results: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in configs}
    for size in args.sizes:
        load_seconds, loaded_events = {}, {}
        for library, store in configs:
            base = {"store": store, "database": database[(library, store)]}
            outcome = run_worker(library, dict(base, mode="load", stop=size), args)
            load_seconds[(library, store)] = outcome.get("load_seconds", 0.0)
            loaded_events[(library, store)] = outcome.get("loaded", 0)
            print(f"  {library} {store}: loaded {size:,} ({outcome})", flush=True)
        for threads in args.threads:
            rounds: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in configs}
            for r in range(args.rounds):
                for library, store in configs:
                    config = {
                        "store": store,
                        "database": database[(library, store)],
                        "mode": "measure",
                        "prefix": f"s{size}-t{threads}-r{r}",
                        "attempts": args.attempts,
                        "threads": threads,
                    }
                    rounds[(library, store)].append(run_worker(library, config, args))
            for config_key, runs in rounds.items():
                errors = [run["error"] for run in runs if "error" in run]
                row = {
                    "size": size,
                    "threads": threads,
                    "load_seconds": load_seconds[config_key] if threads == args.threads[0] else 0,
                    "loaded": loaded_events[config_key] if threads == args.threads[0] else 0,
                    "rounds": [run for run in runs if "error" not in run],
                }
                if errors or not row["rounds"]:
                    row["error"] = errors[0] if errors else "no result"
                else:
                    print(f"  {config_key[0]} {config_key[1]}: {summary_line(row)}", flush=True)
                results[config_key].append(row)
    return results


def medians(result: dict[str, Any]) -> dict[str, float | None]:
    keys = ["appends_per_s", "attempts_per_s", "append_ms_median", "append_ms_p95"]
    out: dict[str, float | None] = {}
    for key in keys:
        values = [r[key] for r in result["rounds"] if r[key] is not None]
        out[key] = statistics.median(values) if values else None
    return out


def summary_line(result: dict[str, Any]) -> str:
    m = medians(result)
    return (
        f"{result['size']:>9,} events, {result['threads']} thread(s): "
        f"{m['appends_per_s']:.0f} appends/s, append {m['append_ms_median']:.2f} ms median"
        + (f" (loaded in {result['load_seconds']:.1f} s)" if result["load_seconds"] else "")
    )


def write_report(
    results: dict[tuple[str, str], list[dict[str, Any]]], args: argparse.Namespace
) -> str:
    lines = [
        "# DCB benchmark: course booking, ours vs the reference's PostgresDCBRecorderTT",
        "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on "
        f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs "
        "(shared with other work). `python benchmarks/dcb.py " + " ".join(sys.argv[1:]) + "`.",
        "",
        f"Workload: each attempt reads a course's and a student's `Joined` events (a query "
        f"of two items, type and tag), decides (capacity {CAPACITY}, at most {PER_STUDENT} "
        "courses per student, no joining twice) and appends one event on the condition "
        "that nothing matching the query was recorded since the read. "
        f"{args.attempts} attempts per round, {args.rounds} rounds per row (medians), on new "
        "courses and students each round, each round a fresh process (after 20 attempts of "
        "warm-up per thread), the configurations alternating round by round; the store is "
        "first loaded with booking events of "
        f"other courses and students (appends of {LOAD_BATCH} unconditional events). Durable "
        "commits (both libraries' defaults: SQLite synchronous=FULL, PostgreSQL "
        "synchronous_commit=on).",
        "",
        "| library | store | events stored | threads | appends/s | attempts/s "
        "| append ms (median) | append ms (p95) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (library, store), rows in results.items():
        for row in rows:
            if "error" in row:
                lines.append(f"| {library} | {store} | error: {row['error']} | | | | | |")
                continue
            m = medians(row)
            lines.append(
                f"| {library} | {store} | {row['size']:,} | {row['threads']} "
                f"| {m['appends_per_s']:.0f} | {m['attempts_per_s']:.0f} "
                f"| {m['append_ms_median']:.2f} | {m['append_ms_p95']:.2f} |"
            )
    lines += ["", "Loading (unconditional appends of 1,000 events):", ""]
    for (library, store), rows in results.items():
        for row in rows:
            if row.get("load_seconds") and row.get("loaded"):
                rate = row["loaded"] / row["load_seconds"]
                lines.append(
                    f"- {library} {store}: {row['loaded']:,} events in "
                    f"{row['load_seconds']:.1f} s ({rate:,.0f} events/s), up to {row['size']:,}"
                )
    lines += ["", *ratio_lines(results), ""]
    return "\n".join(lines)


def ratio_lines(results: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    reference = {
        (r["size"], r["threads"]): medians(r)["appends_per_s"]
        for r in results.get(("reference", "postgres"), [])
        if "error" not in r
    }
    if not reference:
        return []
    lines = ["Ours against the reference's PostgreSQL recorder (appends/s):", ""]
    for (library, store), rows in results.items():
        if library != "ours":
            continue
        for row in rows:
            theirs = reference.get((row.get("size"), row.get("threads")))
            if "error" in row or not theirs:
                continue
            ours = medians(row)["appends_per_s"] or 0.0
            lines.append(
                f"- {store}, {row['size']:,} events, {row['threads']} thread(s): "
                f"{ours / theirs:.2f}x"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--ours-only", action="store_true")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--threads", default="1,4")
    parser.add_argument("--attempts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference-python", default=REFERENCE_PYTHON)
    parser.add_argument("--output")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.quick:
        args.sizes, args.attempts, args.rounds = "1000,5000", 100, 1
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    stores = args.stores.split(",")
    output = args.output or (
        str(Path(tempfile.gettempdir()) / "RESULTS-dcb.md")
        if args.quick
        else str(HERE / "RESULTS-dcb.md")
    )
    configs = [
        (library, store)
        for library, store in CONFIGS
        if store in stores and not (library == "reference" and args.ours_only)
    ]
    databases: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = run_all(configs, args, Path(tmp), databases)
    finally:
        for name in databases:
            admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    Path(output).write_text(write_report(results, args))
    print(f"Wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
