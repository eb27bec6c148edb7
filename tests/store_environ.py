"""Mixins that put one store's settings in ``os.environ`` for each test of a
``unittest.TestCase``, as extension projects do when they subclass the test cases
of ``eventsourcing.tests`` (PostgreSQL: a fresh database per test, dropped after it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from unittest import TestCase

from conftest import _fresh_postgres_database, _postgres_settings_as_env


class StoreEnviron(TestCase):
    """Sets ``os.environ`` to ``store_environ()`` for each test, restoring it after."""

    def store_environ(self) -> dict[str, str]:
        return {}

    def setUp(self) -> None:
        saved = dict(os.environ)
        self.addCleanup(self._restore_environ, saved)
        os.environ.update(self.store_environ())
        super().setUp()

    @staticmethod
    def _restore_environ(saved: dict[str, str]) -> None:
        os.environ.clear()
        os.environ.update(saved)


class POPOEnviron(StoreEnviron):
    def store_environ(self) -> dict[str, str]:
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class SQLiteEnviron(StoreEnviron):
    def store_environ(self) -> dict[str, str]:
        directory = tempfile.mkdtemp(prefix="es-testcases-")
        self.addCleanup(shutil.rmtree, directory, True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": os.path.join(directory, "events.sqlite"),
        }


class PostgresEnviron(StoreEnviron):
    def store_environ(self) -> dict[str, str]:
        stack = contextlib.ExitStack()
        settings = stack.enter_context(_fresh_postgres_database())  # (skips without a server)
        self.addCleanup(stack.close)
        return dict(
            _postgres_settings_as_env(settings), PERSISTENCE_MODULE="eventsourcing.postgres"
        )
