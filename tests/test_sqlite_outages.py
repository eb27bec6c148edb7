"""SQLite: a database locked past the lock timeout is waited for (retried with backoff)
up to the retry timeout, in a write, a read and an extension's transaction."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

import pytest
from recorder_contract import event

from eventsourcing.persistence import OperationalError
from eventsourcing.sqlite import Factory, SQLiteApplicationRecorder, SQLiteDatastore
from eventsourcing.utils import Environment

LOGGER = "eventsourcing.sqlite"


@contextmanager
def locked_for(path: str, seconds: float) -> Iterator[threading.Thread]:
    """Hold the database's write lock (and, with EXCLUSIVE, its read lock) for ``seconds``."""
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        blocker.execute("ROLLBACK")
        blocker.close()

    thread = threading.Thread(target=release)
    thread.start()
    try:
        yield thread
    finally:
        thread.join()


def test_a_write_waits_out_a_lock_held_past_the_lock_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    path = str(tmp_path / "locked.sqlite")
    # (A lock timeout long enough for the savers not to time out on each other's
    # commits once the lock is released, even on a loaded machine: one outage only.)
    datastore = SQLiteDatastore(path, lock_timeout=0.5)
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    started = time.monotonic()
    with locked_for(path, 1.5):
        results = []
        savers = [
            threading.Thread(
                target=lambda: results.append(recorder.insert_events([event(uuid4(), 1)]))
            )
            for _ in range(3)
        ]
        for saver in savers:
            saver.start()
        for saver in savers:
            saver.join(timeout=30)
    assert time.monotonic() - started >= 1.4
    assert sorted(ids[0] for ids in results) == [1, 2, 3]
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert (
        len(warnings) == 1 and "stays locked; retrying for up to 30 s" in warnings[0].getMessage()
    )
    assert len(infos) == 1 and "no longer locked" in infos[0].getMessage()
    datastore.close()


def test_an_extensions_transaction_waits_out_the_lock_too(tmp_path: Path) -> None:
    path = str(tmp_path / "locked.sqlite")
    datastore = SQLiteDatastore(path, lock_timeout=0.1)
    SQLiteApplicationRecorder(datastore).create_table()
    with locked_for(path, 0.8):
        with datastore.transaction(commit=True) as cursor:
            cursor.execute("CREATE TABLE pages (name TEXT)")
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT COUNT(*) FROM pages")
        assert cursor.fetchone()[0] == 0
    datastore.close()


def test_a_lock_held_past_the_retry_timeout_is_one_clear_error(tmp_path: Path) -> None:
    path = str(tmp_path / "locked.sqlite")
    datastore = SQLiteDatastore(path, lock_timeout=0.1, retry_timeout=0.5)
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    with locked_for(path, 2.0):
        started = time.monotonic()
        with pytest.raises(OperationalError) as info:
            recorder.insert_events([event(uuid4(), 1)])
        assert time.monotonic() - started < 2.0
    message = str(info.value)
    assert message.startswith("Inserting 1 event") and "\n" not in message
    assert "gave up after retrying" in message and "database is locked" in message
    assert recorder.insert_events([event(uuid4(), 1)]) == [1]
    datastore.close()


def test_the_retry_timeout_settings(tmp_path: Path) -> None:
    env = {"SQLITE_DBNAME": str(tmp_path / "x.sqlite"), "RETRY_TIMEOUT": "7"}
    assert Factory(Environment("Dogs", env)).datastore.retry_timeout == 7.0
    env["DOGS_SQLITE_RETRY_TIMEOUT"] = "2.5"  # the store's own, for this application
    assert Factory(Environment("Dogs", env)).datastore.retry_timeout == 2.5
    assert Factory(Environment("Cats", env)).datastore.retry_timeout == 7.0
    with pytest.raises(OSError, match="^CATS_SQLITE_DBNAME .or SQLITE_DBNAME. is not set"):
        Factory(Environment("Cats", {}))
    with pytest.raises(OSError, match="^DOGS_SQLITE_RETRY_TIMEOUT must be a number"):
        Factory(Environment("Dogs", dict(env, DOGS_SQLITE_RETRY_TIMEOUT="soon")))


def test_setting_errors_name_the_setting_as_read_with_its_prefix(tmp_path: Path) -> None:
    from eventsourcing.utils import TopicError

    with pytest.raises(TopicError, match="^Cannot resolve DOGS_PERSISTENCE_MODULE 'no.such'"):
        Factory.construct(Environment("Dogs", {"DOGS_PERSISTENCE_MODULE": "no.such"}))
    env = {"SQLITE_DBNAME": str(tmp_path / "x.sqlite"), "DOGS_IS_SNAPSHOTTING_ENABLED": "maybe"}
    with pytest.raises(ValueError, match="^DOGS_IS_SNAPSHOTTING_ENABLED must be a boolean"):
        Factory(Environment("Dogs", env)).is_snapshotting_enabled()
    with pytest.raises(OSError, match="^DOGS_CREATE_TABLE must be a boolean"):
        Factory(Environment("Dogs", dict(env, DOGS_CREATE_TABLE="perhaps"))).application_recorder()
