"""The dog-school web service under concurrent clients: the asyncio API against the
sync API called from FastAPI's thread pool, on PostgreSQL.

Each client (an httpx.AsyncClient on the ASGI app, in process) registers a dog,
then, until the time is up, adds a trick (POST), reads the dog back (GET) and
reads the trick's count from the projection, after the trick's position (GET,
read-your-writes). The same projection and view run behind each service
(AsyncProjectionRunner / ProjectionRunner).
Both services use the same pool settings (POSTGRES_POOL_SIZE=3, MAX_OVERFLOW=5: the
test server's connections are shared).
Reports requests/s and the 50th and 99th percentile latencies.

Each configuration also runs "framework only": the same routes, bodies and clients
with endpoints that do no store work (answers from a dict in memory; ``async def``
endpoints, and plain ``def`` ones on the thread pool). The async framework-only rate
is the most the async service can reach on this machine with the client in process:
if it is below 1.5x the sync service's rate with the store, the 1.5x target is out of
reach whatever the store does.

Then the same commands without HTTP (``--direct`` part): N tasks calling the async
application against N threads calling the sync one (add a trick, read the dog),
to tell the library's share from the HTTP stack's (which, with the client in the
same process, runs in the event loop too on the async side).

Run: python benchmarks/asyncio_service.py [seconds per run]  (a fresh database per
run, on the server of POSTGRES_TEST_HOST/PORT/USER, default 127.0.0.1:5432 postgres)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from uuid import UUID

import httpx
import psycopg
from fastapi import FastAPI
from pydantic import BaseModel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from eventsourcing.projection import ProjectionRunner  # noqa: E402
from examples.dogschool import DogSchool  # noqa: E402
from examples.fastapi_dogschool import create_app  # noqa: E402
from examples.trick_counts import TrickCountsProjection, view_class  # noqa: E402

HOST = os.environ.get("POSTGRES_TEST_HOST", "127.0.0.1")
PORT = os.environ.get("POSTGRES_TEST_PORT", "5432")
USER = os.environ.get("POSTGRES_TEST_USER", "postgres")


class NewDog(BaseModel):
    name: str


class NewTrick(BaseModel):
    trick: str


class SyncDogSchool(DogSchool):
    name = "DogSchool"

    def add_trick_at(self, dog_id: UUID, trick: str) -> int:
        dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        return self.save(dog)[-1].notification.id


def create_sync_app(env: dict[str, str]) -> FastAPI:
    """The same routes over the sync API: plain ``def`` endpoints, which FastAPI
    runs on its thread pool."""
    runners: list[ProjectionRunner[Any, Any]] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runner: ProjectionRunner[Any, Any] = await asyncio.to_thread(
            lambda: ProjectionRunner(
                application_class=SyncDogSchool,
                projection_class=TrickCountsProjection,
                view_class=view_class(env["PERSISTENCE_MODULE"]),
                env=env,
            )
        )
        runners.append(runner)
        try:
            yield
        finally:
            await asyncio.to_thread(runner.__exit__, None, None, None)

    service = FastAPI(lifespan=lifespan)

    @service.post("/dogs", status_code=201)
    def register_dog(dog: NewDog) -> dict[str, Any]:
        return {"id": str(runners[0].app.register_dog(dog.name))}

    @service.post("/dogs/{dog_id}/tricks", status_code=201)
    def add_trick(dog_id: UUID, new: NewTrick) -> dict[str, Any]:
        return {"position": runners[0].app.add_trick_at(dog_id, new.trick)}

    @service.get("/dogs/{dog_id}")
    def get_dog(dog_id: UUID) -> dict[str, Any]:
        return runners[0].app.get_dog(dog_id)

    @service.get("/tricks/{trick}")
    def trick_count(trick: str, after: int) -> dict[str, Any]:
        runners[0].wait(after, timeout=10)
        return {"trick": trick, "count": runners[0].view.get_count(trick)}

    return service


def create_framework_app(use_threads: bool) -> FastAPI:
    """The same routes and bodies with no store work: each endpoint answers from a
    dict in memory (a dog's name and tricks, a running position, a fixed count), as
    ``async def`` endpoints, or as plain ``def`` ones that FastAPI runs on its thread
    pool. What the HTTP stack alone allows (the "framework only" rows)."""
    service = FastAPI()
    dogs: dict[UUID, dict[str, Any]] = {}
    positions = [0]

    def register_dog(dog: NewDog) -> dict[str, Any]:
        dog_id = uuid.uuid4()
        dogs[dog_id] = {"name": dog.name, "tricks": []}
        return {"id": str(dog_id)}

    def add_trick(dog_id: UUID, new: NewTrick) -> dict[str, Any]:
        dogs[dog_id]["tricks"].append(new.trick)
        positions[0] += 1
        return {"position": positions[0]}

    def get_dog(dog_id: UUID) -> dict[str, Any]:
        dog = dogs[dog_id]
        return {"name": dog["name"], "tricks": list(dog["tricks"])}

    def trick_count(trick: str, after: int) -> dict[str, Any]:
        return {"trick": trick, "count": after}

    endpoints: list[Callable[..., Any]] = [register_dog, add_trick, get_dog, trick_count]
    if not use_threads:
        endpoints = [_as_async(function) for function in endpoints]
    service.post("/dogs", status_code=201)(endpoints[0])
    service.post("/dogs/{dog_id}/tricks", status_code=201)(endpoints[1])
    service.get("/dogs/{dog_id}")(endpoints[2])
    service.get("/tricks/{trick}")(endpoints[3])
    return service


def _as_async(function: Callable[..., dict[str, Any]]) -> Callable[..., Any]:
    """``function`` as an ``async def`` endpoint with the same signature."""
    import functools

    @functools.wraps(function)
    async def endpoint(*args: Any, **kwargs: Any) -> dict[str, Any]:
        await asyncio.sleep(0)  # (gives way once, as an endpoint awaiting I/O does)
        return function(*args, **kwargs)

    return endpoint


async def load(service: FastAPI, clients: int, seconds: float) -> tuple[float, float, float, float]:
    """Requests/s, p50 and p99 latency (ms) of ``clients`` concurrent clients, and the
    process's CPU (all its threads) per request (ms)."""
    latencies: list[float] = []
    transport = httpx.ASGITransport(app=service)
    async with service.router.lifespan_context(service):
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=120
        ) as client:

            async def timed(request: Callable[[], Any]) -> Any:
                started = time.perf_counter()
                response = await request()
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                return response

            async def run_client(number: int, deadline: float) -> None:
                response = await client.post("/dogs", json={"name": f"dog{number}"})
                dog_id = response.json()["id"]
                tricks = 0
                while time.perf_counter() < deadline:
                    tricks += 1
                    body = {"trick": f"t{tricks % 10}"}
                    added = await timed(
                        lambda: client.post(f"/dogs/{dog_id}/tricks", json=body)  # noqa: B023
                    )
                    await timed(lambda: client.get(f"/dogs/{dog_id}"))
                    after = {"after": added.json()["position"]}
                    await timed(lambda: client.get(f"/tricks/{body['trick']}", params=after))  # noqa: B023

            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(run_client(n, started + seconds) for n in range(clients)))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return len(latencies) / elapsed, p50, p99, cpu * 1000 / len(latencies)


