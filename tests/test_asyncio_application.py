"""AsyncApplication on every store: the sync API's behaviour, awaited."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest

from eventsourcing.application import AggregateNotFound, Application
from eventsourcing.asyncio import AsyncApplication
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import RecordConflictError, Transcoder, Transcoding


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class School(AsyncApplication[UUID]):
    async def register_dog(self, name: str) -> UUID:
        dog = Dog(name)
        await self.save(dog)
        return dog.id

    async def add_trick(self, dog_id: UUID, trick: str) -> None:
        dog = await self.repository.get(dog_id)
        dog.add_trick(trick)
        await self.save(dog)


class SyncSchool(Application[UUID]):
    name = "School"  # the same tables as School's


@pytest.fixture
def persistence_env(persistence_env: dict[str, str]) -> dict[str, str]:
    """Smaller pools than the default (the test server's connections are shared)."""
    return {"POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "4", **persistence_env}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_save_get_and_the_notification_log(persistence_env: dict[str, str]) -> None:
    async def main() -> None:
        async with School(persistence_env) as school:
            dog_id = await school.register_dog("Fido")
            await school.add_trick(dog_id, "sit")
            await school.add_trick(dog_id, "roll over")
            dog = await school.repository.get(dog_id)
            assert (dog.name, dog.tricks, dog.version) == ("Fido", ["sit", "roll over"], 3)
            old = await school.repository.get(dog_id, version=2)
            assert old.tricks == ["sit"]
            assert [n.id async for n in school.notification_log] == [1, 2, 3]
            assert [n.originator_version async for n in school.log.read(start=2)] == [2, 3]
            section = await school.notification_log.section("1,2")
            assert (section.id, section.next_id) == ("1,2", "3,4")
            assert await school.notification_log.max_notification_id() == 3
            assert await school.repository.contains(dog_id)
            with pytest.raises(AggregateNotFound):
                await school.repository.get(Dog("x").id)

    run(main())


def test_a_stale_aggregate_records_nothing_of_a_save_of_many(
    persistence_env: dict[str, str],
) -> None:
    async def main() -> None:
        async with School(persistence_env) as school:
            dog_id = await school.register_dog("Fido")
            stale = await school.repository.get(dog_id)
            await school.add_trick(dog_id, "sit")
            stale.add_trick("beg")
            other = Dog("Rex")
            with pytest.raises(RecordConflictError):
                await school.save(other, stale)
            with pytest.raises(AggregateNotFound):
                await school.repository.get(other.id)
            assert (await school.repository.get(dog_id)).tricks == ["sit"]
            assert await school.notification_log.max_notification_id() == 2

    run(main())


def test_data_written_by_one_api_is_read_by_the_other(
    persistence_env: dict[str, str], durable: bool
) -> None:
    if not durable:
        pytest.skip("in memory, each application has its own store")

    async def write() -> UUID:
        async with School(persistence_env) as school:
            dog_id = await school.register_dog("Fido")
            await school.add_trick(dog_id, "sit")
            return dog_id

    dog_id = run(write())
    with SyncSchool(persistence_env) as sync_school:
        dog = sync_school.repository.get(dog_id)
        assert dog.tricks == ["sit"]
        dog.add_trick("fetch")
        sync_school.save(dog)

    async def read() -> None:
        async with School(persistence_env) as school:
            dog = await school.repository.get(dog_id)
            assert dog.tricks == ["sit", "fetch"]
            assert [n.id async for n in school.notification_log] == [1, 2, 3]

    run(read())


def test_subscription_gives_recorded_then_new_events(persistence_env: dict[str, str]) -> None:
    async def main() -> None:
        async with School(persistence_env) as school:
            dog_id = await school.register_dog("Fido")
            seen: list[tuple[str, int]] = []

            async def follow() -> None:
                async for domain_event, tracking in school.subscribe(gt=None):
                    seen.append((type(domain_event).__name__, tracking.notification_id))
                    if len(seen) == 3:
                        return

            follower = asyncio.create_task(follow())
            await asyncio.sleep(0.05)
            await school.add_trick(dog_id, "sit")
            await school.add_trick(dog_id, "beg")
            await asyncio.wait_for(follower, timeout=20)
            assert seen == [("Registered", 1), ("TrickAdded", 2), ("TrickAdded", 3)]

    run(main())


def test_snapshots_at_intervals(persistence_env: dict[str, str]) -> None:
    class SnappingSchool(School):
        snapshotting_intervals = {Dog: 2}  # noqa: RUF012

    async def main() -> None:
        async with SnappingSchool(persistence_env) as school:
            dog_id = await school.register_dog("Fido")
            for trick in ("sit", "beg", "fetch"):
                await school.add_trick(dog_id, trick)
            assert school.snapshots is not None
            snapshots = await school.snapshots.get(dog_id)
            assert [s.originator_version for s in snapshots] == [2, 4]
            school.repository.clear_cache()
            assert (await school.repository.get(dog_id)).tricks == ["sit", "beg", "fetch"]

    run(main())


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class PointAsList(Transcoding):
    type = Point
    name = "point"

    def encode(self, obj: Point) -> list[int]:
        return [obj.x, obj.y]

    def decode(self, data: list[int]) -> Point:
        return Point(*data)


def test_register_transcodings_as_on_application(persistence_env: dict[str, str]) -> None:
    class Marker(Aggregate):
        @event("Placed")
        def __init__(self, where: Point) -> None:
            self.where = where

    class Map(AsyncApplication[UUID]):
        def register_transcodings(self, transcoder: Transcoder) -> None:
            super().register_transcodings(transcoder)
            transcoder.register(PointAsList())

    async def main() -> None:
        async with Map(persistence_env) as app:
            marker = Marker(Point(3, 4))
            await app.save(marker)
            app.repository.clear_cache()
            where = (await app.repository.get(marker.id)).where
            assert (type(where), where.x, where.y) == (Point, 3, 4)

    run(main())
