"""A cached aggregate is shown only while its last event is recorded: a save whose
transaction was rolled back afterwards (an extension's store can save in a session
the user rolls back) leaves a copy in the cache that the next get must not give."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from note_model import Note

from eventsourcing.application import AggregateNotFoundError, Application


def _app(tmp_path: Path) -> tuple[Application, Path]:
    path = tmp_path / "notes.db"
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "AGGREGATE_CACHE_MAXSIZE": "10",
    }
    return Application(env=env), path


def _forget_recorded(path: Path, version_above: int) -> None:
    """Delete stored events behind the application's back (as a rollback would)."""
    with sqlite3.connect(path) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if "event" in name and "snapshot" not in name
        ]
        assert tables
        for table in tables:
            conn.execute(f'DELETE FROM "{table}" WHERE originator_version > ?', (version_above,))


def test_an_aggregate_whose_events_are_gone_is_not_shown_from_the_cache(tmp_path: Path) -> None:
    app, path = _app(tmp_path)
    note = Note("draft")
    app.save(note)
    assert app.repository.get(note.id).text == "draft"  # (cached now)
    _forget_recorded(path, version_above=0)
    with pytest.raises(AggregateNotFoundError):
        app.repository.get(note.id)
    app.close()


def test_a_rolled_back_change_is_not_shown_from_the_cache(tmp_path: Path) -> None:
    app, path = _app(tmp_path)
    note = Note("draft")
    app.save(note)
    note.edit("final")
    app.save(note)
    _forget_recorded(path, version_above=1)
    got = app.repository.get(note.id)
    assert (got.text, got.version) == ("draft", 1)
    # And a later change recorded by another writer is still brought forward.
    other, _ = _app(tmp_path)
    again = other.repository.get(note.id)
    again.edit("second")
    other.save(again)
    got = app.repository.get(note.id)
    assert (got.text, got.version) == ("second", 2)
    other.close()
    app.close()