async def direct_async(env: dict[str, str], clients: int, seconds: float) -> float:
    """Commands per second of ``clients`` tasks calling the async application."""
    from examples.async_dogschool import DogSchool as AsyncDogSchool

    done = 0
    async with AsyncDogSchool(env) as school:
        dogs = [await school.register_dog(f"dog{n}") for n in range(clients)]
        deadline = time.perf_counter() + seconds

        async def run_client(dog_id: UUID) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await school.add_trick(dog_id, "sit")
                await school.get_dog(dog_id)
                done += 2

        started = time.perf_counter()
        await asyncio.gather(*(run_client(dog_id) for dog_id in dogs))
        return done / (time.perf_counter() - started)


def direct_threads(env: dict[str, str], clients: int, seconds: float) -> float:
    """Commands per second of ``clients`` threads calling the sync application."""
    import threading

    counts = [0] * clients
    with DogSchool(env) as school:
        dogs = [school.register_dog(f"dog{n}") for n in range(clients)]
        deadline = time.perf_counter() + seconds

        def run_client(number: int) -> None:
            while time.perf_counter() < deadline:
                school.add_trick(dogs[number], "sit")
                school.get_dog(dogs[number])
                counts[number] += 2

        threads = [threading.Thread(target=run_client, args=(n,)) for n in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts) / (time.perf_counter() - started)


def fresh_database() -> tuple[str, dict[str, str]]:
    name = f"es_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname="postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": name,
        "POSTGRES_HOST": HOST,
        "POSTGRES_PORT": PORT,
        "POSTGRES_USER": USER,
        "POSTGRES_PASSWORD": "",
        "POSTGRES_POOL_SIZE": "3",
        "POSTGRES_MAX_OVERFLOW": "5",
    }
    return name, env


def drop_database(name: str) -> None:
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname="postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


T = TypeVar("T")


