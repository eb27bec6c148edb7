"""Benchmark scenarios, shared by both implementations.

This file is run in a fresh subprocess, once per measurement, by ``bench.py``:

    python benchmarks/scenarios.py --scenario save --store popo --n 1000

It imports ``eventsourcing`` from whatever is on the path (our repository, or the
reference library installed in the bench venv) and uses only the public API that
both share. It prints one line ``BENCH-RESULT {json}`` with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from eventsourcing.application import Application

try:
    from eventsourcing.application import AggregateNotFound
except ImportError:  # the reference 9.5.6 only has the newer name (see README.md)
    from eventsourcing.application import AggregateNotFoundError as AggregateNotFound
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.system import (
    MultiThreadedRunner,
    ProcessApplication,
    SingleThreadedRunner,
    System,
)

RESULT_PREFIX = "BENCH-RESULT "
TRICKS = [f"trick {i}" for i in range(10)]
WAIT_DEADLINE = 600.0  # seconds; a run that does not finish by then is reported as failed
# A catch-up that takes longer than this is reported as not finished, with its progress.
CATCHUP_DEADLINE = float(os.environ.get("BENCH_CATCHUP_DEADLINE", "90"))
# How often the measuring thread asks whether the catch-up is done: each asking is two
# queries, which at every millisecond would compete with the follower being measured.
CATCHUP_POLL = 0.005


# ---------------------------------------------------------------------------
# The domain: the seed's dog school and counters, plus a plain item.


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name):
        self.name = name
        self.tricks = []

    @event("TrickAdded")
    def add_trick(self, trick):
        self.tricks.append(trick)


class DogSchool(Application):
    def register_dog(self, name):
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id, trick):
        dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        self.save(dog)


class Counter(Aggregate):
    def __init__(self, name):
        self.name = name
        self.count = 0

    @classmethod
    def create_id(cls, name):
        return uuid.uuid5(uuid.NAMESPACE_URL, f"/counters/{name}")

    @event("Incremented")
    def increment(self):
        self.count += 1


class Counters(ProcessApplication):
    @singledispatchmethod
    def policy(self, domain_event, process_event):
        """Default policy"""

    @policy.register(Dog.TrickAdded)
    def _(self, domain_event, process_event):
        trick = domain_event.trick
        try:
            counter = self.repository.get(Counter.create_id(trick))
        except AggregateNotFound:
            counter = Counter(trick)
        counter.increment()
        process_event.collect_events(counter)

    def get_count(self, trick):
        try:
            return self.repository.get(Counter.create_id(trick)).count
        except AggregateNotFound:
            return 0


class Item(Aggregate):
    """An event-sized aggregate: a name and a value of a few dozen bytes."""

    @event("Created")
    def __init__(self, name):
        self.name = name
        self.value = ""

    @event("Updated")
    def update(self, value):
        self.value = value


class Items(Application):
    # The reference library refuses notification_log.select() pages larger than this.
    log_section_size = 100


# ---------------------------------------------------------------------------
# Stores: each run gets a fresh one, removed afterwards.


@contextlib.contextmanager
def fresh_store(kind: str) -> Iterator[None]:
    if kind == "popo":
        yield
        return
    if kind == "sqlite":
        tmpdir = tempfile.mkdtemp(prefix="bench-sqlite-")
        os.environ["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
        os.environ["SQLITE_DBNAME"] = os.path.join(tmpdir, "bench.db")
        # A file per application of a system, as the reference library needs: its
        # SQLite recorders all use one table name, so applications sharing a file
        # would mix their events.
        for app in ("DOGSCHOOL", "COUNTERS", "GATEDCOUNTERS"):
            os.environ[f"{app}_SQLITE_DBNAME"] = os.path.join(tmpdir, f"{app.lower()}.db")
        try:
            yield
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return
    if kind == "postgres":
        import psycopg

        dbname = f"bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        admin = dict(
            host=os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
            port=int(os.environ.get("BENCH_PG_PORT", "5432")),
            user=os.environ.get("BENCH_PG_USER", "postgres"),
            password=os.environ.get("BENCH_PG_PASSWORD", "postgres"),
        )
        with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        os.environ.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            POSTGRES_DBNAME=dbname,
            POSTGRES_HOST=admin["host"],
            POSTGRES_PORT=str(admin["port"]),
            POSTGRES_USER=admin["user"],
            POSTGRES_PASSWORD=admin["password"],
        )
        try:
            yield
        finally:
            with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        return
    raise ValueError(f"unknown store {kind!r}")


# ---------------------------------------------------------------------------
# Helpers.


def metric(value: float, unit: str, better: str = "higher") -> dict[str, Any]:
    return {"value": value, "unit": unit, "better": better}


def user_cpu() -> float:
    """Seconds of CPU this process (all its threads) has spent in user mode."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def cpu_per_command(cpu_started: float, commands: int) -> dict[str, Any]:
    """This process's user-mode CPU time per command since ``cpu_started``.

    Unlike a rate, it leaves out waiting (a disk's commits, a server's round trips)
    and the kernel's work (the commits' flushes), so it shows the libraries' own cost;
    a database server's CPU is not in it.
    """
    return cpu_seconds_per_command(user_cpu() - cpu_started, commands)


