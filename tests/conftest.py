"""Shared fixtures. Keep each group under its own heading and clearly named."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresDatastore

# Tests import example systems (examples.dogschool) from the repository root.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# ---------------------------------------------------------------------------
# PostgreSQL: a fresh database per test session, skipped (one line) if no server,
# unless REQUIRE_POSTGRES=1, when an unreachable server fails the tests instead.

POSTGRES_TEST_HOST = os.environ.get("POSTGRES_TEST_HOST", "127.0.0.1")
POSTGRES_TEST_PORT = int(os.environ.get("POSTGRES_TEST_PORT", "5432"))
POSTGRES_TEST_USER = os.environ.get("POSTGRES_TEST_USER", "postgres")
POSTGRES_TEST_PASSWORD = os.environ.get("POSTGRES_TEST_PASSWORD", "")


def _postgres_maintenance_connect():  # type: ignore[no-untyped-def]
    import time

    import psycopg

    # The test server may be shared: wait a while for a free connection slot.
    deadline = time.monotonic() + 60
    while True:
        try:
            return psycopg.connect(
                dbname="postgres",
                host=POSTGRES_TEST_HOST,
                port=POSTGRES_TEST_PORT,
                user=POSTGRES_TEST_USER,
                password=POSTGRES_TEST_PASSWORD,
                connect_timeout=3,
                autocommit=True,
            )
        except psycopg.OperationalError as error:
            if "too many clients" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _postgres_unavailable(reason: str, module_level: bool = False) -> None:
    message = f"PostgreSQL not reachable at {POSTGRES_TEST_HOST}:{POSTGRES_TEST_PORT}: {reason}"
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " (REQUIRE_POSTGRES=1)", pytrace=False)
    pytest.skip(message, allow_module_level=module_level)


@functools.lru_cache(maxsize=1)
def postgres_unreachable_reason() -> str | None:
    """Why the test server cannot be used (None if it can), checked once per run."""
    try:
        import psycopg
    except ImportError as error:  # pragma: no cover
        return f"psycopg not installed ({error})"
    try:
        _postgres_maintenance_connect().close()
    except psycopg.Error as error:
        return " ".join(str(error).split()) or repr(error)
    return None


def skip_module_unless_postgres() -> None:
    """Call at the top of a PostgreSQL test module: one skip line for the whole module."""
    reason = postgres_unreachable_reason()
    if reason is not None:
        _postgres_unavailable(reason, module_level=True)


@contextlib.contextmanager
def _fresh_postgres_database() -> Iterator[dict[str, object]]:
    """Create ``es_test_<random>``, yield its connection settings, drop it afterwards."""
    reason = postgres_unreachable_reason()
    if reason is not None:
        _postgres_unavailable(reason)
    admin = _postgres_maintenance_connect()
    dbname = f"es_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield {
            "dbname": dbname,
            "host": POSTGRES_TEST_HOST,
            "port": POSTGRES_TEST_PORT,
            "user": POSTGRES_TEST_USER,
            "password": POSTGRES_TEST_PASSWORD,
        }
    finally:
        with _postgres_maintenance_connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_test_database() -> Iterator[dict[str, object]]:
    """One database for the whole session (recorder tests use distinct table names)."""
    with _fresh_postgres_database() as settings:
        yield settings


@pytest.fixture
def postgres_env() -> Iterator[dict[str, str]]:
    """A fresh database for one test, as the POSTGRES_* environment of applications."""
    with _fresh_postgres_database() as settings:
        yield _postgres_settings_as_env(settings)


def postgres_datastore(settings: Mapping[str, Any], **kwargs: Any) -> PostgresDatastore:
    """A datastore of the database of ``settings`` (as ``postgres_test_database``);
    ``kwargs`` as PostgresDatastore takes them."""
    from eventsourcing.postgres import PostgresDatastore

    return PostgresDatastore(
        str(settings["dbname"]),
        str(settings["host"]),
        int(settings["port"]),
        str(settings["user"]),
        str(settings["password"]),
        **kwargs,
    )


def _postgres_settings_as_env(settings: dict[str, object]) -> dict[str, str]:
    return {
        "POSTGRES_DBNAME": str(settings["dbname"]),
        "POSTGRES_HOST": str(settings["host"]),
        "POSTGRES_PORT": str(settings["port"]),
        "POSTGRES_USER": str(settings["user"]),
        "POSTGRES_PASSWORD": str(settings["password"]),
    }


# ---------------------------------------------------------------------------
# Every storage-related application test runs once per store.

STORES = ["popo", "sqlite", "postgres"]


@pytest.fixture(params=STORES)
def persistence_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Settings for one store, on a fresh database; build applications with ``env=`` them."""
    store = request.param
    if store == "popo":
        yield {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    elif store == "sqlite":
        yield {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "events.sqlite"),
        }
    else:
        with _fresh_postgres_database() as settings:
            env = _postgres_settings_as_env(settings)
            yield dict(env, PERSISTENCE_MODULE="eventsourcing.postgres")


@pytest.fixture
def durable(persistence_env: dict[str, str]) -> bool:
    """Whether a second application on the same settings sees the first one's events."""
    return persistence_env["PERSISTENCE_MODULE"] != "eventsourcing.popo"


@pytest.fixture(autouse=True)
def _close_applications(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every application a test made, when it ends.

    An application left open keeps its PostgreSQL pool until the garbage collector
    finds it, which may happen in one of the pool's own threads: the pool then
    cannot stop that thread, and says so in a warning.
    """
    from eventsourcing.application import Application

    made: list[Application] = []
    construct = Application.__init__

    def track(self: Application, *args: object, **kwargs: object) -> None:
        construct(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    monkeypatch.setattr(Application, "__init__", track)
    yield
    for app in made:
        with contextlib.suppress(Exception):
            app.close()
