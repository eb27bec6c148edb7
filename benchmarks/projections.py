"""Projections: ours against the reference eventsourcing 9.5.6, in one run.

    .venv/bin/python benchmarks/projections.py [--events 100000] [--samples 300]
        [--reference-python /tmp/refvenv/bin/python] [--ours-only] [--quick]

Two measures, each run in fresh subprocesses of this very file (the same user
code under both libraries: only the documented projection API is used):

- read-your-writes: save one event, then ``wait()`` for its position in a view
  fed by a ProjectionRunner; p50 and p99 of the time from the save's return to
  the wait's return. The runner is in the same process (in memory, SQLite and
  PostgreSQL), or in another process (PostgreSQL: the measuring process waits
  on a view object of its own). The reference has no SQLite subscription.
- catch-up: N events recorded (in PostgreSQL) before a ProjectionRunner starts;
  the time until the view (a counter table in SQLite, or in PostgreSQL) has
  processed them all. Ours one event per transaction, and in batches
  (``process_events``); the reference, one event per transaction.

PostgreSQL at 127.0.0.1:5432 (user postgres); each run gets its own database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres", "password": ""}


# ---------------------------------------------------------------------------
# The user code (imported only in a worker, under one library or the other).


def define_user_code() -> dict[str, Any]:
    import projection_user_code as code  # (beside this file: on the path of its workers)

    return {
        "Meter": code.Meter,
        "Meters": code.Meters,
        "views": code.VIEWS,
        "CountView": code.CountView,
        "BatchedCountView": code.BatchedCountView,
    }


def store_env(store: str, dbname: str, folder: str) -> dict[str, str]:
    if store == "popo":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if store == "sqlite":
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "METERS_SQLITE_DBNAME": os.path.join(folder, "meters.db"),
            "COUNTVIEW_SQLITE_DBNAME": os.path.join(folder, "view.db"),
        }
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": PG["host"],
        "POSTGRES_PORT": PG["port"],
        "POSTGRES_USER": PG["user"],
        "POSTGRES_PASSWORD": PG["password"],
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


def worker_wait_local(store: str, env: dict[str, str], samples: int) -> dict[str, Any]:
    from eventsourcing.projection import ProjectionRunner

    code = define_user_code()
    with ProjectionRunner(
        application_class=code["Meters"],
        projection_class=code["CountView"],
        view_class=code["views"][store],
        env=env,
    ) as runner:
        meter = code["Meter"]()
        runner.wait(runner.app.save(meter)[-1].notification.id, timeout=30)
        waits = []
        for _ in range(samples):
            meter.tick()
            position = runner.app.save(meter)[-1].notification.id
            started = time.perf_counter()
            runner.wait(position, timeout=30)
            waits.append(time.perf_counter() - started)
    return percentiles(waits)


def worker_run_projection(env: dict[str, str]) -> None:
    """Run the projection (PostgreSQL view) until killed."""
    from eventsourcing.projection import ProjectionRunner

    code = define_user_code()
    with ProjectionRunner(
        application_class=code["Meters"],
        projection_class=code["CountView"],
        view_class=code["views"]["postgres"],
        env=env,
    ) as runner:
        print("running", flush=True)
        runner.run_forever()


def worker_wait_remote(env: dict[str, str], samples: int) -> dict[str, Any]:
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.utils import Environment

    code = define_user_code()
    runner = subprocess.Popen(
        [sys.executable, __file__, "--worker", "run-projection", "--env", json.dumps(env)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert runner.stdout is not None and runner.stdout.readline().strip() == "running"
        app = code["Meters"](env=env)
        factory = InfrastructureFactory.construct(Environment("CountView", env))
        view = factory.tracking_recorder(code["views"]["postgres"])
        meter = code["Meter"]()
        view.wait("Meters", app.save(meter)[-1].notification.id, timeout=30)
        waits = []
        for _ in range(samples):
            meter.tick()
            position = app.save(meter)[-1].notification.id
            started = time.perf_counter()
            view.wait("Meters", position, timeout=30)
            waits.append(time.perf_counter() - started)
        return percentiles(waits)
    finally:
        runner.kill()
        runner.wait()


def worker_catchup(view_store: str, env: dict[str, str], events: int, batched: bool) -> dict:
    from eventsourcing.projection import ProjectionRunner

    code = define_user_code()
    app = code["Meters"](env=env)
    per_meter = 100
    last = 0
    for _ in range(events // per_meter):
        meter = code["Meter"]()
        for _ in range(per_meter - 1):
            meter.tick()
        last = app.save(meter)[-1].notification.id
    projection = code["BatchedCountView"] if batched else code["CountView"]
    started = time.perf_counter()
    with ProjectionRunner(
        application_class=code["Meters"],
        projection_class=projection,
        view_class=code["views"][view_store],
        env=env,
    ) as runner:
        runner.wait(last, timeout=3600)
        elapsed = time.perf_counter() - started
    return {"events": last, "seconds": elapsed, "events_per_s": last / elapsed}


def run_worker(args: argparse.Namespace) -> None:
    env = json.loads(args.env)
    if args.worker == "run-projection":
        worker_run_projection(env)
        return
    if args.worker == "wait-local":
        result = worker_wait_local(args.store, env, args.samples)
    elif args.worker == "wait-remote":
        result = worker_wait_remote(env, args.samples)
    else:
        result = worker_catchup(args.store, env, args.events, args.worker == "catchup-batched")
    import eventsourcing

    result["library"] = str(Path(eventsourcing.__file__).resolve().parent)
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------
# The driver.


def admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        conn.execute(statement)


def run_one(python: str, is_ours: bool, worker: str, store: str, **options: Any) -> dict | None:
    dbname = f"bench_proj_{uuid.uuid4().hex[:10]}"
    folder = tempfile.mkdtemp()
    env = store_env(
        "postgres" if worker.startswith(("catchup", "wait-remote")) else store, dbname, folder
    )
    if worker.startswith("catchup") and store == "sqlite":
        env["COUNTVIEW_PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
        env["COUNTVIEW_SQLITE_DBNAME"] = os.path.join(folder, "view.db")
    if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres" or store == "postgres":
        admin(f'CREATE DATABASE "{dbname}"')
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPATH")}
    if is_ours:
        process_env["PYTHONPATH"] = str(ROOT)
    command = [python, __file__, "--worker", worker, "--store", store, "--env", json.dumps(env)]
    for key, value in options.items():
        command += [f"--{key}", str(value)]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, cwd=folder, env=process_env, timeout=7200
        )
    finally:
        if "POSTGRES_DBNAME" in env:
            admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict = json.loads(line[len("RESULT ") :])
            expected_ours = result["library"].startswith(str(ROOT))
            if expected_ours != is_ours:
                raise RuntimeError(f"ran the wrong library: {result['library']}")
            return result
    print(f"  ({worker} {store} failed: {proc.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--store", default="popo")
    parser.add_argument("--env", default="{}")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--reference-python", default="/tmp/refvenv/bin/python")
    parser.add_argument("--ours-only", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return
    if args.quick:
        args.samples, args.events = 20, 1000
    impls = [("ours", sys.executable, True)]
    if not args.ours_only:
        impls.append(("reference", args.reference_python, False))

    print(f"## Read-your-writes: save, then wait() ({args.samples} samples)\n")
    print("| runner | view store | library | p50 ms | p99 ms |\n|---|---|---|---|---|")
    cases = [("wait-local", s) for s in ("popo", "sqlite", "postgres")]
    cases.append(("wait-remote", "postgres"))
    for worker, store in cases:
        for name, python, is_ours in impls:
            if name == "reference" and store == "sqlite":
                continue  # (no SQLite subscription there)
            result = run_one(python, is_ours, worker, store, samples=args.samples)
            where = "same process" if worker == "wait-local" else "other process"
            if result:
                print(
                    f"| {where} | {store} | {name} | {result['p50_ms']:.2f} | "
                    f"{result['p99_ms']:.2f} |",
                    flush=True,
                )

    print(f"\n## Catch-up: {args.events} events (in PostgreSQL) into a counter view\n")
    print("| view store | library | processing | seconds | events/s |\n|---|---|---|---|---|")
    for store in ("sqlite", "postgres"):
        runs = [("ours", sys.executable, True, "catchup-batched", "batches")]
        runs.append(("ours", sys.executable, True, "catchup", "one per transaction"))
        if not args.ours_only:
            runs.append(
                ("reference", args.reference_python, False, "catchup", "one per transaction")
            )
        for name, python, is_ours, worker, how in runs:
            result = run_one(python, is_ours, worker, store, events=args.events)
            if result:
                print(
                    f"| {store} | {name} | {how} | {result['seconds']:.2f} | "
                    f"{result['events_per_s']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
