"""A small FastAPI service over the dog school, on the asyncio API.

    POST /dogs                {"name": "Fido"}   -> {"id": ...}
    POST /dogs/{id}/tricks    {"trick": "sit"}   -> {"position": 7}
    GET  /dogs/{id}                              -> {"name": ..., "tricks": [...]}
    GET  /tricks/{trick}?after=7                 -> {"trick": "sit", "count": 3}

Trick counts come from a projection (examples/trick_counts.py) into a view of the
same store, run by an AsyncProjectionRunner in the service's event loop. Give
``after`` the position a command returned to read your own writes: the answer
waits until the view has processed it. Without it, the answer counts what was
recorded when the request came.

Run: uvicorn examples.fastapi_dogschool:app  (settings from the environment, e.g.
PERSISTENCE_MODULE=eventsourcing.sqlite SQLITE_DBNAME=dogschool.db).
Needs the ``fastapi`` extra: pip install 'keel-eventsourcing[fastapi]'.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from eventsourcing.application import AggregateNotFound
from eventsourcing.asyncio import AsyncProjectionRunner
from examples.async_dogschool import DogSchool
from examples.trick_counts import TrickCounts, TrickCountsProjection, view_class


class NewDog(BaseModel):
    name: str


class NewTrick(BaseModel):
    trick: str


def create_app(env: dict[str, str] | None = None) -> FastAPI:
    """The service, over the store that ``env`` (else the environment) names."""
    store = (env or {}).get("PERSISTENCE_MODULE") or os.environ.get("PERSISTENCE_MODULE")
    runner: AsyncProjectionRunner[DogSchool, TrickCounts] = AsyncProjectionRunner(
        application_class=DogSchool,
        projection_class=TrickCountsProjection,
        view_class=view_class(store),
        env=env,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    service = FastAPI(title="Dog school", lifespan=lifespan)
    service.state.runner = runner

    @service.post("/dogs", status_code=201)
    async def register_dog(dog: NewDog) -> dict[str, Any]:
        return {"id": str(await runner.app.register_dog(dog.name))}

    @service.post("/dogs/{dog_id}/tricks", status_code=201)
    async def add_trick(dog_id: UUID, new: NewTrick) -> dict[str, Any]:
        try:
            position = await runner.app.add_trick(dog_id, new.trick)
        except AggregateNotFound:
            raise HTTPException(404, f"No dog {dog_id}") from None
        return {"position": position}

    @service.get("/dogs/{dog_id}")
    async def get_dog(dog_id: UUID) -> dict[str, Any]:
        try:
            return await runner.app.get_dog(dog_id)
        except AggregateNotFound:
            raise HTTPException(404, f"No dog {dog_id}") from None

    @service.get("/tricks/{trick}")
    async def trick_count(trick: str, after: int | None = None) -> dict[str, Any]:
        if after is None:
            after = await runner.app.notification_log.max_notification_id()
        try:
            await runner.wait(after, timeout=10)
        except TimeoutError as error:
            raise HTTPException(503, f"The counts are behind: {error}") from None
        count = await asyncio.to_thread(runner.view.get_count, trick)
        return {"trick": trick, "count": count}

    return service


app = create_app()  # (for uvicorn; started by the server's lifespan)
