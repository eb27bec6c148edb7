"""Cancellation and crashes under the asyncio API.

A task cancelled in the middle of save() leaves the whole save recorded or
nothing; a cancelled subscription releases its connection; an async worker
killed with SIGKILL mid-stream and restarted leaves exact counts.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_crash import REPO, assert_counts_exact, kill_after

from eventsourcing.application import AggregateNotFound
from eventsourcing.asyncio import AsyncApplication, AsyncRunner
from eventsourcing.asyncio._timeouts import wait_for
from examples.async_dogschool import DogSchool
from examples.dogschool import Counters, Dog

ASYNC_WORKER = REPO / "tests" / "async_crash_worker.py"


@pytest.fixture
def persistence_env(persistence_env: dict[str, str]) -> dict[str, str]:
    """Smaller pools than the default (the test server's connections are shared)."""
    return {"POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "4", **persistence_env}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class Kennel(AsyncApplication):
    pass


async def recorded_versions(app: Kennel, dog: Dog) -> int:
    try:
        return int((await app.repository.get(dog.id)).version)
    except AggregateNotFound:
        return 0


def test_a_cancelled_save_is_recorded_whole_or_not_at_all(
    persistence_env: dict[str, str],
) -> None:
    env = dict(persistence_env, POSTGRES_POOL_SIZE="1", POSTGRES_MAX_OVERFLOW="1")
    outcomes: set[str] = set()

    async def main() -> None:
        async with Kennel(env) as app:
            rng = random.Random(7)
            for _ in range(30):
                dogs = [Dog(f"dog{i}") for i in range(3)]
                for dog in dogs:
                    dog.add_trick("sit")  # two events each, six in one save
                saving = asyncio.create_task(app.save(*dogs))
                if rng.random() > 0.2:  # (else cancelled before it starts)
                    await asyncio.sleep(rng.uniform(0, 0.003))
                saving.cancel()
                try:
                    await saving
                    outcomes.add("finished")
                except asyncio.CancelledError:
                    outcomes.add("cancelled")
                await asyncio.sleep(0.01)  # (a write left running on a thread ends)
                app.repository.clear_cache()
                versions = {await recorded_versions(app, dog) for dog in dogs}
                assert versions in ({0}, {2}), versions
            # The connections of cancelled saves were released: saves still go through.
            dog = Dog("last")
            await asyncio.wait_for(app.save(dog), timeout=20)
            assert await recorded_versions(app, dog) == 1

    run(main())
    assert "cancelled" in outcomes


def test_a_save_cancelled_while_the_database_runs_it(postgres_env: dict[str, str]) -> None:
    """Cancelled while its statement waits at the server for the table's write lock:
    the save is then recorded whole (the statement was sent) or not at all."""
    import psycopg

    env = dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres", POSTGRES_POOL_SIZE="2")

    async def main() -> None:
        async with Kennel(env) as app:
            dogs = [Dog("a"), Dog("b")]
            lock_holder = await psycopg.AsyncConnection.connect(
                dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"],
                user=env["POSTGRES_USER"], autocommit=True,
            )  # fmt: skip
            try:
                await lock_holder.execute(
                    "SELECT pg_advisory_lock('kennel_events'::regclass::oid::bigint)"
                )
                saving = asyncio.create_task(app.save(*dogs))
                await asyncio.sleep(0.3)
                assert not saving.done()  # waiting for the lock, in the server
                saving.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await saving
            finally:
                await lock_holder.execute(
                    "SELECT pg_advisory_unlock('kennel_events'::regclass::oid::bigint)"
                )
                await lock_holder.close()
            await asyncio.sleep(0.3)
            app.repository.clear_cache()
            versions = {await recorded_versions(app, dog) for dog in dogs}
            assert versions in ({0}, {1})
            stats = app.factory.datastore.stats()  # type: ignore[attr-defined]
            assert stats.get("requests_waiting", 0) == 0
            dog = Dog("after")
            await asyncio.wait_for(app.save(dog), timeout=20)

    run(main())


def listeners(env: dict[str, str]) -> int:
    import psycopg

    from eventsourcing.asyncio._postgres import LISTENER_APPLICATION_NAME

    with psycopg.connect(
        dbname="postgres", host=env["POSTGRES_HOST"], user=env["POSTGRES_USER"]
    ) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (env["POSTGRES_DBNAME"], LISTENER_APPLICATION_NAME),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("style", ["async with", "async for only"])
def test_a_cancelled_subscription_releases_its_connection(
    postgres_env: dict[str, str], style: str
) -> None:
    env = dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres", POSTGRES_POOL_SIZE="2")

    async def main() -> None:
        async with DogSchool(env) as school:
            await school.register_dog("Fido")
            seen: list[int] = []
            subscription = school.subscription()  # (held here: not closed by the collector)

            async def follow() -> None:
                if style == "async with":
                    async with subscription:
                        async for notification in subscription:
                            seen.append(notification.id)
                else:
                    async for notification in subscription:
                        seen.append(notification.id)

            task = asyncio.create_task(follow())
            while not seen:
                await asyncio.sleep(0.02)
            assert await asyncio.to_thread(listeners, env) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            deadline = time.monotonic() + 10
            while await asyncio.to_thread(listeners, env) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # (the server ends a closed session soon after)
            assert await asyncio.to_thread(listeners, env) == 0

    run(main())


def test_wait_for_raises_a_cancellation_that_comes_as_the_awaited_task_finishes() -> None:
    """A waiter cancelled in the step of the loop that what it awaits finishes in is
    cancelled (asyncio.wait_for of Python 3.10 and 3.11 returns the result instead)."""

    async def main() -> None:
        for pause in range(6):  # (loop steps between the news and the cancellation)
            news = asyncio.Event()
            waiting = asyncio.create_task(wait_for(news.wait(), 3600))
            await asyncio.sleep(0)  # (it waits)
            news.set()
            for _ in range(pause):
                await asyncio.sleep(0)
            if waiting.cancel():  # (not finished yet)
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            else:
                assert await waiting is True

    run(main())


def test_wait_for_returns_the_result_or_times_out() -> None:
    async def main() -> None:
        async def answer() -> int:
            await asyncio.sleep(0)
            return 42

        async def fail() -> None:
            raise ValueError("no")

        assert await wait_for(answer(), 60) == 42
        assert await wait_for(answer(), None) == 42
        with pytest.raises(ValueError, match="no"):
            await wait_for(fail(), 60)
        never = asyncio.Event()
        waiting = asyncio.ensure_future(never.wait())
        with pytest.raises(asyncio.TimeoutError):
            await wait_for(waiting, 0.01)
        assert waiting.cancelled()  # (and ended before the timeout was raised)

    run(main())


def test_runner_stops_when_its_follower_is_woken_as_it_is_stopped() -> None:
    """stop() ends a follower woken in the step of the loop that stop() cancels it in
    (its wait_for returned the wake-up on Python 3.10 and 3.11, the cancellation was
    lost and the follower looped on: stop() never returned; seen as the SIGKILL test's
    last worker hanging, its follower woken by the NOTIFY of its own writes)."""
    env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}

    async def main() -> None:
        for pause in range(4):  # (loop steps between the wake-up and stop())
            runner = AsyncRunner([[DogSchool, Counters]], env=env, poll_interval=3600)
            await runner.start()
            school = runner.get(DogSchool)
            await school.register_dog("Fido")
            await runner.wait(Counters)
            await asyncio.sleep(0.1)  # (the follower is back waiting for news)
            await school.register_dog("Rex")  # wakes the follower
            for _ in range(pause):
                await asyncio.sleep(0)
            stopping = asyncio.create_task(runner.stop())
            # (A guard against hanging the suite: stop() returns at once, or never.)
            done, _ = await asyncio.wait({stopping}, timeout=30)
            assert done, f"stop() did not return ({pause} steps after the wake-up)"
            await stopping

    run(main())


def start_async_worker(commands: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ASYNC_WORKER), str(commands)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO), **env),
    )


def crash_and_recover(env: dict[str, str], seed: int) -> None:
    print(f"kill points drawn with random seed {seed}")  # shown if the test fails
    rng = random.Random(seed)
    for _ in range(3):
        kill_after(start_async_worker(100_000, env), rng.randint(1, 60))
    process = start_async_worker(10, env)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, f"stdout: {stdout[-500:]}\nstderr: {stderr}"
    assert stdout.strip().endswith("done")
    assert_counts_exact(env)


def test_sqlite_async_worker_survives_sigkill(tmp_path: Path) -> None:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(tmp_path / "dogschool.db"),
    }
    crash_and_recover(env, seed=random.randrange(1_000_000))


def test_postgres_async_worker_survives_sigkill(postgres_env: dict[str, str]) -> None:
    env = dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres", POSTGRES_POOL_SIZE="2")
    crash_and_recover(env, seed=random.randrange(1_000_000))
