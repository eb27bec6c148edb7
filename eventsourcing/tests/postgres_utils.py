"""Helpers for the PostgreSQL tests of extensions: clean tables, close connections.

Needs psycopg (the ``postgres`` extra). Settings come from the arguments, else from
``POSTGRES_DBNAME``, ``POSTGRES_HOST``, ``POSTGRES_PORT``, ``POSTGRES_USER`` and
``POSTGRES_PASSWORD`` as the PostgreSQL store reads them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from eventsourcing.persistence import PersistenceError

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresDatastore

# The databases and schemas the test suites of extensions use by default.
DEFAULT_TEST_LOCATIONS = (
    ("eventsourcing", "public"),
    ("eventsourcing", "myschema"),
    ("eventsourcing_nopublic", "myschema"),
)


def _connect(
    dbname: str, host: str, port: str, user: str, password: str
) -> psycopg.Connection[Any]:
    return psycopg.connect(
        dbname=dbname, host=host, port=port, user=user, password=password, autocommit=True
    )


def pg_close_all_connections(
    name: str = "eventsourcing",
    host: str = "127.0.0.1",
    port: str = "5432",
    user: str = "postgres",
    password: str = "postgres",  # noqa: S107 (the usual password of test servers)
) -> None:
    """Close every other session connected to database ``name`` (e.g. to check that a
    store reconnects). Sessions on other databases of the server are left alone."""
    with _connect(name, host, port, user, password) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


def drop_tables() -> None:
    """Drop every table in the schemas extension tests use by default ("public" and
    "myschema" of database "eventsourcing", "myschema" of "eventsourcing_nopublic";
    POSTGRES_DBNAME replaces the database name). A database or schema that does not
    exist is passed over."""
    host = os.environ.get("POSTGRES_HOST", "127.0.0.1")
    port = os.environ.get("POSTGRES_PORT", "5432")
    user = os.environ.get("POSTGRES_USER", "eventsourcing")
    password = os.environ.get("POSTGRES_PASSWORD", "eventsourcing")
    for default_dbname, schema in DEFAULT_TEST_LOCATIONS:
        dbname = os.environ.get("POSTGRES_DBNAME", default_dbname)
        try:
            conn = _connect(dbname, host, port, user, password)
        except psycopg.OperationalError as error:
            if f'database "{dbname}" does not exist' in str(error):
                continue
            raise
        with conn:
            drop_tables_in_schema(conn, schema)


def drop_tables_in_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Drop every table of ``schema`` (with what depends on them)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
        (schema,),
    ).fetchall()
    for (table_name,) in rows:
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}.{} CASCADE").format(
                sql.Identifier(schema), sql.Identifier(table_name)
            )
        )


def drop_postgres_table(datastore: PostgresDatastore, table_name: str) -> None:
    """Drop table ``table_name`` (``name`` or ``schema.name``) of the datastore's
    database if it exists."""
    statement = sql.SQL("DROP TABLE IF EXISTS {}").format(_table_identifier(table_name))
    try:
        with datastore.transaction(commit=True) as cursor:
            cursor.execute(statement)
    except PersistenceError:
        pass  # e.g. another session holds it: the test that needs it will say so


def _table_identifier(table_name: str) -> sql.Composable:
    """An already quoted name as it is; else each dotted part quoted."""
    if '"' in table_name:
        return sql.SQL(table_name)  # type: ignore[arg-type,unused-ignore]  # caller's SQL
    return sql.Identifier(*table_name.split("."))