def cpu_seconds_per_command(seconds: float, commands: int) -> dict[str, Any]:
    return metric(seconds / commands * 1000, "ms", better="lower")


def wait_until(
    condition: Callable[[], bool],
    pause: float = 0.001,
    what: str = "",
    limit: float = WAIT_DEADLINE,
    progress: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not done after {limit:.0f}s {progress()}".strip())
        time.sleep(pause)


@contextlib.contextmanager
def stopped_after(runner: Any, before: Callable[[], Any] = lambda: None) -> Iterator[None]:
    """Stop ``runner`` on the way out (calling ``before`` first). If stopping raises too
    (a follower cut short mid-batch, say), the error that got us out, such as a
    timeout with its progress, is still the one reported."""
    try:
        yield
    except BaseException as error:
        before()
        try:
            runner.stop()
        except Exception as stop_error:
            error.add_note(
                f"then stopping the runner raised {type(stop_error).__name__}: {stop_error}"
            )
        raise
    before()
    runner.stop()


def caught_up(counters: Any, school: Any) -> Callable[[], bool]:
    """True once Counters has recorded its position at DogSchool's last notification."""

    def check() -> bool:
        target = school.recorder.max_notification_id() or 0
        position = counters.recorder.max_tracking_id("DogSchool") or 0
        return position >= target

    return check


def catch_up_progress(counters: Any, school: Any) -> Callable[[], str]:
    def describe() -> str:
        position = counters.recorder.max_tracking_id("DogSchool") or 0
        target = school.recorder.max_notification_id() or 0
        return f"(processed {position:,} of {target:,} events)"

    return describe


def write_dog_backlog(school: Any, n_events: int) -> int:
    """Record ``n_events`` DogSchool events in saves of up to 1,000 events (one dog each)."""
    written = 0
    number = 0
    while written < n_events:
        size = min(1000, n_events - written)
        dog = Dog(f"dog {number}")
        for i in range(size - 1):
            dog.add_trick(TRICKS[i % len(TRICKS)])
        school.save(dog)
        written += size
        number += 1
    return written


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------------------
# Scenarios. Each takes n (its size) and the store kind, and returns figures.


def scenario_save(n: int, store: str) -> dict[str, Any]:
    """n aggregates: each created and saved, then 4 times got, changed and saved."""
    app = Items()
    started, cpu_started = time.perf_counter(), user_cpu()
    for i in range(n):
        item = Item(f"item {i}")
        app.save(item)
        for j in range(4):
            item = app.repository.get(item.id)
            item.update(f"value {j} of item {i}")
            app.save(item)
    elapsed = time.perf_counter() - started
    cpu = cpu_per_command(cpu_started, 5 * n)
    app.close()
    return {
        "commands/s": metric(5 * n / elapsed, "commands/s"),
        "user CPU ms per command": cpu,
        "commands": n * 5,
    }


def scenario_get(n: int, store: str) -> dict[str, Any]:
    """n gets, spread over 100 aggregates of 5 events each."""
    app = Items()
    ids = []
    for i in range(100):
        item = Item(f"item {i}")
        for j in range(4):
            item.update(f"value {j} of item {i}")
        app.save(item)
        ids.append(item.id)
    for aggregate_id in ids:  # warm up (fills a cache, if the application has one)
        app.repository.get(aggregate_id)
    started = time.perf_counter()
    for i in range(n):
        app.repository.get(ids[i % 100])
    elapsed = time.perf_counter() - started
    app.close()
    return {"gets/s": metric(n / elapsed, "gets/s")}


def scenario_replay(n: int, store: str, events_per_aggregate: int = 1000) -> dict[str, Any]:
    """n aggregates of 1,000 events, each read once by an application that never saw it.

    On a durable store each read is by a fresh application instance on the same
    store. In memory a store cannot be shared by two instances, so the one
    application reads each aggregate at an explicit version, which no cache serves.
    """
    writer = Items()
    ids = []
    for i in range(n):
        item = Item(f"item {i}")
        for j in range(events_per_aggregate - 1):
            item.update(f"value {j}")
        writer.save(item)
        ids.append(item.id)
    elapsed = 0.0
    if store == "popo":
        started = time.perf_counter()
        for aggregate_id in ids:
            item = writer.repository.get(aggregate_id, version=events_per_aggregate)
            assert item.version == events_per_aggregate
        elapsed = time.perf_counter() - started
    else:
        writer.close()
        for aggregate_id in ids:
            reader = Items()  # constructed outside the timing
            started = time.perf_counter()
            item = reader.repository.get(aggregate_id)
            elapsed += time.perf_counter() - started
            assert item.version == events_per_aggregate
            reader.close()
    if store == "popo":
        writer.close()
    return {"events/s": metric(n * events_per_aggregate / elapsed, "events/s")}


def scenario_log(n: int, store: str) -> dict[str, Any]:
    """Read a log of n notifications with ``notification_log.select`` in pages of 100."""
    app = Items()
    remaining = n
    while remaining > 0:
        size = min(100, remaining)
        item = Item("logged")
        for j in range(size - 1):
            item.update(f"value {j}")
        app.save(item)
        remaining -= size
    started = time.perf_counter()
    read = 0
    start = 1
    while True:
        page = app.notification_log.select(start, 100)
        if not page:
            break
        read += len(page)
        start = page[-1].id + 1
    elapsed = time.perf_counter() - started
    app.close()
    assert read == n, (read, n)
    return {"notifications/s": metric(n / elapsed, "notifications/s")}


def _register_dogs(school: Any) -> list[Any]:
    return [school.register_dog(f"dog {i}") for i in range(10)]


def _warm_up(school: Any, dogs: list[Any]) -> int:
    """One add_trick per trick before timing, as in the latency scenario: each
    counter's creation and the first uuid5 (whose stdlib import of hashlib costs
    milliseconds once per process) stay out of the timed steady state."""
    for dog, trick in zip(dogs, TRICKS):
        school.add_trick(dog, trick)
    return len(TRICKS)


def _add_tricks(school: Any, dogs: list[Any], n: int) -> None:
    for i in range(n):
        school.add_trick(dogs[i % 10], TRICKS[(i // 10) % 10])


def _assert_counted(counters: Any, n: int) -> None:
    """Counters counted ``n`` tricks in all."""
    total = sum(counters.get_count(t) for t in TRICKS)
    assert total == n, (total, n)


# In memory one pass of ours lasts ~40 ms, shorter than the machine's slow spells, so it
# either falls in one or not (measured: 10,750-25,682 commands/s in fresh processes, with
# the same collections and page faults); a run there times several fresh systems, one
# after the other, and reports their overall rate, under both libraries.
SYSTEM_PASSES = {"popo": 5}


def scenario_system_st(n: int, store: str) -> dict[str, Any]:
    """The seed system under SingleThreadedRunner: 10 dogs, 10 tricks, n add_trick."""
    elapsed, _, cpu, thread_cpu, commands = _system_passes(SingleThreadedRunner, n, store)
    return {
        "commands/s": metric(commands / elapsed, "commands/s"),
        "user CPU ms per command": cpu_seconds_per_command(cpu, commands),
        "command thread CPU ms per command": cpu_seconds_per_command(thread_cpu, commands),
    }


def scenario_system_mt(n: int, store: str) -> dict[str, Any]:
    """The seed system under MultiThreadedRunner: time until Counters processed all n."""
    elapsed, returned, cpu, thread_cpu, commands = _system_passes(MultiThreadedRunner, n, store)
    return {
        "commands/s": metric(commands / elapsed, "commands/s"),
        "commands/s (saving only)": metric(commands / returned, "commands/s"),
        "user CPU ms per command": cpu_seconds_per_command(cpu, commands),
        "command thread CPU ms per command": cpu_seconds_per_command(thread_cpu, commands),
    }


def _system_passes(runner_class: Any, n: int, store: str) -> tuple[float, float, float, float, int]:
    """Seconds until processed, seconds until the commands returned, user CPU seconds
    of the process and CPU seconds of the thread that ran the commands, summed over
    the store's passes; and the number of commands timed."""
    passes = SYSTEM_PASSES.get(store, 1)
    timed = [_system_pass(runner_class, n) for _ in range(passes)]
    elapsed, returned, cpu, thread_cpu = (sum(column) for column in zip(*timed))
    return elapsed, returned, cpu, thread_cpu, n * passes


def _system_pass(runner_class: Any, n: int) -> tuple[float, float, float, float]:
    """One fresh seed system: n add_trick timed after a warm-up, until processed.

    The command thread's CPU (user and system: ``time.thread_time``) is that of the
    thread that called the commands, while it called them: under the single-threaded
    runner it also processed Counters' events; under the threaded one, not."""
    threaded = runner_class is not SingleThreadedRunner
    system = System(pipes=[[DogSchool, Counters]])
    runner = runner_class(system)
    runner.start()
    with stopped_after(runner):
        school = runner.get(DogSchool)
        counters = runner.get(Counters)
        dogs = _register_dogs(school)
        warm_up = _warm_up(school, dogs)
        if threaded:
            wait_until(caught_up(counters, school), what="warm-up processed")
        started, cpu_started = time.perf_counter(), user_cpu()
        thread_cpu_started = time.thread_time()
        _add_tricks(school, dogs, n)
        returned, thread_cpu = time.perf_counter(), time.thread_time() - thread_cpu_started
        if threaded:
            wait_until(caught_up(counters, school), what="add_trick processed")
        elapsed = time.perf_counter() - started
        cpu = user_cpu() - cpu_started
        _assert_counted(counters, warm_up + n)
    return elapsed, returned - started, cpu, thread_cpu


class _Recorded:
    """Counts the events Counters recorded, with the time of each record."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.count = 0
        self.stamps: list[tuple[int, float]] = []

    def add(self, n: int) -> None:
        now = time.perf_counter()
        with self.condition:
            self.count += n
            self.stamps.append((self.count, now))
            self.condition.notify_all()

    def time_of(self, target: int) -> float:
        with self.condition:
            if not self.condition.wait_for(lambda: self.count >= target, WAIT_DEADLINE):
                raise TimeoutError(f"Counters did not record event {target}")
            for count, stamp in reversed(self.stamps):
                if count < target:
                    break
                found = stamp
            return found


RECORDED = _Recorded()


class TimedCounters(Counters):
    """Counters that tell the benchmark when they have recorded new events.

    ``notify(new_events)`` is called by both implementations in the follower's
    thread right after the follower's write returned (it is committed), so it
    marks the moment the result became visible, without any polling.
    """

    def notify(self, new_events):
        super().notify(new_events)
        if new_events:
            RECORDED.add(len(new_events))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def scenario_latency(n: int, store: str) -> dict[str, Any]:
    """Under MultiThreadedRunner, the delay from add_trick() returning until Counters
    recorded its result. Measured two ways, n commands each:

    - hook: TimedCounters.notify stamps the time right after the follower's write;
    - poll: the caller spins on ``counters.recorder.max_notification_id()`` with
      ``time.sleep(0)`` (no sleeping period, only a yield of the interpreter lock).
    """
    system = System(pipes=[[DogSchool, TimedCounters]])
    runner = MultiThreadedRunner(system)
    runner.start()
    with stopped_after(runner):
        school = runner.get(DogSchool)
        counters = runner.get(TimedCounters)
        dogs = _register_dogs(school)
        _warm_up(school, dogs)

        def processed() -> bool:
            return (counters.recorder.max_tracking_id("DogSchool") or 0) >= (
                school.recorder.max_notification_id() or 0
            )

        wait_until(processed, what="warm-up processed")
        hook: list[float] = []
        early = 0
        for i in range(n):
            target = RECORDED.count + 1
            school.add_trick(dogs[i % 10], TRICKS[i % 10])
            returned = time.perf_counter()
            delay = RECORDED.time_of(target) - returned
            if delay < 0:
                early += 1  # processed and recorded before save() had even returned
            hook.append(max(0.0, delay))
        poll: list[float] = []
        for i in range(n):
            target = (counters.recorder.max_notification_id() or 0) + 1
            school.add_trick(dogs[i % 10], TRICKS[i % 10])
            returned = time.perf_counter()
            deadline = returned + WAIT_DEADLINE
            while (counters.recorder.max_notification_id() or 0) < target:
                if time.perf_counter() > deadline:
                    raise TimeoutError("Counters did not record the command's result")
                time.sleep(0)
            poll.append(time.perf_counter() - returned)
    ms = 1000.0
    return {
        "p50 ms (hook)": metric(_percentile(hook, 0.5) * ms, "ms", "lower"),
        "p99 ms (hook)": metric(_percentile(hook, 0.99) * ms, "ms", "lower"),
        "p50 ms (poll)": metric(_percentile(poll, 0.5) * ms, "ms", "lower"),
        "p99 ms (poll)": metric(_percentile(poll, 0.99) * ms, "ms", "lower"),
        "mean ms (hook)": metric(statistics.fmean(hook) * ms, "ms", "lower"),
        "recorded before save() returned": metric(early, "commands", "none"),
    }


GATE = threading.Event()


class GatedCounters(Counters):
    """Counters held back until the benchmark opens the gate (in-memory catch-up)."""

    def policy(self, domain_event, process_event):
        GATE.wait()
        return super().policy(domain_event, process_event)


def _catch_up(n: int, store: str) -> tuple[float, int, float]:
    """Make Counters catch up a backlog of n DogSchool events under MultiThreadedRunner.

    Durable store: a plain DogSchool writes the backlog, then a runner is started
    with a fresh Counters. The reference library's followers only start pulling
    when a leader records a new event, so (for both) one more dog is registered
    right after start; the clock runs from ``start()``.

    In memory: two instances cannot share a store, so the runner is started with
    Counters held at a gate in its policy; the backlog is written; the clock runs
    from opening the gate.

    Returns (seconds, events processed, RSS in MiB just before catching up).
    """
    system = System(pipes=[[DogSchool, GatedCounters if store == "popo" else Counters]])
    if store == "popo":
        GATE.clear()
        runner = MultiThreadedRunner(system)
        runner.start()
        with stopped_after(runner, before=GATE.set):
            school = runner.get(DogSchool)
            counters = runner.get(GatedCounters)
            written = write_dog_backlog(school, n)
            rss_before = current_rss_mb()
            started = time.perf_counter()
            GATE.set()
            wait_until(
                caught_up(counters, school),
                what="catch-up",
                pause=CATCHUP_POLL,
                limit=CATCHUP_DEADLINE,
                progress=catch_up_progress(counters, school),
            )
            elapsed = time.perf_counter() - started
        return elapsed, written, rss_before
    writer = DogSchool()
    written = write_dog_backlog(writer, n)
    writer.close()
    rss_before = current_rss_mb()
    runner = MultiThreadedRunner(system)
    started = time.perf_counter()
    runner.start()
    with stopped_after(runner):
        school = runner.get(DogSchool)
        counters = runner.get(Counters)
        school.register_dog("trigger")
        wait_until(
            caught_up(counters, school),
            what="catch-up",
            pause=CATCHUP_POLL,
            limit=CATCHUP_DEADLINE,
            progress=catch_up_progress(counters, school),
        )
        elapsed = time.perf_counter() - started
    return elapsed, written + 1, rss_before


def scenario_catchup(n: int, store: str) -> dict[str, Any]:
    elapsed, events, _ = _catch_up(n, store)
    return {"events/s": metric(events / elapsed, "events/s")}


def scenario_memory(n: int, store: str) -> dict[str, Any]:
    elapsed, events, rss_before = _catch_up(n, store)
    peak = peak_rss_mb()
    return {
        "peak RSS MiB": metric(peak, "MiB", "lower"),
        "RSS before catch-up MiB": metric(rss_before, "MiB", "none"),
        "catch-up events/s": metric(events / elapsed, "events/s"),
    }


SCENARIOS: dict[str, Callable[[int, str], dict[str, Any]]] = {
    "save": scenario_save,
    "get": scenario_get,
    "replay": scenario_replay,
    "log": scenario_log,
    "system-st": scenario_system_st,
    "system-mt": scenario_system_mt,
    "latency": scenario_latency,
    "catchup": scenario_catchup,
    "memory": scenario_memory,
}

PERSISTENCE_MODULES = {"sqlite": "eventsourcing.sqlite", "postgres": "eventsourcing.postgres"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--store", default="popo", choices=["popo", "sqlite", "postgres"])
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args()

    import eventsourcing

    result: dict[str, Any] = {
        "scenario": args.scenario,
        "store": args.store,
        "n": args.n,
        "library": os.path.dirname(os.path.abspath(eventsourcing.__file__)),
        "python": sys.version.split()[0],
    }
    module = PERSISTENCE_MODULES.get(args.store)
    missing = module is not None and not _in_library(module, result["library"])
    if missing:
        result["skipped"] = f"{module} is not in this checkout"
    else:
        try:
            with fresh_store(args.store):
                result["metrics"] = SCENARIOS[args.scenario](args.n, args.store)
        except Exception as error:  # reported in RESULTS.md
            result["error"] = f"{type(error).__name__}: {error}"
            result["traceback"] = traceback.format_exc()
    strays = [
        f"{name} ({getattr(mod, '__file__', '?')})"
        for name, mod in list(sys.modules.items())
        if name.startswith("eventsourcing.")
        and not os.path.abspath(getattr(mod, "__file__", "") or "").startswith(result["library"])
    ]
    if strays and "metrics" in result:
        result.pop("metrics")
        result["error"] = "modules imported from outside the library: " + ", ".join(strays)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def _in_library(module: str, library: str) -> bool:
    """Whether ``module`` is found inside the library's own directory.

    (An editable install of another checkout can otherwise supply a submodule
    that this checkout lacks, mixing two versions of the library.)
    """
    spec = importlib.util.find_spec(module)
    return spec is not None and os.path.abspath(spec.origin or "").startswith(library + os.sep)


if __name__ == "__main__":
    main()
