"""The dog school of examples/dogschool.py, as an asyncio application.

The aggregates (Dog, Counter) and the Counters process application are the sync
example's own: only the application that records dogs is async. The
AsyncRunner runs Counters (its policy unchanged) after it, in the event loop.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.asyncio import AsyncApplication, AsyncRunner
from examples.dogschool import Counters, Dog


class DogSchool(AsyncApplication[UUID]):
    async def register_dog(self, name: str) -> UUID:
        dog = Dog(name)
        await self.save(dog)
        return dog.id

    async def add_trick(self, dog_id: UUID, trick: str) -> int:
        """Add a trick; return the position of its event in the log."""
        dog = await self.repository.get(dog_id)
        dog.add_trick(trick)
        recordings = await self.save(dog)
        return recordings[-1].notification.id

    async def get_dog(self, dog_id: UUID) -> dict[str, object]:
        dog = await self.repository.get(dog_id)
        return {"name": dog.name, "tricks": list(dog.tricks)}


PIPES = [[DogSchool, Counters]]


def make_runner(env: dict[str, str] | None = None, poll_interval: float = 1.0) -> AsyncRunner:
    return AsyncRunner(PIPES, env=env, poll_interval=poll_interval)
