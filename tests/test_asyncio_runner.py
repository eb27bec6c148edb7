"""AsyncRunner: sync followers (process application policies) run after async
leaders, as tasks in the event loop, on every store."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from eventsourcing.asyncio import AsyncRunner, AsyncRunnerError
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.system import ProcessApplication, ProcessingEvent
from examples.async_dogschool import DogSchool, make_runner
from examples.dogschool import Counters, Dog
from examples.dogschool import DogSchool as SyncDogSchool


@pytest.fixture
def persistence_env(persistence_env: dict[str, str]) -> dict[str, str]:
    """Smaller pools than the default (the test server's connections are shared)."""
    return {"POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "4", **persistence_env}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def count(counters: Counters, trick: str) -> int:
    return await asyncio.to_thread(counters.get_count, trick)


def test_followers_process_each_event_once(persistence_env: dict[str, str]) -> None:
    async def main() -> None:
        async with make_runner(persistence_env) as runner:
            school = runner.get(DogSchool)
            counters = runner.get(Counters)
            dogs = [await school.register_dog(f"dog{i}") for i in range(10)]

            async def teach(dog_id: Any) -> int:
                await school.add_trick(dog_id, "sit")
                return await school.add_trick(dog_id, "beg")

            # Dogs taught at once (a dog's own tricks one after the other, or they conflict).
            positions = await asyncio.gather(*(teach(dog) for dog in dogs))
            await runner.wait(Counters, position=max(positions))
            assert await count(counters, "sit") == 10
            assert await count(counters, "beg") == 10
            assert counters.process_recorder.max_tracking_id("DogSchool") == max(positions)

    run(main())


def test_followers_keep_up_while_the_default_executor_is_busy() -> None:
    """A follower runs on a thread of its own: the application's blocking calls filling
    the loop's default executor hold neither its batches nor ``wait()`` back."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(2))
        async with make_runner({}) as runner:
            school = runner.get(DogSchool)
            release = threading.Event()
            busy = [asyncio.ensure_future(asyncio.to_thread(release.wait, 10)) for _ in range(2)]
            try:
                await asyncio.sleep(0.05)  # (both threads of the default executor taken)
                position = await school.add_trick(await school.register_dog("Fido"), "sit")
                await runner.wait(Counters, position=position, timeout=3)
                assert runner.get(Counters).get_count("sit") == 1
                assert not any(task.done() for task in busy)  # (still busy meanwhile)
            finally:
                release.set()
                await asyncio.gather(*busy)

    run(main())


def test_catch_up_on_start(persistence_env: dict[str, str], durable: bool) -> None:
    if not durable:
        pytest.skip("in memory, what was recorded before is gone")

    async def record_before() -> None:
        async with DogSchool(persistence_env) as school:
            for name in ("Fido", "Rex", "Lassie"):
                await school.add_trick(await school.register_dog(name), "fetch")

    async def main() -> None:
        async with make_runner(persistence_env) as runner:
            await runner.wait(Counters)  # (up to what the leader has recorded)
            assert await count(runner.get(Counters), "fetch") == 3

    run(record_before())
    run(main())


def test_writes_of_other_processes_wake_followers(postgres_env: dict[str, str]) -> None:
    env = dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres", POSTGRES_POOL_SIZE="2")

    async def main() -> None:
        # Polling every minute: only NOTIFY can wake the follower in time.
        async with make_runner(env, poll_interval=60) as runner:
            await asyncio.sleep(0.2)  # (the follower has caught up: nothing to do)
            with SyncDogSchool(env) as other:  # another writer of the leader's table
                dog_id = await asyncio.to_thread(other.register_dog, "Fido")
                await asyncio.to_thread(other.add_trick, dog_id, "sit")
            await runner.wait(Counters, position=2, timeout=20)
            assert await count(runner.get(Counters), "sit") == 1

    run(main())


class Failing(ProcessApplication):
    @singledispatchmethod
    def policy(self, domain_event: object, processing_event: ProcessingEvent) -> None:
        """Ignored."""

    @policy.register(Dog.TrickAdded)
    def _(self, domain_event: Dog.TrickAdded, processing_event: ProcessingEvent) -> None:
        raise ValueError(f"cannot count {domain_event.trick!r}")


def test_a_failing_follower_is_reported_by_wait() -> None:
    async def main() -> None:
        stop_on_error = {"FOLLOWER_ON_ERROR": "stop"}
        async with AsyncRunner([[DogSchool, Failing]], env=stop_on_error) as runner:
            school = runner.get(DogSchool)
            position = await school.add_trick(await school.register_dog("Fido"), "sit")
            with pytest.raises(AsyncRunnerError, match="cannot count 'sit'"):
                await runner.wait(Failing, position=position)

    run(main())


def test_a_failing_policy_parks_its_event_and_the_follower_goes_on() -> None:
    async def main() -> None:
        env = {"FOLLOWER_RETRY_DELAY": "0"}
        async with AsyncRunner([[DogSchool, Failing]], env=env) as runner:
            school = runner.get(DogSchool)
            position = await school.add_trick(await school.register_dog("Fido"), "sit")
            await runner.wait(Failing, position=position, timeout=30)
            (letter,) = runner.get(Failing).dead_letters()
            assert (letter.notification_id, letter.error_type) == (position, "ValueError")
            assert "cannot count 'sit'" in letter.error_message

    run(main())


def test_wait_times_out_and_names_the_leader() -> None:
    async def main() -> None:
        async with make_runner() as runner:
            with pytest.raises(TimeoutError, match="DogSchool"):
                await runner.wait(Counters, position=5, timeout=0.3)
            with pytest.raises(ValueError, match="does not follow"):
                await runner.wait(Counters, leader="Other")

    run(main())


def test_pipes_are_checked() -> None:
    with pytest.raises(TypeError, match="must be a Follower"):
        AsyncRunner([[Counters, DogSchool]])
    with pytest.raises(TypeError, match="application classes"):
        AsyncRunner([[DogSchool, object]])


def test_a_follower_woken_after_a_quiet_spell_is_not_delayed() -> None:
    """The batch delay (group commit) is for events streaming in while the follower
    processes: an event after a quiet spell is processed at once, as the threaded
    runners do."""

    async def main() -> None:
        async with make_runner({"FOLLOWER_BATCH_DELAY": "30"}) as runner:
            school = runner.get(DogSchool)
            dog_id = await school.register_dog("Fido")
            for _ in range(3):
                position = await school.add_trick(dog_id, "sit")
                await runner.wait(Counters, position=position, timeout=5)  # not 30 s
            assert await count(runner.get(Counters), "sit") == 3

    run(main())
