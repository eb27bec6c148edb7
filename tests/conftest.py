"""Shared fixtures: every storage-related test runs once per persistence module."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


STORES = ["popo"]
if _available("eventsourcing.sqlite"):
    STORES.append("sqlite")
# TODO stores: add "postgres" here (and its settings below) once eventsourcing.postgres
# exists and a test database is reachable.


def store_env(store: str, tmp_path: Path) -> dict[str, str]:
    """The environment that selects ``store``, with a fresh database in ``tmp_path``."""
    if store == "popo":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if store == "sqlite":
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "events.sqlite"),
        }
    # TODO stores: "postgres" -> PERSISTENCE_MODULE=eventsourcing.postgres, POSTGRES_* settings
    raise ValueError(f"unknown store {store!r}")


@pytest.fixture(params=STORES)
def persistence_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Settings for one store; tests build applications with ``env=persistence_env``."""
    yield store_env(request.param, tmp_path)


@pytest.fixture
def durable(persistence_env: dict[str, str]) -> bool:
    """Whether a second application on the same settings sees the first one's events."""
    return persistence_env["PERSISTENCE_MODULE"] != "eventsourcing.popo"