def attempt(run: Callable[[dict[str, str]], T], tries: int = 4) -> T:
    """``run`` on a fresh database, again (after a pause) if the shared server had no
    connection to spare."""
    for number in range(tries):
        name, env = fresh_database()
        try:
            return run(env)
        except Exception as error:  # (too many clients: another user's load)
            if number == tries - 1:
                raise
            print(f"  (run failed, retried: {str(error).splitlines()[-1][:100]})", flush=True)
            time.sleep(10)
        finally:
            drop_database(name)
    raise AssertionError("unreachable")


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    sides: dict[str, Callable[[dict[str, str]], FastAPI]] = {
        "async": lambda env: create_app(env),
        "sync+threads": create_sync_app,
    }
    # the same routes and clients with no store work: the HTTP stack's ceiling
    ceilings: dict[str, Callable[[], FastAPI]] = {
        "async": lambda: create_framework_app(use_threads=False),
        "sync+threads": lambda: create_framework_app(use_threads=True),
    }
    results: dict[tuple[int, str], list[tuple[float, float, float, float]]] = {}
    head = (
        f"{'clients':>7} {'API':>13} {'':>14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'CPU ms/req':>10}"
    )
    print(head, flush=True)
    for clients in (50, 200):
        for _ in range(3):  # back to back, three times
            for side, make in sides.items():
                figures = attempt(lambda env: asyncio.run(load(make(env), clients, seconds)))  # noqa: B023
                results.setdefault((clients, side), []).append(figures)
                rate, p50, p99, cpu = figures
                print(
                    f"{clients:>7} {side:>13} {'with store':>14} "
                    f"{rate:>8.0f} {p50:>8.1f} {p99:>8.1f} {cpu:>10.2f}",
                    flush=True,
                )
            for side, make_bare in ceilings.items():
                figures = asyncio.run(load(make_bare(), clients, seconds))
                results.setdefault((clients, f"{side} framework"), []).append(figures)
                rate, p50, p99, cpu = figures
                print(
                    f"{clients:>7} {side:>13} {'framework only':>14} "
                    f"{rate:>8.0f} {p50:>8.1f} {p99:>8.1f} {cpu:>10.2f}",
                    flush=True,
                )
    print("\nmedians of the runs:")
    for clients in (50, 200):
        rates = {
            key: statistics.median(r[0] for r in runs)
            for key, runs in results.items()
            if key[0] == clients
        }
        p99s = {
            key: statistics.median(r[2] for r in runs)
            for key, runs in results.items()
            if key[0] == clients
        }
        a, s_ = (clients, "async"), (clients, "sync+threads")
        fa, fs = (clients, "async framework"), (clients, "sync+threads framework")
        print(
            f"{clients:>4} clients: async {rates[a]:.0f} req/s (p99 {p99s[a]:.0f} ms), "
            f"sync+threads {rates[s_]:.0f} req/s (p99 {p99s[s_]:.0f} ms): "
            f"{rates[a] / rates[s_]:.2f}x"
        )
        print(
            f"{'':>4}  framework only: async {rates[fa]:.0f} req/s (p99 {p99s[fa]:.0f} ms), "
            f"sync+threads {rates[fs]:.0f} req/s (p99 {p99s[fs]:.0f} ms); "
            f"ceiling for async-with-store against sync-with-store: "
            f"{rates[fa] / rates[s_]:.2f}x (target 1.5x)"
        )
        cpus = {
            key: statistics.median(r[3] for r in runs)
            for key, runs in results.items()
            if key[0] == clients
        }
        # (What the machine's load does not move much: a process that gets less CPU
        # than it could use serves fewer requests, but each costs the same.)
        print(
            f"{'':>4}  CPU per request: async {cpus[a]:.2f} ms, sync+threads {cpus[s_]:.2f} ms "
            f"({cpus[s_] / cpus[a]:.2f}x); framework only: async {cpus[fa]:.2f} ms, "
            f"sync+threads {cpus[fs]:.2f} ms"
        )
    print("\nwithout HTTP (commands/s):")
    for clients in (50, 200):
        figures: dict[str, list[float]] = {"tasks": [], "threads": []}
        for _ in range(2):
            for side in ("tasks", "threads"):
                if side == "tasks":
                    rate = attempt(lambda env: asyncio.run(direct_async(env, clients, seconds)))  # noqa: B023
                else:
                    rate = attempt(lambda env: direct_threads(env, clients, seconds))  # noqa: B023
                figures[side].append(rate)
        tasks, threads = (statistics.median(figures[s]) for s in ("tasks", "threads"))
        runs = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(figures["tasks"], figures["threads"]))
        print(
            f"{clients:>4} clients: async tasks {tasks:.0f}, sync threads {threads:.0f}: "
            f"{tasks / threads:.2f}x (runs, tasks/threads: {runs})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
