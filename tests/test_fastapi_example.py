"""The FastAPI dog school (examples/fastapi_dogschool.py), through httpx's AsyncClient
on the ASGI app, on SQLite and PostgreSQL (and in memory)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from examples.fastapi_dogschool import create_app  # noqa: E402


@pytest.fixture(params=["popo", "sqlite", "postgres"])
def service_env(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "popo":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if request.param == "sqlite":
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "dogschool.db"),
        }
    postgres_env = request.getfixturevalue("postgres_env")
    return dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres", POSTGRES_POOL_SIZE="2")


async def exercise(env: dict[str, str]) -> None:
    service = create_app(env)
    transport = httpx.ASGITransport(app=service)
    async with service.router.lifespan_context(service):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/dogs", json={"name": "Fido"})
            assert response.status_code == 201
            fido = response.json()["id"]
            rex = (await client.post("/dogs", json={"name": "Rex"})).json()["id"]
            position = 0
            for dog, trick in ((fido, "sit"), (rex, "sit"), (fido, "beg")):
                response = await client.post(f"/dogs/{dog}/tricks", json={"trick": trick})
                assert response.status_code == 201
                position = response.json()["position"]
            # Read your writes: the count waits for the projection to reach the position.
            response = await client.get("/tricks/sit", params={"after": position})
            assert response.json() == {"trick": "sit", "count": 2}
            assert (await client.get("/tricks/beg")).json()["count"] == 1
            assert (await client.get("/tricks/fly")).json()["count"] == 0
            dog = (await client.get(f"/dogs/{fido}")).json()
            assert dog == {"name": "Fido", "tricks": ["sit", "beg"]}
            # Many clients at once: each count reads every trick added before it.
            puppies = await asyncio.gather(
                *(client.post("/dogs", json={"name": f"pup{i}"}) for i in range(8))
            )
            added = await asyncio.gather(
                *(
                    client.post(f"/dogs/{pup.json()['id']}/tricks", json={"trick": "wave"})
                    for pup in puppies
                )
            )
            last = max(response.json()["position"] for response in added)
            counts = await asyncio.gather(
                *(client.get("/tricks/wave", params={"after": last}) for _ in range(20))
            )
            assert {c.json()["count"] for c in counts} == {8}
            missing = "00000000-0000-0000-0000-000000000000"
            assert (await client.get(f"/dogs/{missing}")).status_code == 404
            response = await client.post(f"/dogs/{missing}/tricks", json={"trick": "x"})
            assert response.status_code == 404
            assert (await client.post("/dogs", json={})).status_code == 422


def test_the_service(service_env: dict[str, str]) -> None:
    asyncio.run(exercise(service_env))
