"""``PostgresDatastore.db_type_names`` / ``register_type_adapters()`` (the 9.x API):
an extension's composite types, adapted on every connection of the datastore."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from conftest import postgres_datastore, skip_module_unless_postgres

from eventsourcing.postgres import PostgresDatastore

skip_module_unless_postgres()


@pytest.fixture
def datastore(postgres_test_database: dict[str, object]) -> Iterator[PostgresDatastore]:
    datastore = postgres_datastore(postgres_test_database, pool_size=2)
    try:
        yield datastore
    finally:
        datastore.close()


@pytest.fixture
def type_name(datastore: PostgresDatastore) -> Iterator[str]:
    name = f"mooring_{uuid4().hex[:8]}"
    with datastore.transaction(commit=True) as curs:
        curs.execute(f"CREATE TYPE {name} AS (berth integer, vessel text)")
    yield name
    with datastore.transaction(commit=True) as curs:
        curs.execute(f"DROP TYPE IF EXISTS {name}")


def test_with_no_types_named_registering_does_nothing(datastore: PostgresDatastore) -> None:
    assert datastore.db_type_names == set()
    datastore.register_type_adapters()
    assert datastore.psycopg_type_adapters == {} and datastore.psycopg_python_types == {}


def test_named_composite_types_are_read_and_written_as_python_objects(
    datastore: PostgresDatastore, type_name: str
) -> None:
    datastore.db_type_names.update([type_name, "no_such_type"])
    datastore.register_type_adapters()
    assert list(datastore.psycopg_type_adapters) == [type_name]  # (the missing one skipped)
    mooring_type = datastore.psycopg_python_types[type_name]

    # On every pooled connection (two held at once here).
    with datastore.transaction() as first, datastore.transaction() as second:
        for curs in (first, second):
            curs.execute(f"SELECT ROW(7, 'Mersey')::{type_name} AS m")
            mooring = curs.fetchone()["m"]
            assert isinstance(mooring, mooring_type)
            assert (mooring.berth, mooring.vessel) == (7, "Mersey")
            curs.execute("SELECT (%s).vessel AS v", (mooring_type(8, "Clyde"),))
            assert curs.fetchone()["v"] == "Clyde"

    datastore.register_type_adapters()  # (again: nothing more to fetch)
    assert list(datastore.psycopg_type_adapters) == [type_name]
