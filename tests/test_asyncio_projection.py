"""AsyncProjectionRunner: the sync API's projections and views, fed by a task of
the event loop from an async application, on every store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eventsourcing.asyncio import AsyncApplication, AsyncProjectionRunner
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from tests.projection_views import VIEWS, BatchCountProjection, CountProjection, Dog, TrickCounts


class DogSchool(AsyncApplication):
    async def register_dog(self, name: str) -> int:
        recordings = await self.save(Dog(name))
        return recordings[-1].notification.id

    async def add_trick(self, name: str, trick: str) -> int:
        dog = await self.repository.get(Dog.create_id(name))
        dog.add_trick(trick)
        recordings = await self.save(dog)
        return recordings[-1].notification.id


@pytest.fixture
def persistence_env(persistence_env: dict[str, str]) -> dict[str, str]:
    """Smaller pools than the default (the test server's connections are shared)."""
    return {"POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "4", **persistence_env}


@pytest.fixture
def view_class(persistence_env: dict[str, str]) -> type[TrickCounts]:
    return VIEWS[persistence_env["PERSISTENCE_MODULE"]]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_the_view_reads_your_writes(
    persistence_env: dict[str, str], view_class: type[TrickCounts]
) -> None:
    async def main() -> None:
        async with AsyncProjectionRunner(
            application_class=DogSchool,
            projection_class=CountProjection,
            view_class=view_class,
            env=persistence_env,
        ) as runner:
            school = runner.app
            await school.register_dog("Billy")
            await school.register_dog("Milly")
            await school.add_trick("Billy", "roll over")
            await school.add_trick("Milly", "roll over")
            last = await school.add_trick("Billy", "fetch ball")
            await runner.wait(last)
            assert runner.view.get_count("roll over") == 2
            assert runner.view.get_count("fetch ball") == 1
            assert runner.view.max_tracking_id("DogSchool") == last
            with pytest.raises(TimeoutError):
                await runner.wait(last + 1, timeout=0.2)

    run(main())


def test_catches_up_in_batches_then_resumes(
    persistence_env: dict[str, str], view_class: type[TrickCounts], durable: bool
) -> None:
    if not durable:
        pytest.skip("in memory, what was recorded before is gone")
    BatchCountProjection.batch_sizes = []

    async def record(tricks: int) -> int:
        async with DogSchool(persistence_env) as school:
            if not await school.repository.contains(Dog.create_id("Billy")):
                await school.register_dog("Billy")
            last = 0
            for number in range(tricks):
                last = await school.add_trick("Billy", f"trick{number % 3}")
            return last

    async def project(last: int) -> list[int]:
        async with AsyncProjectionRunner(
            application_class=DogSchool,
            projection_class=BatchCountProjection,
            view_class=view_class,
            env=persistence_env,
        ) as runner:
            await runner.wait(last)
            return [runner.view.get_count(f"trick{n}") for n in range(3)]

    last = run(record(30))
    assert run(project(last)) == [10, 10, 10]
    assert max(BatchCountProjection.batch_sizes) > 1  # caught up in batches
    last = run(record(3))  # a restarted runner resumes from the view's position
    assert run(project(last)) == [11, 11, 11]


class FailingProjection(Projection[TrickCounts]):
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        if isinstance(domain_event, Dog.TrickAdded):
            raise ValueError(f"cannot count {domain_event.trick!r}")
        self.view.insert_tracking(tracking)


def test_wait_raises_the_projections_error(tmp_path: Any) -> None:
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "db")}

    async def main() -> None:
        runner = AsyncProjectionRunner(
            application_class=DogSchool,
            projection_class=FailingProjection,
            view_class=VIEWS["eventsourcing.sqlite"],
            env=env,
        )
        await runner.start()
        try:
            await runner.app.register_dog("Billy")
            last = await runner.app.add_trick("Billy", "sit")
            with pytest.raises(ValueError, match="cannot count 'sit'"):
                await runner.wait(last)
        finally:
            await runner.stop()

    run(main())


def test_many_requests_wait_at_once_without_holding_threads(tmp_path: Any) -> None:
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "db")}

    async def main() -> None:
        async with AsyncProjectionRunner(
            application_class=DogSchool,
            projection_class=BatchCountProjection,  # (of TrickAdded events only)
            view_class=VIEWS["eventsourcing.sqlite"],
            env=env,
        ) as runner:
            registered = await runner.app.register_dog("Billy")
            # A position of an event of other topics: nothing to wait for.
            await runner.wait(registered, timeout=5)
            # More waiters than the default executor has threads, for a future write.
            waiters = [asyncio.create_task(runner.wait(registered + 1)) for _ in range(50)]
            await asyncio.sleep(0.1)
            await runner.app.add_trick("Billy", "sit")
            await asyncio.wait_for(asyncio.gather(*waiters), timeout=20)
            assert runner.view.get_count("sit") == 1

    run(main())


def test_waits_for_events_the_runners_application_recorded_query_nothing(
    persistence_env: dict[str, str], view_class: type[TrickCounts]
) -> None:
    """Requests that wait for the position of an event they recorded through the
    runner's application (of the projection's topics) are woken when the view passes
    it, without reading the log (which each of them did, twice, at every step)."""

    async def main() -> None:
        async with AsyncProjectionRunner(
            application_class=DogSchool,
            projection_class=BatchCountProjection,  # (of TrickAdded events only)
            view_class=view_class,
            env=persistence_env,
        ) as runner:
            for number in range(20):
                await runner.app.register_dog(f"dog{number}")
            log = runner.app.notification_log
            queries = []
            select, max_id = log.select, log.max_notification_id

            async def counted_select(*args: Any, **kwargs: Any) -> Any:
                queries.append("select")
                return await select(*args, **kwargs)

            async def counted_max() -> Any:
                queries.append("max")
                return await max_id()

            log.select = counted_select  # type: ignore[method-assign]
            log.max_notification_id = counted_max  # type: ignore[method-assign]

            async def request(number: int) -> int:
                position = await runner.app.add_trick(f"dog{number}", "sit")
                await runner.wait(position, timeout=20)
                return runner.view.get_count("sit")

            counts = await asyncio.gather(*(request(n) for n in range(20)))
            assert all(count >= 1 for count in counts)
            assert runner.view.get_count("sit") == 20
            assert queries == []

    run(main())


def test_the_projection_runs_while_the_default_executor_is_busy(
    persistence_env: dict[str, str], view_class: type[TrickCounts]
) -> None:
    """The projection runs on a thread of its own: a service whose requests keep the
    loop's default executor busy (reading the view in threads) does not hold it back."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(2))
        async with AsyncProjectionRunner(
            application_class=DogSchool,
            projection_class=CountProjection,
            view_class=view_class,
            env=persistence_env,
        ) as runner:
            await runner.app.register_dog("Billy")
            release = threading.Event()
            busy = [asyncio.ensure_future(asyncio.to_thread(release.wait, 30)) for _ in range(2)]
            try:
                position = await runner.app.add_trick("Billy", "sit")
                await runner.wait(position, timeout=10)
                assert runner.view.get_count("sit") == 1
            finally:
                release.set()
                await asyncio.gather(*busy)

    run(main())
